"""JSON API for playbooks, enrollments and replies (task rows: guidebot.web.api.tasks).

GET  /api/v1/playbooks               every playbook file: version, enabled/disabled, errors,
                                     warnings (`sop check`'s W1xx), task counts per step and
                                     status, its goal's enrollments
                                     (met, open, missed), its holdout's lift
POST /api/v1/playbooks/reload        read the sop directory again
GET  /api/v1/enrollments             ?playbook&guide&customer&status&page&per_page
POST /api/v1/replies                 {"external_userid", "guide", "at"?}: the customer wrote back
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import func, select

from guidebot.clock import parse_instant
from guidebot.contacts.models import Relation
from guidebot.sop import queries
from guidebot.sop.actions import STEP_ACTIONS
from guidebot.sop.catch_up import missed_customers
from guidebot.sop.enrollment import record_reply
from guidebot.sop.holdout import Lift, lift_by_playbook, lift_of
from guidebot.sop.models import (
    EnrollmentStatus,
    SopEnrollment,
)
from guidebot.sop.playbook import Playbook
from guidebot.web.api.common import (
    INT64_MAX,
    ApiRoutes,
    bad_request,
    check_instant,
    iso,
    json_body,
    not_found,
    param,
    unprocessable,
)
from guidebot.web.api.declare import Body, Int, Query, Text
from guidebot.web.api.openapi import (
    BOOLEAN,
    INSTANT,
    INTEGER,
    NUMBER,
    STRING,
    list_of,
    mapping,
    maybe,
    shape,
)
from guidebot.web.audited import record_after
from guidebot.web.keys import CLOCK, SESSIONS, SOP

log = logging.getLogger(__name__)

api = ApiRoutes()

ACTIONS = tuple(STEP_ACTIONS)  # welcome, guide_task, remind, tag


# ---- rendering -------------------------------------------------------------------------------


def render_enrollment(e: SopEnrollment) -> dict[str, Any]:
    return {
        "id": e.id,
        "playbook": e.playbook_id,
        "version": e.playbook_version,
        "guide_userid": e.guide_userid,
        "external_userid": e.external_userid,
        "store_id": e.store_id,
        "timezone": e.timezone,
        "trigger": e.trigger,
        "cycle": e.cycle,
        "status": e.status,
        "stop_reason": e.stop_reason,
        "enrolled_at": iso(e.enrolled_at),
        "ended_at": iso(e.ended_at),
        "goal_event": e.goal_event,
        "goal_deadline": iso(e.goal_deadline),
        "goal_met_at": iso(e.goal_met_at),
        "treatment_group": e.treatment_group,
    }


def _list_param(request: web.Request, name: str) -> list[str] | None:
    """A declared comma-separated choice (`_words`), as a list."""
    raw = param(request, name)
    return raw.split(",") if raw else None


def _text(request: web.Request, name: str) -> str | None:
    return param(request, name) or None


def _instant(request: web.Request, name: str) -> datetime | None:
    raw = _text(request, name)
    return None if raw is None else _api_instant(raw, name)


def _api_instant(raw: Any, name: str) -> datetime:
    """An ISO 8601 instant with a UTC offset, in the years the API takes; else a 400."""
    try:
        return check_instant(parse_instant(raw, name), name)
    except ValueError as exc:
        raise bad_request(str(exc)) from None


# ---- declarations (guidebot.web.api.declare) -------------------------------------------------


def _words(allowed: tuple[str, ...]) -> Any:
    """A comma-separated choice among `allowed` ("pending,sent")."""
    one = "(?:" + "|".join(allowed) + ")"
    return Text(
        200,
        pattern=f"^{one}(?:,{one})*$",
        description=f"one or more of {', '.join(allowed)}, separated by commas",
    )


USERID = Text(64)
PLAYBOOK_ID = Text(64)
TASK_ID = Int(1, INT64_MAX, description="a task's id")


class EnrollmentFilter(Query):
    playbook: PLAYBOOK_ID = None
    guide: USERID = None
    customer: USERID = None
    status: _words(EnrollmentStatus.ALL) = None
    page: Int(1, 1_000_000) = 1
    per_page: Int(1, 200) = 50


class Reply(Body):
    external_userid: Text(64, pattern="\\S", description="an external_userid")
    guide: Text(64, pattern="\\S", description="a guide's userid")
    at: Text(64, fmt="date-time", description="when; not in the future (422)") = None


WHEN = maybe(INSTANT)
TEXT_OUT = maybe(STRING)
ENROLLMENT = shape(
    {
        "id": INTEGER,
        "playbook": STRING,
        "version": INTEGER,
        "guide_userid": STRING,
        "external_userid": STRING,
        "store_id": maybe(INTEGER),
        "timezone": TEXT_OUT,
        "trigger": STRING,
        "cycle": STRING,
        "status": STRING,
        "stop_reason": TEXT_OUT,
        "enrolled_at": WHEN,
        "ended_at": WHEN,
        "goal_event": TEXT_OUT,
        "goal_deadline": WHEN,
        "goal_met_at": WHEN,
        "treatment_group": maybe({"type": "string", "enum": ["treated", "holdout"]}),
    }
)
COUNTS = mapping(INTEGER)
# Customers who met a broken playbook's trigger, waiting for the fix (guidebot.sop.catch_up).
MISSED = shape(
    {
        "count": INTEGER,
        "customers": list_of(
            shape(
                {
                    "external_userid": STRING,
                    "name": TEXT_OUT,
                    "guide_userid": STRING,
                    "trigger": STRING,
                    "at": INSTANT,
                }
            )
        ),
    }
)
ARM = shape({"customers": INTEGER, "converted": INTEGER, "rate": maybe(NUMBER)})
# A playbook's holdout and the lift of its goal (guidebot.sop.holdout).
HOLDOUT = shape(
    {
        "share": NUMBER,
        "treated": ARM,
        "held_out": ARM,
        "difference": maybe(NUMBER),
        "relative": maybe(NUMBER),
        "ci95": maybe(list_of(NUMBER)),
        "method": STRING,
        "min_per_group": INTEGER,
        "refused": TEXT_OUT,
    }
)
PLAYBOOKS = shape(
    {
        "playbooks": list_of(
            shape(
                {
                    "id": STRING,
                    "version": maybe(INTEGER),
                    "name": TEXT_OUT,
                    "file": STRING,
                    "status": {"type": "string", "enum": ["enabled", "paused", "disabled"]},
                    "reason": TEXT_OUT,
                    "errors": list_of(STRING),
                    "warnings": list_of(STRING),
                    "trigger": TEXT_OUT,
                    "steps": list_of(
                        shape(
                            {"id": STRING, "counts": COUNTS, "retired": BOOLEAN},
                            optional=("retired",),
                        )
                    ),
                    "active_enrollments": COUNTS,
                    "missed": MISSED,
                    "holdout": maybe(HOLDOUT),
                    "goal": maybe(
                        shape(
                            {
                                "event": STRING,
                                "within_seconds": INTEGER,
                                "met": INTEGER,
                                "open": INTEGER,
                                "missed": INTEGER,
                            }
                        )
                    ),
                }
            )
        )
    }
)
PAGING = {"total": INTEGER, "page": INTEGER, "per_page": INTEGER}

# ---- playbooks -------------------------------------------------------------------------------


async def playbook_listing(app: web.Application) -> list[dict[str, Any]]:
    """Every playbook file the registry loaded, with its numbers (the API's and /admin's)."""
    async with app[SESSIONS]() as session:
        counts = await queries.step_counts(session)
        active = await queries.active_enrollments(session)
        goals = await queries.goal_outcomes(session, app[CLOCK].now())
        missed = await missed_customers(session)
        lifts = await lift_by_playbook(session, app[CLOCK].now())
    return [
        {
            **_listed(loaded, counts, active, goals, missed.get(loaded.id)),
            "holdout": holdout_view(loaded.playbook, lifts.get(loaded.id)),
        }
        for loaded in app[SOP].registry.loaded
    ]


def holdout_view(playbook: Playbook | None, found: Lift | None) -> dict[str, Any] | None:
    """The playbook's holdout share and its goal's lift (None: it holds nobody out, or has no
    goal to compare)."""
    if playbook is None or not playbook.holdout or playbook.goal is None:
        return None
    return {"share": playbook.holdout, **(found or lift_of({})).as_json()}


def _listed(loaded, counts, active, goals, missed) -> dict[str, Any]:
    playbook = loaded.playbook
    steps = [s.id for s in playbook.steps] if playbook is not None else []
    step_counts = counts.get(loaded.id, {})
    return {
        "id": loaded.id,
        "version": playbook.version if playbook is not None else loaded.version,
        "name": playbook.name if playbook is not None else None,
        "file": loaded.file,
        "status": loaded.status,
        "reason": loaded.reason or None,
        "errors": [str(e) for e in loaded.errors],
        "warnings": [str(w) for w in loaded.warnings],
        "trigger": playbook.trigger.event if playbook is not None else None,
        "steps": [{"id": s, "counts": step_counts.get(s, queries.no_counts())} for s in steps]
        + [
            {"id": s, "counts": c, "retired": True}
            for s, c in sorted(step_counts.items())
            if s not in steps
        ],
        "active_enrollments": active.get(loaded.id, {}),
        "missed": {
            "count": missed["count"] if missed else 0,
            "customers": [{**m, "at": iso(m["at"])} for m in missed["customers"]] if missed else [],
        },
        "goal": _goal(playbook, goals.get((loaded.id, playbook.goal.event)))
        if playbook is not None and playbook.goal is not None
        else None,
    }


def _goal(playbook: Playbook, counted: dict[str, int] | None) -> dict[str, Any]:
    return {
        "event": playbook.goal.event,
        "within_seconds": int(playbook.goal.within.total_seconds()),
        **(counted or {"met": 0, "open": 0, "missed": 0}),
    }


@api.get(
    "/playbooks",
    summary="Playbooks: version, enabled or disabled with errors, warnings, step counts",
    response=PLAYBOOKS,
)
async def list_playbooks(request: web.Request) -> web.Response:
    return web.json_response({"playbooks": await playbook_listing(request.app)})


@api.post("/playbooks/reload", summary="Read the playbook directory again", response=PLAYBOOKS)
async def reload_playbooks(request: web.Request) -> web.Response:
    registry = request.app[SOP].registry
    before = _versions(registry)
    await asyncio.to_thread(registry.reload)
    after = _versions(registry)
    if after != before:
        await record_after(
            request, "playbooks.reload", target="playbooks", before=before, after=after
        )
    return web.json_response({"playbooks": await playbook_listing(request.app)})


def _versions(registry) -> dict[str, Any]:
    """Each playbook's version and whether it runs, as the audit trail keeps them."""
    return {
        loaded.id: {
            "version": loaded.playbook.version if loaded.playbook is not None else loaded.version,
            "status": loaded.status,
            "file": loaded.file,
        }
        for loaded in registry.loaded
    }


