"""Group steps (`group_message`, `moment_task`): a cron playbook's occurrence plans one row per
(step, owner or guide) in `sop_group_sends`, never one per customer (guidebot.sop.group_models).

* planning (`plan_occurrence`, from the `sop-triggers` job when a cron playbook of group steps
  fires): the step's due time is the cron instant plus the step's offset on the playbook's
  wall clock, moved into the send window; `group_message` picks the live groups its `groups`
  filter names (store, owner, name pattern, HQ's labels) and plans a row per owner with
  those groups;
  `moment_task` picks the active guides its `guides` filter names (their store, or their
  userid) and plans a row per guide. The unique (playbook, step, occurrence, userid) makes a
  replayed occurrence or a second instance plan nothing twice.
* sending, polling and settling a crash: guidebot.sop.group_sends.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.models import Department, Guide, GuideStatus
from guidebot.db.engine import upsert_insert
from guidebot.groups.labels import labels_of
from guidebot.groups.models import CustomerGroup, GroupStatus
from guidebot.sop.actions import action_for
from guidebot.sop.group_models import GroupSendStatus, SopGroupSend, SopGroupSendChat
from guidebot.sop.planner import snap_into_window
from guidebot.sop.playbook import Playbook, Step, StepTargets
from guidebot.sop.timing import zone_named

log = logging.getLogger(__name__)


def is_group_playbook(playbook: Playbook) -> bool:
    """Every step a group step (`sop check` allows no mix)."""
    return bool(playbook.steps) and all(
        (action := action_for(step.action)) is not None and action.group_step
        for step in playbook.steps
    )


@dataclass(frozen=True)
class Target:
    userid: str  # the owner (group_message) or the guide (moment_task)
    store_id: int | None
    chat_ids: tuple[str, ...] = ()


def step_due(playbook: Playbook, step: Step, fired: datetime, default_zone: str) -> datetime:
    """The cron instant plus the step's offset from enroll on the playbook's wall clock,
    moved into the send window (UTC)."""
    zone = zone_named(playbook.timezone, default_zone)
    local = fired.astimezone(zone) + playbook.offset_from_enroll(step.id)
    return snap_into_window(local.astimezone(UTC), playbook.send_window, zone)


async def group_targets(session: AsyncSession, targets: StepTargets | None) -> list[Target]:
    """The owners of the live groups the filter picks, each with their picked groups."""
    wanted = targets or StepTargets()
    stores = {d.id: d.code for d in await session.scalars(select(Department))}
    by_owner: dict[str, list[CustomerGroup]] = {}
    groups = list(
        await session.scalars(
            select(CustomerGroup)
            .where(
                CustomerGroup.status == GroupStatus.ACTIVE,
                CustomerGroup.owner_userid.is_not(None),
            )
            .order_by(CustomerGroup.chat_id)
        )
    )
    labels = await labels_of(session, [g.chat_id for g in groups]) if wanted.labels else {}
    for group in groups:
        code = stores.get(group.store_id) if group.store_id is not None else None
        if wanted.picks_group(code, group.owner_userid, group.name, labels.get(group.chat_id, ())):
            by_owner.setdefault(group.owner_userid or "", []).append(group)
    return [
        Target(owner, groups[0].store_id, tuple(g.chat_id for g in groups))
        for owner, groups in sorted(by_owner.items())
    ]


async def guide_targets(session: AsyncSession, targets: StepTargets | None) -> list[Target]:
    """The active guides the filter picks: by userid, and by their main store's code."""
    wanted = targets or StepTargets()
    stores = {d.id: d.code for d in await session.scalars(select(Department))}
    found = []
    for guide in await session.scalars(
        select(Guide).where(Guide.status == GuideStatus.ACTIVE).order_by(Guide.userid)
    ):
        if wanted.guides and guide.userid not in wanted.guides:
            continue
        if wanted.stores and stores.get(guide.main_department or 0) not in wanted.stores:
            continue
        found.append(Target(guide.userid, guide.main_department))
    return found


async def plan_occurrence(
    session: AsyncSession,
    playbook: Playbook,
    fired: datetime,
    occurrence: str,
    *,
    now: datetime,
    default_zone: str,
) -> int:
    """Plan every step's rows of one occurrence, in the caller's transaction; how many rows
    were new (0 when the occurrence was planned before)."""
    insert = upsert_insert(session.bind.dialect.name)
    planned = 0
    for step in playbook.steps:
        if step.action == "group_message":
            targets = await group_targets(session, step.targets)
        else:
            targets = await guide_targets(session, step.targets)
        due = step_due(playbook, step, fired, default_zone)
        for target in targets:
            send_id = await session.scalar(
                insert(SopGroupSend)
                .values(
                    playbook_id=playbook.id,
                    playbook_version=playbook.version,
                    step_id=step.id,
                    action=step.action,
                    occurrence=occurrence,
                    userid=target.userid,
                    store_id=target.store_id,
                    content=step.content,
                    due_at=due,
                    expires_at=due + step.expire_after,
                    status=GroupSendStatus.PENDING,
                    attempts=0,
                    created_at=now,
                    updated_at=now,
                )
                .on_conflict_do_nothing()
                .returning(SopGroupSend.id)
            )
            if send_id is None:
                continue  # planned by an earlier run of this occurrence
            planned += 1
            if target.chat_ids:
                await session.execute(
                    insert(SopGroupSendChat),
                    [{"send_id": send_id, "chat_id": c, "status": 0} for c in target.chat_ids],
                )
    log.info("playbook %s occurrence %s: %d group step rows", playbook.id, occurrence, planned)
    return planned


async def guide_group_steps(
    session: AsyncSession, guide: str, start: datetime, end: datetime
) -> dict[str, int]:
    """A guide's group sends and Moments tasks due in [start, end) that reached WeCom, and
    those WeCom says were sent or published (as the KPIs count them)."""
    counts = dict.fromkeys(("group_sends", "group_sent", "moments", "published"), 0)
    for action, status in await session.execute(
        select(SopGroupSend.action, SopGroupSend.status).where(
            SopGroupSend.userid == guide,
            SopGroupSend.status.in_(GroupSendStatus.REACHED),
            SopGroupSend.due_at >= start,
            SopGroupSend.due_at < end,
        )
    ):
        group = action == "group_message"
        counts["group_sends" if group else "moments"] += 1
        if status == GroupSendStatus.DONE:
            counts["group_sent" if group else "published"] += 1
    return counts


__all__ = [
    "Target",
    "group_targets",
    "guide_group_steps",
    "guide_targets",
    "is_group_playbook",
    "plan_occurrence",
    "step_due",
]
