"""One member's join or departure, kept once and in order (architecture rule 3).

WeCom may deliver a change twice, out of order, or not at all, and a nightly sync sees what
the callbacks missed. So: every join and departure is a fact logged once in
`group_member_events` (keyed by group, member, kind and time), and a member's `status` follows
the newest fact (`changed_at`): an older one is logged and announced, but changes nothing.
A join at the same second as a departure counts as before it.

A departure already known is not logged again: when the member is out since the event's time
or later (a sync saw them gone before the late callback came), the callback adds nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.models import Guide
from guidebot.db.engine import upsert_insert
from guidebot.events import GroupMemberJoined, GroupMemberLeft, publish
from guidebot.groups.models import (
    CustomerGroup,
    GroupJoinWay,
    GroupMember,
    GroupMemberEvent,
    MemberEventKind,
    MemberStatus,
    MemberType,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Change:
    """Where a change came from: the source, the inbox row of a callback, when we learned it."""

    source: str
    now: datetime
    inbox_id: int | None = None


@dataclass(frozen=True, slots=True)
class JoinDetails:
    """What groupchat/get says of a member (None fields: it did not say)."""

    member_type: str | None = None
    scene: int | None = None
    invitor: str | None = None
    state: str | None = None
    name: str | None = None
    group_nickname: str | None = None
    unionid: str | None = None

    @classmethod
    def from_wecom(cls, member: dict[str, Any]) -> JoinDetails:
        invitor = member.get("invitor") or {}
        return cls(
            member_type=MemberType.of(member.get("type")),
            scene=member.get("join_scene"),
            invitor=invitor.get("userid") if isinstance(invitor, dict) else None,
            state=member.get("state") or None,
            name=member.get("name") or None,
            group_nickname=member.get("group_nickname") or None,
            unionid=member.get("unionid") or None,
        )


async def _member_type(session: AsyncSession, member_id: str) -> str:
    """A callback names only the id: a guide we know is an employee, anyone else a customer."""
    known = await session.scalar(select(Guide.userid).where(Guide.userid == member_id))
    return MemberType.EMPLOYEE if known else MemberType.CUSTOMER


async def lock_member(session: AsyncSession, chat_id: str, member_id: str) -> GroupMember | None:
    return await session.scalar(
        select(GroupMember)
        .where(GroupMember.chat_id == chat_id, GroupMember.member_id == member_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def _new_member(session: AsyncSession, **values: Any) -> GroupMember:
    insert = upsert_insert(session.bind.dialect.name)
    await session.execute(
        insert(GroupMember)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[GroupMember.chat_id, GroupMember.member_id])
    )
    member = await lock_member(session, values["chat_id"], values["member_id"])
    assert member is not None
    return member


async def _log(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Append the fact unless it is already there; whether it was new."""
    insert = upsert_insert(session.bind.dialect.name)
    result = await session.execute(
        insert(GroupMemberEvent)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=[
                GroupMemberEvent.chat_id,
                GroupMemberEvent.member_id,
                GroupMemberEvent.kind,
                GroupMemberEvent.occurred_at,
            ]
        )
        .returning(GroupMemberEvent.id)
    )
    return result.scalar() is not None


async def _attribution(session: AsyncSession, state: str | None) -> GroupJoinWay | None:
    if not state:
        return None
    return await session.scalar(select(GroupJoinWay).where(GroupJoinWay.state == state))


def _describe(member: GroupMember, details: JoinDetails) -> None:
    for name in ("name", "group_nickname", "unionid"):
        value = getattr(details, name)
        if value is not None:
            setattr(member, name, value)


def _fact(
    group: CustomerGroup, member: GroupMember, kind: str, at: datetime, change: Change, **extra: Any
) -> dict[str, Any]:
    return {
        "chat_id": group.chat_id,
        "member_id": member.member_id,
        "member_type": member.member_type,
        "kind": kind,
        "occurred_at": at,
        "recorded_at": change.now,
        "owner_userid": group.owner_userid,
        "store_id": group.store_id,
        "source": change.source,
        "inbox_id": change.inbox_id,
        **extra,
    }


