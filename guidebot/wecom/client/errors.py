"""The errors every WeCom call ends with when it does not succeed (see guidebot.wecom.client)."""

from __future__ import annotations

__all__ = ["WeComDeadlineExceeded", "WeComError", "WeComTransportError", "WeComUncertain"]


class WeComError(Exception):
    """WeCom refused a call (errcode != 0), or the client gave up on it.

    Attributes: ``api`` (path after /cgi-bin/), ``errcode`` (int), ``errmsg`` (str).
    """

    def __init__(self, api: str, errcode: int, errmsg: str) -> None:
        super().__init__(api, errcode, errmsg)
        self.api = api
        self.errcode = errcode
        self.errmsg = errmsg

    def __str__(self) -> str:
        return f"WeCom {self.api}: errcode {self.errcode}: {self.errmsg}"


class WeComTransportError(WeComError):
    """No usable answer after every retry (timeout, connection error, HTTP status); errcode -1."""


class WeComUncertain(WeComError):
    """A non-idempotent call may have reached WeCom without an answer; errcode -1.

    WeCom may have acted. Do not resend blindly: record the outcome as unknown and reconcile.
    """


class WeComDeadlineExceeded(WeComError):
    """The call's deadline passed before it could be made; errcode -1. Nothing was sent."""
