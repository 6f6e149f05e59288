"""The SOP engine's fixed periodic jobs (JOBS, below; the runtime schedules them with the
app's one SOP runtime, `sop`).

None of them holds per-customer state: each reads and writes rows and may run on any
instance at any time (claims and unique keys arbitrate).

* `sop_tick` (every 5 s): take back lapsed claims and this instance's stranded ones, run due
  task rows.
* `sop_reconcile` (every minute): rows left in `sending` by a dead process.
* `sop_results` (every 10 min): get_groupmsg_send_result for `sent` guide tasks.
* `sop_triggers` (every minute): date and cron playbooks enroll matching relations, once per
  occurrence (a `sop_trigger_runs` row marks an occurrence finished).
* `sop_behaviour` (every 5 min): opened_no_order, silent and repurchase_due playbooks enroll
  the customers whose `after` ran out, once per occurrence (guidebot.sop.behaviour_scan).
* `sop_group_steps` (every 30 s): the group steps' rows (guidebot.sop.group_sends): settle
  rows a dead process left `sending`, cancel those of a playbook HQ stopped
  (guidebot.sop.group_cancel), send the due ones, ask WeCom about the sent ones (a row at
  most every 5 min).
* `sop_catch_up` (every 30 s): a fixed playbook enrolls the pairs it missed while broken
  (guidebot.sop.catch_up).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.models import Department, Relation, RelationStatus
from guidebot.db.engine import upsert_insert
from guidebot.db.parking import isolating
from guidebot.periodic import PeriodicJob
from guidebot.sop.actions.base import TickReport
from guidebot.sop.audience import Subject, audience_matches, birthday_of, tag_keys
from guidebot.sop.behaviour_scan import EVERY_SECONDS as BEHAVIOUR_EVERY
from guidebot.sop.behaviour_scan import JOB as BEHAVIOUR_JOB
from guidebot.sop.behaviour_scan import BehaviourReport, sop_behaviour
from guidebot.sop.catch_up import JOB as CATCH_UP_JOB
from guidebot.sop.catch_up import CatchUpReport, catch_up
from guidebot.sop.context import SopRuntime
from guidebot.sop.dates import day_start, keeps_field, occurrence, today_for
from guidebot.sop.enrollment import enroll
from guidebot.sop.group_cancel import cancel_stopped
from guidebot.sop.group_results import poll as poll_group_steps
from guidebot.sop.group_sends import JOB as GROUP_STEPS_JOB
from guidebot.sop.group_sends import GroupStepReport, run_due, settle_stale
from guidebot.sop.group_steps import is_group_playbook, plan_occurrence
from guidebot.sop.models import SopTriggerRun
from guidebot.sop.playbook import Playbook
from guidebot.sop.queue import release_stranded_claims
from guidebot.sop.reconcile import ReconcileReport, reconcile_sending
from guidebot.sop.results import PollReport, poll_send_results
from guidebot.sop.tick import tick
from guidebot.sop.timing import zone_named

log = logging.getLogger(__name__)

TRIGGERS_JOB = "sop-triggers"  # the job's name; relations it parks are filed under it
# A cron occurrence missed for longer than this (the server was down) is not run late.
CRON_LOOKBACK = timedelta(days=1)
SCAN_BATCH = 500


async def sop_tick(sop: SopRuntime) -> TickReport:
    await release_stranded_claims(sop, sop.clock.now())
    return await tick(sop)


async def sop_reconcile(sop: SopRuntime) -> ReconcileReport:
    return await reconcile_sending(sop)


async def sop_results(sop: SopRuntime) -> PollReport:
    return await poll_send_results(sop)


async def sop_catch_up(sop: SopRuntime) -> CatchUpReport:
    return await catch_up(sop)


async def sop_group_steps(sop: SopRuntime) -> GroupStepReport:
    report = await settle_stale(sop)
    await cancel_stopped(sop, report)  # before sending: a stopped playbook sends nothing more
    await run_due(sop, report)
    return await poll_group_steps(sop, report)


@dataclass
class TriggerReport:
    occurrences: list[str] = field(default_factory=list)
    enrolled: int = 0
    parked: int = 0  # relations it could not enroll (guidebot.db.parking)


async def sop_triggers(sop: SopRuntime, now: datetime | None = None) -> TriggerReport:
    """Enroll relations in date and cron playbooks whose occurrence has come."""
    now = now or sop.clock.now()
    report = TriggerReport()
    for playbook in sop.registry.enabled():
        trigger = playbook.trigger
        try:
            if trigger.event == "cron" and trigger.cron:
                occurrence = latest_cron_occurrence(
                    trigger.cron, zone_named(playbook.timezone, sop.settings.timezone), now
                )
                if occurrence is not None and is_group_playbook(playbook):
                    await plan_groups(sop, playbook, occurrence, now, report)
                elif occurrence is not None:
                    await _run_occurrence(sop, playbook, occurrence, None, now, report)
            elif trigger.event == "date":
                if not keeps_field(playbook):
                    log.warning(
                        "playbook %s: date field %r is not kept by guidebot; nothing enrolls",
                        playbook.id,
                        trigger.field,
                    )
                    continue
                today = today_for(playbook, now, sop.settings.timezone)
                await _run_occurrence(sop, playbook, None, today, now, report)
        except Exception:
            log.exception("trigger scan for playbook %s failed; tried again next run", playbook.id)
    return report


def latest_cron_occurrence(crontab: str, zone, now: datetime) -> datetime | None:
    """The last instant ≤ now the crontab fired (in `zone`), within CRON_LOOKBACK."""
    trigger = CronTrigger.from_crontab(crontab, timezone=zone)
    moment = trigger.get_next_fire_time(None, now - CRON_LOOKBACK)
    last = None
    while moment is not None and moment <= now:
        last = moment
        moment = trigger.get_next_fire_time(moment, moment + timedelta(seconds=1))
    return last.astimezone(UTC) if last is not None else None


def _cron_key(runtime: SopRuntime, playbook: Playbook, fired: datetime) -> str:
    zone = zone_named(playbook.timezone, runtime.settings.timezone)
    return f"cron:{fired.astimezone(zone):%Y-%m-%dT%H:%M}"


async def plan_groups(
    runtime: SopRuntime,
    playbook: Playbook,
    fired: datetime,
    now: datetime,
    report: TriggerReport | None = None,
) -> None:
    """A cron playbook of group steps: its rows per owner or guide, planned in one
    transaction with the occurrence's run row (guidebot.sop.group_steps)."""
    key = _cron_key(runtime, playbook, fired)
    async with runtime.sessions() as session:
        if await session.get(SopTriggerRun, (playbook.id, key)) is not None:
            return
    async with runtime.sessions() as session, session.begin():
        planned = await plan_occurrence(
            session, playbook, fired, key, now=now, default_zone=runtime.settings.timezone
        )
        insert = upsert_insert(session.bind.dialect.name)
        await session.execute(
            insert(SopTriggerRun)
            .values(playbook_id=playbook.id, occurrence=key, enrolled=planned, finished_at=now)
            .on_conflict_do_nothing()
        )
    if report is not None:
        report.occurrences.append(f"{playbook.id}:{key}")


