"""A playbook that was broken catches up.

A playbook file with an error is disabled (guidebot.sop.registry) and enrolls nobody: a typo
saved for 34 s used to skip, for good, every customer added meanwhile. Now, while a file is
broken, the SOP subscriber records each pair that meets the trigger its last good version
had (a callback's add for `customer.added`, a tag gained for `tag.added:<tag>`) in
`sop_missed`, and the admin page lists them under the broken playbook.

When the file is fixed, the `sop-catch-up` job enrolls them in the fixed version, as of the
moment they met the trigger, when that moment is within the playbook's `catch_up` horizon
(default 24 h; `0s` turns it off) and the pair still matches (relation active, the tag still
on it, the audience). Steps already due by then expire instead of all going out at once; the
steps still ahead run as planned. A miss older than the horizon is `too_late`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.models import Customer, Relation, RelationStatus
from guidebot.db.engine import upsert_insert
from guidebot.db.parking import isolating, unparked
from guidebot.sop.audience import audience_matches, subject_for
from guidebot.sop.completion import complete_enrollments
from guidebot.sop.context import SopRuntime
from guidebot.sop.enrollment import enroll
from guidebot.sop.models import MissedStatus, SopMissed, SopTask, TaskStatus
from guidebot.sop.playbook import TAG_EVENT_PREFIX, Playbook

log = logging.getLogger(__name__)

JOB = "sop-catch-up"  # the periodic job's name; rows it parks are filed under it
BATCH = 200
SHOWN = 20  # missed customers listed per playbook on the admin page


def trigger_name(playbook: Playbook) -> str:
    """How a miss names the trigger it met: customer.added, tag.added:<tag>."""
    trigger = playbook.trigger
    return f"{TAG_EVENT_PREFIX}{trigger.tag}" if trigger.event == "tag.added" else trigger.event


async def record_missed(
    session: AsyncSession,
    playbooks: Sequence[Playbook],
    *,
    guide_userid: str,
    external_userid: str,
    at: datetime,
    now: datetime,
) -> None:
    """The pair met these broken playbooks' triggers at `at`: remember it (once)."""
    insert = upsert_insert(session.bind.dialect.name)
    for playbook in playbooks:
        if not playbook.catch_up:
            continue
        await session.execute(
            insert(SopMissed)
            .values(
                playbook_id=playbook.id,
                guide_userid=guide_userid,
                external_userid=external_userid,
                trigger=trigger_name(playbook),
                at=at,
                status=MissedStatus.WAITING,
                recorded_at=now,
            )
            .on_conflict_do_nothing()
        )
        log.warning(
            "playbook %s is broken: %s/%s missed its %s (caught up if fixed within %s)",
            playbook.id,
            guide_userid,
            external_userid,
            trigger_name(playbook),
            playbook.catch_up,
        )


@dataclass
class CatchUpReport:
    enrolled: int = 0
    too_late: int = 0
    skipped: int = 0
    parked: int = 0


async def catch_up(sop: SopRuntime, now: datetime | None = None) -> CatchUpReport:
    """Enroll the pairs each enabled (fixed) playbook missed while it was broken."""
    now = now or sop.clock.now()
    report = CatchUpReport()
    for playbook in sop.registry.enabled():
        while True:
            async with sop.sessions() as session, session.begin():
                rows = list(
                    await session.scalars(
                        select(SopMissed)
                        .where(
                            SopMissed.playbook_id == playbook.id,
                            SopMissed.status == MissedStatus.WAITING,
                            unparked(JOB, SopMissed.__tablename__, SopMissed.id),
                        )
                        .order_by(SopMissed.at, SopMissed.id)
                        .limit(BATCH)
                    )
                )
                if not rows:
                    break
                _, parked = await isolating(
                    session,
                    rows,
                    partial(_resolve_all, sop, session, playbook, now, report),
                    job=JOB,
                    table=SopMissed.__tablename__,
                    key=lambda row: row.id,
                    now=now,
                    detail=partial(_detail, playbook.id),
                )
                report.parked += len(parked)
            if len(rows) < BATCH:
                break
    return report


def _detail(playbook_id: str, row: SopMissed) -> str:
    return f"playbook {playbook_id} missed {row.guide_userid}/{row.external_userid}"


