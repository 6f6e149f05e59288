"""The audit trail from the web: who the request is for, and where it came from.

    record_change(request, session, "content.update", target=f"content:{id}",
                  before=..., after=...)

adds the entry to the view's session, so it commits with the change (guidebot.audit).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.audit.models import AuditEntry
from guidebot.audit.recorder import Actor, record
from guidebot.web.auth import PRINCIPAL
from guidebot.web.keys import CLOCK, SESSIONS, SETTINGS
from guidebot.web.throttle import request_address


def actor_of(request: web.Request) -> Actor:
    """The request's principal as the trail names them, with the client's address."""
    who = request.get(PRINCIPAL)
    address = request_address(request, request.app[SETTINGS].trusted_proxies)
    if who is None:
        return Actor("anonymous", "none", address)
    name = who.userid if who.role == "guide" and who.userid else who.name
    return Actor(f"{who.role}:{name}", who.role, address)


def record_change(
    request: web.Request,
    session: AsyncSession,
    action: str,
    *,
    target: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEntry:
    return record(
        session,
        actor_of(request),
        action,
        target=target,
        before=before,
        after=after,
        now=request.app[CLOCK].now(),
    )


async def record_after(
    request: web.Request,
    action: str,
    *,
    target: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """For a change whose domain commits it itself around a WeCom call (a transfer, a
    contact way, a mass send): the entry in a transaction of its own, right after."""
    async with request.app[SESSIONS]() as session, session.begin():
        record_change(request, session, action, target=target, before=before, after=after)