async def _run_occurrence(
    runtime: SopRuntime,
    playbook: Playbook,
    fired: datetime | None,
    day: date | None,
    now: datetime,
    report: TriggerReport,
) -> None:
    if fired is not None:
        key = _cron_key(runtime, playbook, fired)
    else:
        assert day is not None
        key = occurrence(day)
    async with runtime.sessions() as session:
        done = await session.get(SopTriggerRun, (playbook.id, key))
    if done is not None:
        return
    enrolled = 0
    async for batch in _relations(runtime, birthdays=day is not None):
        async with runtime.sessions() as session, session.begin():
            # A relation it cannot enroll (an instant out of range, a value an older version
            # wrote) is parked with its reason; the others are enrolled all the same, and the
            # playbook's next occurrence meets it again (guidebot.db.parking).
            counts, parked = await isolating(
                session,
                batch,
                partial(_enroll_batch, runtime, session, playbook, fired, day, key, now),
                job=TRIGGERS_JOB,
                table=Relation.__tablename__,
                key=lambda item: item[0].id,
                now=now,
                detail=lambda item: (
                    f"playbook {playbook.id} occurrence {key} for "
                    f"{item[0].guide_userid}/{item[0].external_userid}"
                ),
            )
            enrolled += sum(counts)
            report.parked += len(parked)
    async with runtime.sessions() as session, session.begin():
        insert = upsert_insert(session.bind.dialect.name)
        await session.execute(
            insert(SopTriggerRun)
            .values(playbook_id=playbook.id, occurrence=key, enrolled=enrolled, finished_at=now)
            .on_conflict_do_nothing()
        )
    if report is not None:
        report.occurrences.append(f"{playbook.id}:{key}")
    report.enrolled += enrolled
    log.info("playbook %s occurrence %s: %d enrolled", playbook.id, key, enrolled)


