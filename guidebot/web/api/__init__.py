"""The JSON API under /api/v1: its plumbing (common) and one module per domain's endpoints."""
