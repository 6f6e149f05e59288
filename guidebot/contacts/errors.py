"""Domain errors of the contacts package; the web layer maps each to an HTTP status."""

from __future__ import annotations


class ContactsError(Exception):
    """A request the contacts domain cannot carry out; `reason` says why in one sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotFound(ContactsError):
    """A named store, guide, customer or contact way does not exist."""


class Invalid(ContactsError):
    """The input is malformed or breaks a rule (state too long, unknown status, ...)."""


class Conflict(ContactsError):
    """The request collides with what exists (a state already taken, a code in use)."""


class Upstream(ContactsError):
    """WeCom refused or could not be reached; `errcode` is WeCom's (-1 for transport)."""

    def __init__(self, reason: str, errcode: int) -> None:
        super().__init__(reason)
        self.errcode = errcode