async def _enroll_batch(
    runtime: SopRuntime,
    session: AsyncSession,
    playbook: Playbook,
    fired: datetime | None,
    day: date | None,
    key: str,
    now: datetime,
    batch: Sequence[tuple[Relation, Department | None]],
) -> int:
    """Enroll the batch's matching relations in the occurrence, in the caller's transaction;
    how many were enrolled."""
    zone = zone_named(playbook.timezone, runtime.settings.timezone)
    enrolled = 0
    for relation, store in batch:
        if day is not None:
            birthday = birthday_of(relation)
            if birthday != (day.month, day.day):
                continue
        subject = Subject(
            guide_userid=relation.guide_userid,
            external_userid=relation.external_userid,
            relation_status=relation.status,
            store_id=relation.store_id,
            store_code=store.code if store else None,
            store_zone=store.timezone if store else None,
            channel=relation.channel,
            state=relation.state,
            tags=frozenset(tag_keys(relation.tags)),
        )
        if not audience_matches(playbook.audience, subject):
            continue
        # A date: 00:00 on the day, in the customer's zone.
        at = day_start(day, subject.store_zone, zone.key) if day is not None else fired
        assert at is not None
        result = await enroll(
            session,
            playbook,
            subject,
            at=at,
            now=now,
            default_timezone=runtime.settings.timezone,
            occurrence=key,
        )
        enrolled += result is not None
    return enrolled


async def _relations(
    runtime: SopRuntime, *, birthdays: bool
) -> AsyncIterator[list[tuple[Relation, Department | None]]]:
    """Active relations in id order, a batch at a time (memory stays flat)."""
    async with runtime.sessions() as session:
        stores = {d.id: d for d in await session.scalars(select(Department))}
    last = 0
    while True:
        query = (
            select(Relation)
            .where(Relation.status == RelationStatus.ACTIVE, Relation.id > last)
            .order_by(Relation.id)
            .limit(SCAN_BATCH)
        )
        if birthdays:
            query = query.where(
                or_(Relation.remark.like("%生日%"), Relation.description.like("%生日%"))
            )
        async with runtime.sessions() as session:
            rows = list(await session.scalars(query))
        if not rows:
            return
        last = rows[-1].id
        yield [(r, stores.get(r.store_id) if r.store_id else None) for r in rows]


# Per-customer work is in sop_tasks; these only claim and settle rows, and enroll by date.
JOBS = [
    PeriodicJob("sop-tick", sop_tick, every_seconds=5),
    PeriodicJob("sop-reconcile", sop_reconcile, every_seconds=60),
    PeriodicJob("sop-results", sop_results, every_seconds=600),
    PeriodicJob(TRIGGERS_JOB, sop_triggers, every_seconds=60),
    PeriodicJob(CATCH_UP_JOB, sop_catch_up, every_seconds=30),
    PeriodicJob(GROUP_STEPS_JOB, sop_group_steps, every_seconds=30),
    PeriodicJob(BEHAVIOUR_JOB, sop_behaviour, every_seconds=BEHAVIOUR_EVERY),
]


__all__ = [
    "JOBS",
    "BehaviourReport",
    "TriggerReport",
    "latest_cron_occurrence",
    "sop_behaviour",
    "sop_catch_up",
    "sop_group_steps",
    "sop_reconcile",
    "sop_results",
    "sop_tick",
    "sop_triggers",
]
