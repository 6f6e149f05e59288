"""What content's domain functions raise; the faces turn each into an answer (400, 404, ...)."""

from __future__ import annotations


class ContentError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotFound(ContentError):
    pass


class Invalid(ContentError):
    pass


__all__ = ["ContentError", "Invalid", "NotFound"]
