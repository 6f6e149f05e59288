"""Command-line actions that need the whole runtime (the WeCom client, the SOP engine's
templates) and so sit above it, beside the demo; guidebot.cli adds each module's commands."""
