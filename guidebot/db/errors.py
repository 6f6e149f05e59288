"""The database's errors a command reports in one line, apart from what raises them: the command
line catches these without loading SQLAlchemy for every command that never opens a database."""

from __future__ import annotations


class DatabaseNotReady(RuntimeError):
    """The schema is older than this code; the message says what to run."""
