"""What a change_external_chat callback and a sync do to a group (doc 96361, 96338).

The handler and the sync read groupchat/get first (outside the transaction); here the group
row follows that snapshot (name, owner, notice, members' details), and the members follow
the change: the callback's MemChangeList for add_member and del_member, the whole snapshot for
a create, a sync, or an update whose LastMemVer is not the version we hold (a change we missed).
Only a sync takes a member missing from the snapshot as gone: WeCom's data lags its callbacks
(doc 96338), so a callback's snapshot may not show a join yet.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.directory import ensure_guide, store_at
from guidebot.db.engine import upsert_insert
from guidebot.groups.members import Change, JoinDetails, record_departure, record_join
from guidebot.groups.models import CustomerGroup, GroupMember, GroupStatus, MemberStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ChatChange:
    """A change_external_chat callback, as the domain needs it."""

    chat_id: str
    change_type: str  # create | update | dismiss
    at: datetime
    detail: str | None = None  # add_member | del_member | change_owner | change_name | ...
    join_scene: int | None = None
    quit_scene: int | None = None
    members: tuple[str, ...] = ()
    last_version: str | None = None


def instant(seconds: Any) -> datetime | None:
    if seconds in (None, "", 0):
        return None
    return datetime.fromtimestamp(int(seconds), UTC)


async def lock_group(session: AsyncSession, chat_id: str) -> CustomerGroup | None:
    return await session.scalar(
        select(CustomerGroup)
        .where(CustomerGroup.chat_id == chat_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def ensure_group(session: AsyncSession, chat_id: str, now: datetime) -> CustomerGroup:
    insert = upsert_insert(session.bind.dialect.name)
    await session.execute(
        insert(CustomerGroup)
        .values(
            chat_id=chat_id,
            status=GroupStatus.ACTIVE,
            owner_status=0,
            first_seen_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=[CustomerGroup.chat_id])
    )
    group = await lock_group(session, chat_id)
    assert group is not None
    return group


async def apply_group(
    session: AsyncSession,
    group: CustomerGroup,
    snapshot: dict[str, Any],
    at: datetime,
    now: datetime,
) -> None:
    """The group's own fields from groupchat/get; the owner's store as of `at` when the owner
    is new to us (created, or changed owner)."""
    owner = snapshot.get("owner") or None
    if owner and owner != group.owner_userid:
        await ensure_guide(session, owner, now)
        created = instant(snapshot.get("create_time"))
        when = created if group.owner_userid is None and created else at
        group.owner_userid = owner
        group.store_id = await store_at(session, owner, when)
    group.name = snapshot.get("name") or None
    group.notice = snapshot.get("notice") or None
    group.created_at = instant(snapshot.get("create_time")) or group.created_at
    group.synced_at = now
    group.updated_at = now


async def join_all(
    session: AsyncSession, group: CustomerGroup, snapshot: dict[str, Any], change: Change
) -> int:
    """Every member the snapshot lists, as joined at their join_time; how many were new."""
    new = 0
    for member in snapshot.get("member_list") or []:
        member_id = member.get("userid")
        at = instant(member.get("join_time"))
        if member_id and at is not None:
            details = JoinDetails.from_wecom(member)
            new += await record_join(session, group, member_id, at, details, change)
    return new


async def leave_absent(
    session: AsyncSession, group: CustomerGroup, snapshot: dict[str, Any], change: Change
) -> int:
    """Members we hold as in the group whom the snapshot does not list: gone, as of now."""
    present = {m.get("userid") for m in snapshot.get("member_list") or []}
    holding = await session.scalars(
        select(GroupMember.member_id).where(
            GroupMember.chat_id == group.chat_id, GroupMember.status == MemberStatus.MEMBER
        )
    )
    gone = [m for m in holding if m not in present]
    for member_id in gone:
        await record_departure(
            session, group, member_id, change.now, removed=False, scene=None, change=change
        )
    return len(gone)


async def record_chat_change(
    session: AsyncSession,
    event: ChatChange,
    snapshot: dict[str, Any] | None,
    change: Change,
) -> CustomerGroup:
    """One change_external_chat callback; `snapshot` is groupchat/get's group_chat read for
    it (None for a dismiss, or a group WeCom no longer gives)."""
    group = await ensure_group(session, event.chat_id, change.now)
    if event.change_type == "dismiss":
        if group.status != GroupStatus.DISMISSED:
            group.status, group.dismissed_at = GroupStatus.DISMISSED, event.at
            group.updated_at = change.now
        return group
    held_version = group.member_version
    if snapshot is not None:
        await apply_group(session, group, snapshot, event.at, change.now)
    by_id = {m.get("userid"): m for m in (snapshot or {}).get("member_list") or []}
    if event.detail == "add_member":
        for member_id in event.members:
            member = by_id.get(member_id)
            if member is not None and instant(member.get("join_time")) is not None:
                at, details = instant(member["join_time"]), JoinDetails.from_wecom(member)
            else:  # not in the snapshot yet (or any more): the callback's word
                at, details = event.at, JoinDetails(scene=event.join_scene)
            await record_join(session, group, member_id, at, details, change)
    elif event.detail == "del_member":
        for member_id in event.members:
            await record_departure(
                session,
                group,
                member_id,
                event.at,
                removed=event.quit_scene == 1,
                scene=event.quit_scene,
                change=change,
            )
    missed = event.last_version is not None and event.last_version != held_version
    if snapshot is not None and (event.change_type == "create" or missed):
        await join_all(session, group, snapshot, change)
    if snapshot is not None and snapshot.get("member_version"):
        group.member_version = snapshot["member_version"]
    return group


async def record_snapshot(
    session: AsyncSession, snapshot: dict[str, Any], owner_status: int, change: Change
) -> tuple[int, int]:
    """A sync's look at one group: the group as groupchat/get gives it, every listed member
    in, every other member out. (joins, departures) new to us."""
    group = await ensure_group(session, snapshot["chat_id"], change.now)
    await apply_group(session, group, snapshot, change.now, change.now)
    group.owner_status = owner_status
    joined = await join_all(session, group, snapshot, change)
    left = await leave_absent(session, group, snapshot, change)
    if snapshot.get("member_version"):
        group.member_version = snapshot["member_version"]
    return joined, left


async def record_dismissed(
    session: AsyncSession, chat_id: str, at: datetime, now: datetime
) -> None:
    """WeCom says the group is gone (49008) though no dismiss callback reached us."""
    group = await ensure_group(session, chat_id, now)
    if group.status != GroupStatus.DISMISSED:
        group.status, group.dismissed_at, group.updated_at = GroupStatus.DISMISSED, at, now


__all__ = [
    "ChatChange",
    "ensure_group",
    "instant",
    "record_chat_change",
    "record_dismissed",
    "record_snapshot",
]
