"""After a restore from an older backup: tasks the backup shows open that were sent after it.

A backup taken at `since` may show a customer-facing task pending, claimed or sending that
went out after it. Before anything is sent again (architecture rule 6):

* a guide task (a WeCom mass-send task for the guide to confirm) is looked up in WeCom: the
  guide's mass-send tasks created since the backup (get_groupmsg_list_v2) and their send
  lists (get_groupmsg_send_result). Found for its customer → sent, with that msgid. Not found
  and never started → due as it was; one the backup shows in flight (`sending`) is left to the
  usual reconciliation (found or unknown, never resent);
* a welcome's WelcomeCode lived 20 s: it expired long before any restore, so the welcome is
  expired and never retried (the customer may have had it).

Reminders to guides and tag steps are left as they are: they may repeat.

A group step's row (sop_group_sends) the backup shows pending and already due may have gone
to WeCom after the backup, and its text is only written when it is claimed, so nothing
identifies it there: it is `unknown`, never resent (check with the guide). One the backup shows
`sending` is left to the usual settling (found by its tracked link, or unknown).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from guidebot.sop.completion import complete_enrollments
from guidebot.sop.context import SopRuntime
from guidebot.sop.group_models import GroupSendStatus, SopGroupSend
from guidebot.sop.models import Action, SopTask, TaskStatus

log = logging.getLogger(__name__)

# WeCom lists mass-send tasks of at most the last month; a backup older than that cannot be
# checked past it (README, "Backup and restore": restore one younger than a month).
LOOK_BACK = timedelta(days=30)
EXPIRED_CODE = "restored from a backup: the WelcomeCode expired long ago"
SENT_AFTER_BACKUP = "restored from a backup: WeCom holds it since"
GROUP_ROW_HELD = "restored from a backup: it may have been sent since; not resent"


@dataclass
class RestoreReport:
    checked: int = 0
    found_sent: int = 0
    welcomes_expired: int = 0
    due_again: int = 0
    group_rows_held: int = 0  # group steps' rows made `unknown` rather than sent again


async def _sent_after(runtime: SopRuntime, guide: str, since: datetime, now: datetime):
    """customer → msgid of a mass-send task of `guide` created since the backup."""
    start = max(since - timedelta(minutes=1), now - LOOK_BACK)
    sent: dict[str, str] = {}
    async for item in runtime.wecom.iter_groupmsg_list_v2(
        start_time=start, end_time=max(now, start), filter_type=0, limit=100
    ):
        msgid = item.get("msgid")
        if not msgid:
            continue
        async for result in runtime.wecom.iter_groupmsg_send_result(msgid, guide):
            customer = result.get("external_userid")
            if customer and customer not in sent:
                sent[customer] = msgid
    return sent


async def reconcile_restored(runtime: SopRuntime, since: datetime, now: datetime) -> RestoreReport:
    """Settle the customer-facing tasks a restored backup (taken at `since`) shows open."""
    report = RestoreReport()
    async with runtime.sessions() as session:
        rows = list(
            await session.scalars(
                select(SopTask)
                .where(
                    SopTask.status.in_(TaskStatus.OPEN),
                    SopTask.action.in_(Action.TO_CUSTOMER),
                    SopTask.due_at <= now,
                )
                .order_by(SopTask.id)
            )
        )
    report.checked = len(rows)
    by_guide: dict[str, list[SopTask]] = defaultdict(list)
    for row in rows:
        if row.action == Action.GUIDE_TASK:
            by_guide[row.guide_userid].append(row)
    found: dict[int, str] = {}
    for guide, tasks in by_guide.items():  # WeCom first, no transaction open meanwhile
        sent = await _sent_after(runtime, guide, since, now)
        found.update((t.id, sent[t.external_userid]) for t in tasks if t.external_userid in sent)
    async with runtime.sessions() as session, session.begin():
        for row in rows:
            if row.id in found:
                values = dict(status=TaskStatus.SENT, wecom_msgid=found[row.id])
                values |= dict(reason=SENT_AFTER_BACKUP, sent_at=row.sent_at or since)
                report.found_sent += 1
            elif row.action == Action.WELCOME:
                values = dict(status=TaskStatus.EXPIRED, reason=EXPIRED_CODE, completed_at=now)
                report.welcomes_expired += 1
            elif row.status == TaskStatus.CLAIMED:
                values = dict(status=TaskStatus.PENDING)  # never reached WeCom: due as it was
                report.due_again += 1
            else:
                report.due_again += row.status == TaskStatus.PENDING
                continue  # pending: due as it was; sending: the usual reconciliation
            await session.execute(
                update(SopTask)
                .where(SopTask.id == row.id, SopTask.status == row.status)
                .values(
                    **values,
                    welcome_code=None,
                    lease_owner=None,
                    lease_until=None,
                    updated_at=now,
                )
            )
        await complete_enrollments(session, {r.enrollment_id for r in rows}, now)
        held = await session.execute(
            update(SopGroupSend)
            .where(SopGroupSend.status == GroupSendStatus.PENDING, SopGroupSend.due_at <= now)
            .values(status=GroupSendStatus.UNKNOWN, reason=GROUP_ROW_HELD, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        report.group_rows_held = held.rowcount
    log.warning(
        "restore: %d open customer task(s) checked: %d sent after the backup, %d welcomes "
        "expired, %d due as before",
        report.checked,
        report.found_sent,
        report.welcomes_expired,
        report.due_again,
    )
    return report