# ---- enrollments -----------------------------------------------------------------------------


@api.get(
    "/enrollments",
    summary="Enrollments, filtered by playbook, guide, customer and status",
    query=EnrollmentFilter,
    response=shape({"enrollments": list_of(ENROLLMENT), **PAGING}),
)
async def list_enrollments(request: web.Request) -> web.Response:
    page, per_page = param(request, "page"), param(request, "per_page")
    statuses = _list_param(request, "status")
    conditions = []
    if (playbook := _text(request, "playbook")) is not None:
        conditions.append(SopEnrollment.playbook_id == playbook)
    if (guide := _text(request, "guide")) is not None:
        conditions.append(SopEnrollment.guide_userid == guide)
    if (customer := _text(request, "customer")) is not None:
        conditions.append(SopEnrollment.external_userid == customer)
    if statuses:
        conditions.append(SopEnrollment.status.in_(statuses))
    async with request.app[SESSIONS]() as session:
        total = await session.scalar(
            select(func.count()).select_from(SopEnrollment).where(*conditions)
        )
        rows = list(
            await session.scalars(
                select(SopEnrollment)
                .where(*conditions)
                .order_by(SopEnrollment.enrolled_at.desc(), SopEnrollment.id.desc())
                .offset((page - 1) * per_page)
                .limit(per_page)
            )
        )
    return web.json_response(
        {
            "enrollments": [render_enrollment(e) for e in rows],
            "total": total,
            "page": page,
            "per_page": per_page,
        }
    )


