"""The bot tests run on the content suite's harness (tests/content/harness.py)."""

from tests.content.conftest import clock, h  # noqa: F401  (fixtures)