async def record_join(
    session: AsyncSession,
    group: CustomerGroup,
    member_id: str,
    at: datetime,
    details: JoinDetails,
    change: Change,
) -> bool:
    """`member_id` joined `group` at `at`; whether the join was new to us."""
    member_type = details.member_type or await _member_type(session, member_id)
    way = await _attribution(session, details.state)
    joined = {
        "joined_at": at,
        "join_scene": details.scene,
        "invitor_userid": details.invitor,
        "state": details.state,
        "config_id": way.config_id if way else None,
        "store_id": way.store_id if way else None,
        "channel": way.channel if way else None,
        "campaign": way.campaign if way else None,
    }
    member = await lock_member(session, group.chat_id, member_id)
    current = True
    if member is None:
        member = await _new_member(
            session,
            chat_id=group.chat_id,
            member_id=member_id,
            member_type=member_type,
            status=MemberStatus.MEMBER,
            changed_at=at,
            updated_at=change.now,
            **joined,
        )
    elif at > member.changed_at or (
        at == member.changed_at and member.status == MemberStatus.MEMBER
    ):
        for key, value in joined.items():
            if value is not None or key == "joined_at":  # a bare callback keeps what get said
                setattr(member, key, value)
        member.status, member.changed_at, member.left_at = MemberStatus.MEMBER, at, None
    else:
        current = False
    _describe(member, details)
    member.updated_at = change.now
    attributed = {k: joined[k] for k in ("config_id", "channel", "campaign")}
    logged = await _log(
        session,
        _fact(
            group,
            member,
            MemberEventKind.JOINED,
            at,
            change,
            scene=details.scene,
            state=details.state,
            **attributed,
        ),
    )
    if logged:
        await publish(
            session,
            GroupMemberJoined(
                now=change.now,
                chat_id=group.chat_id,
                member_id=member_id,
                member_type=member.member_type,
                owner_userid=group.owner_userid,
                store_id=group.store_id,
                at=at,
                scene=details.scene,
                source=change.source,
                current=current,
                **attributed,
            ),
        )
    return logged


async def record_departure(
    session: AsyncSession,
    group: CustomerGroup,
    member_id: str,
    at: datetime,
    *,
    removed: bool,
    scene: int | None,
    change: Change,
) -> bool:
    """`member_id` left `group` (or was removed) at `at`; whether that was new to us."""
    status = MemberStatus.REMOVED if removed else MemberStatus.LEFT
    member = await lock_member(session, group.chat_id, member_id)
    current = True
    if member is None:
        member = await _new_member(
            session,
            chat_id=group.chat_id,
            member_id=member_id,
            member_type=await _member_type(session, member_id),
            status=status,
            left_at=at,
            changed_at=at,
            updated_at=change.now,
        )
    elif member.status in MemberStatus.GONE and member.left_at and member.left_at >= at:
        return False  # already known to be out since then: the same departure
    elif at >= member.changed_at:
        member.status, member.left_at, member.changed_at = status, at, at
        member.updated_at = change.now
    else:
        current = False  # left before a join we already know of
    kind = MemberEventKind.REMOVED if removed else MemberEventKind.LEFT
    logged = await _log(session, _fact(group, member, kind, at, change, scene=scene))
    if logged:
        await publish(
            session,
            GroupMemberLeft(
                now=change.now,
                chat_id=group.chat_id,
                member_id=member_id,
                member_type=member.member_type,
                owner_userid=group.owner_userid,
                store_id=group.store_id,
                at=at,
                removed=removed,
                source=change.source,
                current=current,
            ),
        )
    return logged


__all__ = ["Change", "JoinDetails", "lock_member", "record_departure", "record_join"]
