"""A customer's records and their erasure, and the audit trail: HQ only.

GET  /privacy/customers/{external_userid}         every record guidebot holds about them
POST /privacy/customers/{external_userid}/erase   erase their personal data (a reason given)
GET  /audit                                       the audit trail, newest first
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from aiohttp import web
from pydantic import Field
from sqlalchemy import func, select

from guidebot.audit.models import AuditEntry
from guidebot.audit.recorder import audit_query
from guidebot.privacy.rights import PrivacyError, erase_customer, export_customer
from guidebot.web.api.common import ApiError, ApiRoutes, body_of, iso, query_of
from guidebot.web.api.declare import Body, Int, Query, Text
from guidebot.web.api.openapi import (
    ANY,
    INSTANT,
    INTEGER,
    STRING,
    list_of,
    mapping,
    maybe,
    shape,
)
from guidebot.web.audited import actor_of
from guidebot.web.keys import CLOCK, SESSIONS, SETTINGS

api = ApiRoutes()

EXTERNAL_USERID = Text(64, description="a customer's external_userid")
MOMENT = Text(
    64,
    fmt="date-or-time",
    description="a day YYYY-MM-DD (GUIDEBOT_TIMEZONE's) or an instant",
)

EXPORT = shape(
    {
        "format": STRING,
        "external_userid": STRING,
        "exported_at": INSTANT,
        "tables": mapping(list_of({"type": "object"})),
    }
)
ERASURE = shape({"customer_hash": STRING, "rows": mapping(INTEGER), "audit_id": INTEGER})
ENTRY = shape(
    {
        "id": INTEGER,
        "at": INSTANT,
        "actor": STRING,
        "role": STRING,
        "ip": maybe(STRING),
        "action": STRING,
        "target": maybe(STRING),
        "before": ANY,
        "after": ANY,
    }
)
ENTRIES = shape({"entries": list_of(ENTRY), "total": INTEGER, "page": INTEGER})


class EraseRequest(Body):
    """Why the customer's data is erased (their request, a regulator's order ...)."""

    reason: Text(500, multiline=True, description="why; kept in the audit trail")


class AuditFilter(Query):
    from_: MOMENT = Field(None, alias="from")
    to: MOMENT = None
    actor: Text(100, description='as the trail names them, e.g. "hq:alice"') = None
    action: Text(64, description='an action, or a prefix ending in "." (e.g. "content.")') = None
    page: Int(1, 100_000) = 1
    limit: Int(1, 500) = 100


def _privacy_error(exc: PrivacyError) -> ApiError:
    status = 404 if exc.code == "customer_not_found" else 422
    return ApiError(status, "not_found" if status == 404 else "unprocessable", exc.reason)


@api.get(
    "/privacy/customers/{external_userid}",
    "Every record guidebot holds about a customer, as JSON (their right to see it)",
    path={"external_userid": EXTERNAL_USERID},
    response=EXPORT,
)
async def export(request: web.Request) -> web.Response:
    app = request.app
    async with app[SESSIONS]() as session, session.begin():
        try:
            document = await export_customer(
                session,
                request.match_info["external_userid"],
                secret_key=app[SETTINGS].secret_key,
                now=app[CLOCK].now(),
                actor=actor_of(request),
            )
        except PrivacyError as exc:
            raise _privacy_error(exc) from None
    return web.json_response(document)


@api.post(
    "/privacy/customers/{external_userid}/erase",
    "Erase a customer's personal data everywhere; the counts stay, the erasure is audited",
    path={"external_userid": EXTERNAL_USERID},
    body=EraseRequest,
    response=ERASURE,
    errors=(422,),
)
async def erase(request: web.Request) -> web.Response:
    app = request.app
    wanted = body_of(request, EraseRequest)
    async with app[SESSIONS]() as session, session.begin():
        try:
            done = await erase_customer(
                session,
                request.match_info["external_userid"],
                reason=wanted.reason,
                actor=actor_of(request),
                secret_key=app[SETTINGS].secret_key,
                now=app[CLOCK].now(),
            )
        except PrivacyError as exc:
            raise _privacy_error(exc) from None
    return web.json_response(
        {"customer_hash": done.customer_hash, "rows": done.rows, "audit_id": done.audit_id}
    )


def _moment(raw: str | None, tz, *, end: bool) -> datetime | None:
    """A day is its local midnight (`end`: the next one, so `to` takes the day whole)."""
    if raw is None:
        return None
    text = raw.strip()
    if len(text) == 10:
        day = datetime.fromisoformat(text).date() + timedelta(days=1 if end else 0)
        return datetime.combine(day, time(0), tzinfo=tz)
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=tz)


def entry_json(entry: AuditEntry) -> dict:
    return {
        "id": entry.id,
        "at": iso(entry.at),
        "actor": entry.actor,
        "role": entry.role,
        "ip": entry.ip,
        "action": entry.action,
        "target": entry.target,
        "before": entry.before,
        "after": entry.after,
    }


async def read_trail(app: web.Application, wanted: AuditFilter) -> tuple[list[AuditEntry], int]:
    tz = app[SETTINGS].tz
    query = audit_query(
        start=_moment(wanted.from_, tz, end=False),
        end=_moment(wanted.to, tz, end=True),
        actor=wanted.actor,
        action=wanted.action,
    )
    async with app[SESSIONS]() as session:
        total = await session.scalar(select(func.count()).select_from(query.subquery()))
        found = await session.scalars(
            query.limit(wanted.limit).offset((wanted.page - 1) * wanted.limit)
        )
        return list(found), int(total or 0)


@api.get(
    "/audit",
    "The audit trail: who changed what, when, from where; newest first",
    query=AuditFilter,
    response=ENTRIES,
)
async def audit(request: web.Request) -> web.Response:
    wanted = query_of(request, AuditFilter)
    entries, total = await read_trail(request.app, wanted)
    return web.json_response(
        {"entries": [entry_json(e) for e in entries], "total": total, "page": wanted.page}
    )