async def _resolve_all(
    sop: SopRuntime,
    session: AsyncSession,
    playbook: Playbook,
    now: datetime,
    report: CatchUpReport,
    rows: Sequence[SopMissed],
) -> None:
    for row in rows:
        status, reason = await _resolve(sop, session, playbook, row, now)
        row.status, row.reason, row.resolved_at = status, reason, now
        setattr(report, status, getattr(report, status) + 1)
        log.info(
            "catch-up of %s for %s/%s: %s%s",
            playbook.id,
            row.guide_userid,
            row.external_userid,
            status,
            f" ({reason})" if reason else "",
        )
    await session.flush()


async def _resolve(
    sop: SopRuntime, session: AsyncSession, playbook: Playbook, row: SopMissed, now: datetime
) -> tuple[str, str | None]:
    if not playbook.catch_up or row.at < now - playbook.catch_up:
        return MissedStatus.TOO_LATE, f"fixed after the catch_up horizon ({playbook.catch_up})"
    if trigger_name(playbook) != row.trigger:
        return MissedStatus.SKIPPED, f"the fixed playbook's trigger is {trigger_name(playbook)}"
    relation = await session.scalar(
        select(Relation).where(
            Relation.guide_userid == row.guide_userid,
            Relation.external_userid == row.external_userid,
        )
    )
    if relation is None or relation.status != RelationStatus.ACTIVE:
        return MissedStatus.SKIPPED, "the relation is no longer active"
    subject = await subject_for(session, relation)
    if playbook.trigger.event == "tag.added" and playbook.trigger.tag not in subject.tags:
        return MissedStatus.SKIPPED, f"the customer no longer has tag {playbook.trigger.tag}"
    if not audience_matches(playbook.audience, subject):
        return MissedStatus.SKIPPED, "outside the fixed playbook's audience"
    enrolled = await enroll(
        session, playbook, subject, at=row.at, now=now, default_timezone=sop.settings.timezone
    )
    if enrolled is None:
        return MissedStatus.SKIPPED, "the playbook's enroll rules say no (enrolled already)"
    expired = await _expire_overdue(session, enrolled.enrollment_id, now)
    return MissedStatus.ENROLLED, f"{expired} overdue step(s) expired" if expired else None


async def _expire_overdue(session: AsyncSession, enrollment_id: int, now: datetime) -> int:
    """Steps due by the time of the fix expire: a late enrollment is not a burst of catch-up
    messages (architecture rule 8). The steps still ahead stay as planned."""
    result = await session.execute(
        update(SopTask)
        .where(
            SopTask.enrollment_id == enrollment_id,
            SopTask.status == TaskStatus.PENDING,
            SopTask.due_at <= now,
        )
        .values(
            status=TaskStatus.EXPIRED,
            reason="overdue when the playbook was fixed (caught up after it was broken); "
            "skipped rather than sent late",
            welcome_code=None,
            completed_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    await complete_enrollments(session, [enrollment_id], now)
    return result.rowcount or 0


async def missed_customers(session: AsyncSession) -> dict[str, dict[str, Any]]:
    """Per playbook, the pairs still waiting for it to be fixed: {"count", "customers": [...]}
    (the first SHOWN, oldest first, each with the customer's name)."""
    counts = dict(
        (
            await session.execute(
                select(SopMissed.playbook_id, func.count())
                .where(SopMissed.status == MissedStatus.WAITING)
                .group_by(SopMissed.playbook_id)
            )
        ).all()
    )
    found: dict[str, dict[str, Any]] = {}
    for playbook_id, count in counts.items():
        rows = await session.execute(
            select(SopMissed, Customer.name)
            .join(Customer, Customer.external_userid == SopMissed.external_userid, isouter=True)
            .where(SopMissed.playbook_id == playbook_id, SopMissed.status == MissedStatus.WAITING)
            .order_by(SopMissed.at, SopMissed.id)
            .limit(SHOWN)
        )
        found[playbook_id] = {
            "count": count,
            "customers": [
                {
                    "external_userid": m.external_userid,
                    "name": name,
                    "guide_userid": m.guide_userid,
                    "trigger": m.trigger,
                    "at": m.at,
                }
                for m, name in rows
            ],
        }
    return found


__all__ = ["CatchUpReport", "catch_up", "missed_customers", "record_missed", "trigger_name"]
