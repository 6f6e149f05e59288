"""The customer groups from WeCom: groupchat/list (doc 93414) walked with its cursor, then
groupchat/get (doc 96338) for each group, at start-up and nightly; what the callbacks missed
(a join, a departure, a dismissal) is recorded here.

Without owner_filter WeCom walks the app's visible range, refuses with 81017 when that holds
more than 1000 people, and leaves out the groups of owners who left the corp (2025/01/13
revision): so the owners who left are always asked for by name (100 a call), and everyone is,
on 81017. Each group is read before its transaction and committed alone; a group that fails
alone is parked and the sync goes on (architecture rule 11).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.contacts.models import Guide, GuideStatus
from guidebot.db.parking import park_apart
from guidebot.groups.handlers import read_group
from guidebot.groups.members import Change
from guidebot.groups.models import CustomerGroup, GroupSource, GroupStatus
from guidebot.groups.service import record_dismissed, record_snapshot
from guidebot.wecom.client import WeComClient, WeComError, WeComTransportError

log = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]
PAGE_SIZE = 1000  # doc 93414: limit 1..1000
OWNERS_PER_CALL = 100  # doc 93414: owner_filter.userid_list ≤ 100
TOO_MANY_PEOPLE = 81017
TRANSIENT = frozenset({-1, 45009, 45033})  # busy, over the frequency or concurrency cap


@dataclass
class GroupSyncReport:
    listed: int = 0
    synced: int = 0
    dismissed: int = 0
    joined: int = 0
    left: int = 0
    parked: list[str] = field(default_factory=list)


async def _guides(sessions: Sessions, status: str | None = None) -> list[str]:
    query = select(Guide.userid).order_by(Guide.userid)
    if status is not None:
        query = query.where(Guide.status == status)
    async with sessions() as session:
        return list(await session.scalars(query))


async def _list_by_owner(
    wecom: WeComClient, owners: Sequence[str], into: dict[str, int], page_size: int
) -> None:
    for start in range(0, len(owners), OWNERS_PER_CALL):
        chunk = owners[start : start + OWNERS_PER_CALL]
        async for row in wecom.iter_groupchat_list(owners=chunk, limit=page_size):
            into[row["chat_id"]] = int(row.get("status") or 0)


async def list_groups(
    sessions: Sessions, wecom: WeComClient, page_size: int = PAGE_SIZE
) -> dict[str, int]:
    """Every group WeCom lists for us: chat_id → the owner's status (0 normal, 1 left, ...)."""
    found: dict[str, int] = {}
    try:
        async for row in wecom.iter_groupchat_list(limit=page_size):
            found[row["chat_id"]] = int(row.get("status") or 0)
    except WeComError as exc:
        if exc.errcode != TOO_MANY_PEOPLE:
            raise
        log.info("groupchat/list: visible range over 1000 people; listing by owner")
        active = await _guides(sessions, GuideStatus.ACTIVE)
        await _list_by_owner(wecom, active, found, page_size)
    await _list_by_owner(wecom, await _guides(sessions, GuideStatus.LEFT), found, page_size)
    return found


async def sync_groups(
    sessions: Sessions, wecom: WeComClient, now: datetime, *, page_size: int = PAGE_SIZE
) -> GroupSyncReport:
    report = GroupSyncReport()
    listed = await list_groups(sessions, wecom, page_size)
    report.listed = len(listed)
    async with sessions() as session:
        held = set(
            await session.scalars(
                select(CustomerGroup.chat_id).where(CustomerGroup.status == GroupStatus.ACTIVE)
            )
        )
    for chat_id in [*listed, *sorted(held - set(listed))]:
        try:
            await _sync_one(sessions, wecom, chat_id, listed.get(chat_id, 0), now, report)
        except Exception as exc:
            if isinstance(exc, WeComError) and (
                isinstance(exc, WeComTransportError) or exc.errcode in TRANSIENT
            ):
                raise  # WeCom, not the group: the run fails and runs again
            report.parked.append(chat_id)
            await park_apart(
                sessions, exc, job="group-sync", table="customer_groups", key=chat_id, now=now
            )
    log.info("group sync: %s", report)
    return report


async def _sync_one(
    sessions: Sessions,
    wecom: WeComClient,
    chat_id: str,
    owner_status: int,
    now: datetime,
    report: GroupSyncReport,
) -> None:
    snapshot = await read_group(wecom, chat_id)
    async with sessions() as session:
        if snapshot is None:
            await record_dismissed(session, chat_id, now, now)
            report.dismissed += 1
        else:
            snapshot.setdefault("chat_id", chat_id)
            joined, left = await record_snapshot(
                session, snapshot, owner_status, Change(GroupSource.SYNC, now)
            )
            report.synced += 1
            report.joined += joined
            report.left += left
        await session.commit()


__all__ = ["GroupSyncReport", "list_groups", "sync_groups"]
