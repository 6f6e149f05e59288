"""JSON API for SOP tasks: the task rows, and a guide's or HQ's done, skip and snooze.

GET  /api/v1/tasks                   ?guide&customer&playbook&step&status&action&due_before
                                     &page&per_page; with a guide's session, only the tasks
                                     that guide can act on (guide tasks and reminders: pending,
                                     sent or snoozed, for a customer still theirs)
GET  /api/v1/tasks/{id}              one task row (a guide: their own)
POST /api/v1/tasks/{id}/done         {"note"?}           HQ, or the task's own guide
POST /api/v1/tasks/{id}/skip         {"reason"}          HQ, or the task's own guide
POST /api/v1/tasks/{id}/snooze       {"delay": "2h"}     HQ, or the task's own guide
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import func, select

from guidebot.audit.recorder import row_values
from guidebot.sop import queries
from guidebot.sop.models import CompletedBy, SopEnrollment, SopTask, TaskStatus
from guidebot.sop.task_marks import (
    DELAY_PATTERN,
    SNOOZE_RANGE,
    complete_task,
    parse_delay,
    skip_task,
    snooze_task,
)
from guidebot.web.api.common import (
    ApiRoutes,
    bad_request,
    body_of,
    iso,
    not_found,
    param,
    unprocessable,
)
from guidebot.web.api.declare import Body, Int, Query, Text
from guidebot.web.api.openapi import INTEGER, STRING, list_of, maybe, shape
from guidebot.web.api.sop import (
    ACTIONS,
    PAGING,
    PLAYBOOK_ID,
    TASK_ID,
    TEXT_OUT,
    USERID,
    WHEN,
    _instant,
    _list_param,
    _text,
    _words,
)
from guidebot.web.audited import record_change
from guidebot.web.auth import principal
from guidebot.web.keys import CLOCK, SESSIONS, SETTINGS

api = ApiRoutes()


def render_task(
    t: SopTask, public_url: str, settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    names = queries.TaskView(
        t.id, t.guide_userid, t.external_userid, t.playbook_id, t.step_id, t.action,
        t.status, t.due_at, t.content,
        playbook_name=(settings or {}).get("name") or t.playbook_id,
        named_step=((settings or {}).get("step_names") or {}).get(t.step_id),
    )  # fmt: skip
    return {
        "id": t.id,
        "enrollment_id": t.enrollment_id,
        "playbook": t.playbook_id,
        "playbook_name": names.playbook_name,
        "version": t.playbook_version,
        "step": t.step_id,
        "step_name": names.step_name(),
        "action": t.action,
        "guide_userid": t.guide_userid,
        "external_userid": t.external_userid,
        "status": t.status,
        "due_at": iso(t.due_at),
        "expires_at": iso(t.expires_at),
        "sent_at": iso(t.sent_at),
        "message": t.message,
        "wecom_msgid": t.wecom_msgid,
        "result": t.result,
        "reason": t.reason,
        "attempts": t.attempts,
        "completed_at": iso(t.completed_at),
        "completed_by": t.completed_by,
        "completed_by_user": t.completed_by_user,
        "escalate_at": iso(t.escalate_at),
        "url": f"{public_url}/sidebar?task={t.id}",
    }


def _task_id(request: web.Request) -> int:
    return param(request, "id")


class TaskFilter(Query):
    guide: USERID = None
    customer: USERID = None
    playbook: PLAYBOOK_ID = None
    step: Text(64) = None
    status: _words(TaskStatus.ALL) = None
    action: _words(ACTIONS) = None
    due_before: Text(64, fmt="date-time") = None
    page: Int(1, 1_000_000) = 1
    per_page: Int(1, 200) = 50


class TaskNote(Body):
    note: Text(2000, multiline=True) = None


class SkipReason(Body):
    reason: Text(2000, multiline=True, pattern="\\S", description="words, not only spaces")


class SnoozeDelay(Body):
    delay: Text(
        20,
        pattern=DELAY_PATTERN,
        description="how long: 30m, 2h, 1d (1 minute to 7 days), counted from now, or from its "
        "due time if it is not due yet",
    )


TASK = shape(
    {
        "id": INTEGER,
        "enrollment_id": INTEGER,
        "playbook": STRING,
        "playbook_name": STRING,
        "version": INTEGER,
        "step": STRING,
        "step_name": STRING,
        "action": STRING,
        "guide_userid": STRING,
        "external_userid": STRING,
        "status": STRING,
        "due_at": WHEN,
        "expires_at": WHEN,
        "sent_at": WHEN,
        "message": TEXT_OUT,
        "wecom_msgid": TEXT_OUT,
        "result": maybe({"type": "object"}),
        "reason": TEXT_OUT,
        "attempts": maybe(INTEGER),
        "completed_at": WHEN,
        "completed_by": TEXT_OUT,
        "completed_by_user": TEXT_OUT,
        "escalate_at": WHEN,
        "url": STRING,
    }
)
ONE_TASK = shape({"task": TASK})


# ---- tasks -----------------------------------------------------------------------------------


@api.get(
    "/tasks",
    summary="Task rows; with a guide's session, the tasks that guide can act on",
    roles=("hq", "guide"),
    query=TaskFilter,
    response=shape({"tasks": list_of(TASK), **PAGING}),
)
async def list_tasks(request: web.Request) -> web.Response:
    page, per_page = param(request, "page"), param(request, "per_page")
    statuses = _list_param(request, "status")
    actions = _list_param(request, "action")
    due_before = _instant(request, "due_before")
    who = principal(request)
    conditions = []
    if (guide := _text(request, "guide")) is not None:
        if who.role == "guide" and guide != who.userid:
            raise not_found(f"no guide {guide!r}")
        conditions.append(SopTask.guide_userid == guide)
    if who.role == "guide":  # their own list: what they can act on, nobody else's
        conditions += queries.actionable_by_guide(who.userid)
    if (customer := _text(request, "customer")) is not None:
        conditions.append(SopTask.external_userid == customer)
    if (playbook := _text(request, "playbook")) is not None:
        conditions.append(SopTask.playbook_id == playbook)
    if (step := _text(request, "step")) is not None:
        conditions.append(SopTask.step_id == step)
    if statuses:
        conditions.append(SopTask.status.in_(statuses))
    if actions:
        conditions.append(SopTask.action.in_(actions))
    if due_before is not None:
        conditions.append(SopTask.due_at < due_before)
    public_url = request.app[SETTINGS].public_url
    async with request.app[SESSIONS]() as session:
        total = await session.scalar(select(func.count()).select_from(SopTask).where(*conditions))
        rows = (
            await session.execute(
                select(SopTask, SopEnrollment.settings)
                .join(SopEnrollment, SopEnrollment.id == SopTask.enrollment_id)
                .where(*conditions)
                .order_by(SopTask.due_at, SopTask.id)
                .offset((page - 1) * per_page)
                .limit(per_page)
            )
        ).all()
    return web.json_response(
        {
            "tasks": [render_task(t, public_url, settings) for t, settings in rows],
            "total": total,
            "page": page,
            "per_page": per_page,
        }
    )


async def _rendered(request: web.Request, session, task: SopTask) -> dict[str, Any]:
    enrollment = await session.get(SopEnrollment, task.enrollment_id)
    settings = enrollment.settings if enrollment is not None else None
    return render_task(task, request.app[SETTINGS].public_url, settings)


@api.get(
    "/tasks/{id}",
    summary="One task row (a guide: their own)",
    roles=("hq", "guide"),
    path={"id": TASK_ID},
    response=ONE_TASK,
)
async def get_task(request: web.Request) -> web.Response:
    task_id, who = _task_id(request), principal(request)
    async with request.app[SESSIONS]() as session:
        task = await session.get(SopTask, task_id)
        if task is None or (who.role == "guide" and task.guide_userid != who.userid):
            raise not_found(f"no task {task_id}")
        rendered = await _rendered(request, session, task)
    return web.json_response({"task": rendered})


TASK_AUDIT = ("status", "due_at", "reason", "completed_at", "completed_by", "completed_by_user")


async def _settle(request: web.Request, change) -> web.Response:
    """Run `change(session, task_id, now, who=...)` as the caller: a guide only on their own
    tasks (another's is a 404), recorded as done through the API by that guide or HQ."""
    task_id = _task_id(request)
    now = request.app[CLOCK].now()
    who = principal(request)
    mine = who.userid if who.role == "guide" else None
    actor = {"by": CompletedBy.API, "guide_userid": mine, "who": mine or f"hq:{who.name}"}
    try:
        async with request.app[SESSIONS]() as session, session.begin():
            before = row_values(await session.get(SopTask, task_id), *TASK_AUDIT)
            task = await change(session, task_id, now, **actor)
            rendered = await _rendered(request, session, task)
            if who.role != "guide":  # a guide's own work is the task's record, not an audit
                after = row_values(task, *TASK_AUDIT)
                record_change(
                    request,
                    session,
                    f"task.{request.path.rsplit('/', 1)[-1]}",
                    target=f"task:{task_id}",
                    before=before,
                    after=after,
                )
    except ValueError as exc:  # TaskNotFound (404) and TaskConflict (409): guidebot.web.api.errors
        raise bad_request(str(exc)) from None
    return web.json_response({"task": rendered})


@api.post(
    "/tasks/{id}/done",
    summary="Mark a task done (the guide did it); a guide marks their own",
    roles=("hq", "guide"),
    path={"id": TASK_ID},
    body=TaskNote,
    body_required=False,
    response=ONE_TASK,
    errors=(409,),
)
async def task_done(request: web.Request) -> web.Response:
    note = body_of(request, TaskNote).note

    async def change(session, task_id, now, **actor):
        return await complete_task(session, task_id, now=now, note=note, **actor)

    return await _settle(request, change)


@api.post(
    "/tasks/{id}/skip",
    summary="Skip a task, with a reason; a guide skips their own",
    roles=("hq", "guide"),
    path={"id": TASK_ID},
    body=SkipReason,
    response=ONE_TASK,
    errors=(409,),
)
async def task_skip(request: web.Request) -> web.Response:
    reason = body_of(request, SkipReason).reason

    async def change(session, task_id, now, **actor):
        return await skip_task(session, task_id, reason, now, **actor)

    return await _settle(request, change)


@api.post(
    "/tasks/{id}/snooze",
    summary="Put a task off (it comes back then, inside its playbook's send window); a guide "
    "puts off their own",
    roles=("hq", "guide"),
    path={"id": TASK_ID},
    body=SnoozeDelay,
    response=ONE_TASK,
    errors=(409, 422),
)
async def task_snooze(request: web.Request) -> web.Response:
    try:
        delay = parse_delay(body_of(request, SnoozeDelay).delay)
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    if not SNOOZE_RANGE[0] <= delay <= SNOOZE_RANGE[1]:
        raise unprocessable("'delay' must be 1 minute to 7 days")

    async def change(session, task_id, now, **actor):
        return await snooze_task(session, task_id, delay, now, **actor)

    return await _settle(request, change)


__all__ = ["api", "render_task"]