@api.post(
    "/replies",
    summary="A customer wrote back to a guide (from a chat-archive or CRM pipeline): the pair's "
    "playbooks that stop on customer.replied stop, its goals are credited",
    body=Reply,
    response=shape({"stopped": INTEGER, "goals_met": INTEGER}),
    errors=(422,),
)
async def post_reply(request: web.Request) -> web.Response:
    body = await json_body(request)
    customer, guide = body.get("external_userid"), body.get("guide")
    for name, value in (("external_userid", customer), ("guide", guide)):
        if not isinstance(value, str) or not value.strip():
            raise bad_request(f"{name!r} must be a non-empty string")
    now = request.app[CLOCK].now()
    at = _reply_instant(body.get("at"), now)
    async with request.app[SESSIONS]() as session, session.begin():
        relation = await session.scalar(
            select(Relation.id).where(
                Relation.guide_userid == guide, Relation.external_userid == customer
            )
        )
        if relation is None:
            raise not_found(f"guide {guide!r} has no customer {customer!r}")
        stopped, credited = await record_reply(
            session, external_userid=customer, guide_userid=guide, at=at, now=now, source="api"
        )
    return web.json_response({"stopped": len(stopped), "goals_met": credited})


def _reply_instant(raw: Any, now: datetime) -> datetime:
    """`at`: an ISO 8601 instant with a UTC offset, not in the future; absent means now."""
    if raw is None:
        return now
    at = _api_instant(raw, "at")
    if at > now:
        raise unprocessable("'at' is in the future")
    return at


__all__ = ["api", "render_enrollment"]
