"""Escalation: a guide's task still open past its playbook's `escalate_after` goes to the store's
manager, as one app message a day listing them, and shows on the manager's store page.

A task's `escalate_at` (sop_tasks) is its due time plus the playbook's threshold, moved with it
when the engine holds it for the send window or the guide puts it off; tasks without one (the
default) are never escalated. A task counts for the store of its enrollment (the store the
customer's relation belongs to). Managers are the userids in GUIDEBOT_STORE_MANAGERS, each for
the store they belong to, as for the weekly report (guidebot.metrics.daily_report).

The hourly job sends a manager's digest between 09:00 and 20:59 in the store's time zone, when
the store has escalated tasks, at most once per manager per local day: the digest is claimed in
`metrics_reports` (kind "escalation", the local date) and committed before the WeCom call. The
tasks it listed for the first time get `escalated_at`. Beside it, `losses.py` sends managers
their store's losses; both claim their messages in `metrics_reports` the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot import i18n
from guidebot.clock import Clock
from guidebot.config import Settings
from guidebot.contacts.models import Customer, Department, Guide, GuideStatus
from guidebot.db.parking import describe_error, is_row_error
from guidebot.metrics.daily_report import claim_report, settle_report
from guidebot.metrics.models import NO_STORE
from guidebot.metrics.placer import Placer
from guidebot.sop.models import SopEnrollment, SopTask
from guidebot.sop.queries import TaskView, actionable_by_guide
from guidebot.wecom.client import WeComClient, WeComError

log = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]

ESCALATION = "escalation"  # metrics_reports.kind
FIRST_HOUR, LAST_HOUR = 9, 20  # local hours a digest may go out (09:00-20:59)
TEXT_LIMIT = 2000  # bytes of an app text message (WeCom allows 2048)
LISTED = 200  # at most this many tasks are read for one store


@dataclass(frozen=True, slots=True)
class Escalated:
    """An escalated task as a manager reads it: names, never ids."""

    id: int
    guide: str
    customer: str
    playbook: str
    step: str
    due_at: datetime
    escalated_at: datetime | None

    def overdue(self, now: datetime, lang: str = i18n.ZH) -> str:
        hours = int((now - self.due_at).total_seconds() // 3600)
        if hours >= 24:
            return i18n.ngettext("%(num)s day overdue", "%(num)s days overdue", hours // 24, lang)
        return i18n.ngettext("%(num)s hour overdue", "%(num)s hours overdue", max(hours, 1), lang)


async def escalated_tasks(
    session: AsyncSession, store_ids: list[int], now: datetime, *, limit: int = LISTED
) -> list[Escalated]:
    """Open guide tasks of these stores past their escalation time, most overdue first."""
    rows = await session.execute(
        select(SopTask, SopEnrollment.settings, Guide.name, Customer.name)
        .join(SopEnrollment, SopEnrollment.id == SopTask.enrollment_id)
        .outerjoin(Guide, Guide.userid == SopTask.guide_userid)
        .outerjoin(Customer, Customer.external_userid == SopTask.external_userid)
        .where(
            *actionable_by_guide(None),
            SopTask.escalate_at <= now,
            SopEnrollment.store_id.in_(store_ids),
        )
        .order_by(SopTask.due_at, SopTask.id)
        .limit(limit)
    )
    found = []
    for task, settings, guide, customer in rows.all():
        settings = settings or {}
        view = TaskView(
            task.id, task.guide_userid, task.external_userid, task.playbook_id, task.step_id,
            task.action, task.status, task.due_at, task.content,
            playbook_name=settings.get("name") or task.playbook_id,
            named_step=(settings.get("step_names") or {}).get(task.step_id),
        )  # fmt: skip
        found.append(
            Escalated(
                id=task.id,
                guide=guide or task.guide_userid,
                customer=customer or "客户",
                playbook=view.playbook_name,
                step=view.step_name(),
                due_at=task.due_at,
                escalated_at=task.escalated_at,
            )
        )
    return found


def digest_text(store: str, day: str, tasks: list[Escalated], now: datetime, url: str) -> str:
    """The manager's message: the store's escalated tasks, one a line, within WeCom's size."""
    head = f"{store} 逾期未处理的任务 {len(tasks)} 项（{day}）· overdue tasks"
    foot = f"查看 · View: {url}"
    lines = [head]
    for n, task in enumerate(tasks):
        line = f"• {task.guide} · {task.customer} · {task.playbook} · {task.step} · " + (
            task.overdue(now)
        )
        rest = f"…另有 {len(tasks) - n} 项 · {len(tasks) - n} more"
        if len("\n".join([*lines, line, rest, foot]).encode()) > TEXT_LIMIT:
            lines.append(rest)
            break
        lines.append(line)
    return "\n".join([*lines, foot])


@dataclass
class EscalationReport:
    sent: int = 0
    failed: int = 0
    tasks: int = 0


async def send_escalations(
    sessions: Sessions, wecom: WeComClient, clock: Clock, settings: Settings
) -> EscalationReport:
    """The hourly job: each manager's daily digest of their store's escalated tasks."""
    now = clock.now()
    report = EscalationReport()
    async with sessions() as session:
        managers = [
            userid
            for userid in settings.store_managers
            if (guide := await session.get(Guide, userid)) is not None
            and guide.status == GuideStatus.ACTIVE
        ]
        placer = await Placer.load(session, managers, settings.timezone)
    for userid in managers:
        store_id = placer.store(userid, now)
        if store_id == NO_STORE:
            continue
        local = now.astimezone(placer.zone(store_id))
        if not FIRST_HOUR <= local.hour <= LAST_HOUR:
            continue
        async with sessions() as session:
            store = await session.get(Department, store_id)
            tasks = await escalated_tasks(session, [store_id], now)
        if store is None or not tasks:
            continue
        day = local.date().isoformat()
        if not await claim_report(sessions, ESCALATION, userid, day, now):
            continue  # today's went out already
        url = f"{settings.public_url}/admin/stores?store={store.code}"
        text = digest_text(store.name, day, tasks, now, url)
        await _deliver(sessions, wecom, userid, day, text, tasks, now, report)
    if report.sent or report.failed:
        log.info("escalations: %d digest(s) sent, %d failed", report.sent, report.failed)
    return report


async def _deliver(
    sessions: Sessions,
    wecom: WeComClient,
    userid: str,
    day: str,
    text: str,
    tasks: list[Escalated],
    now: datetime,
    report: EscalationReport,
) -> None:
    error = None
    try:
        # To a manager, not a customer: at least once is fine (architecture rule 6).
        await wecom.send_text(userid, text, at_least_once=True)
    except WeComError as exc:
        error = str(exc)
        log.warning("escalation digest to %s for %s not sent: %s", userid, day, exc)
    except Exception as exc:
        if not is_row_error(exc):
            raise
        error = f"unexpected error: {describe_error(exc)}"
        log.exception("escalation digest to %s for %s not sent", userid, day)
    await settle_report(sessions, ESCALATION, userid, day, message=text, error=error, now=now)
    if error:
        report.failed += 1
        return
    report.sent += 1
    report.tasks += len(tasks)
    async with sessions() as session, session.begin():
        await session.execute(
            update(SopTask)
            .where(SopTask.id.in_([t.id for t in tasks]), SopTask.escalated_at.is_(None))
            .values(escalated_at=now)
        )
