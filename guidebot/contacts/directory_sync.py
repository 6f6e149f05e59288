"""The full address-book sync: departments, guides and memberships made to match WeCom's
department/list and user/list. It runs at start-up and nightly and is idempotent; what it cannot
take (a department id past the column, a bad member) is parked and the rest synced.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.directory import (
    DEPARTMENT_ID_MAX,
    READ_CHUNK,
    free_codes,
    lock_directory,
    mark_left,
    refresh_store_flags,
    upsert_department,
    upsert_guide,
)
from guidebot.contacts.models import EARLY, Department, Guide, GuideStatus, StoreMembership
from guidebot.db.one_hop import inline_statements
from guidebot.db.parking import isolating
from guidebot.wecom.client import WeComClient

log = logging.getLogger(__name__)

SYNC_JOB = "directory-sync"  # as guidebot.app names it; what it parks is filed under it


@dataclass(slots=True)
class DirectoryReport:
    departments: int = 0
    stores: int = 0
    guides: int = 0
    joined: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    parked: list[str] = field(default_factory=list)  # departments and members it could not take


async def sync_directory(
    session: AsyncSession, wecom: WeComClient, now: datetime
) -> DirectoryReport:
    """Make departments, guides and memberships match WeCom's address book. Idempotent.

    Reads WeCom first, then writes, so no database lock is held across the WeCom calls.
    Does not commit; the caller does.
    """
    departments = await wecom.department_list()
    if not departments:
        # WeCom always has a root; an empty answer means no visible range, not no stores.
        log.warning("department/list answered no departments; address book left as it was")
        return DirectoryReport()
    ids = {int(d["id"]) for d in departments}
    roots = [int(d["id"]) for d in departments if int(d.get("parentid") or 0) not in ids]
    members: dict[str, dict[str, Any]] = {}
    for root in roots:
        for member in await wecom.user_list(root, fetch_child=True):
            members[member["userid"]] = member

    report = DirectoryReport(departments=len(ids), guides=len(members))
    await lock_directory(session)
    # One department or member it cannot take (an id past departments.id's range, a value
    # a column cannot hold) is parked with its reason; the rest of the address book is
    # synced all the same, and the next sync meets it again (guidebot.db.parking).
    # On SQLite the transaction holds the write lock from its first statement until the
    # caller commits: its statements run on the loop's thread, not a trip each to the
    # connection's (db.one_hop), and the loop is let run between chunks of stores and guides.
    with inline_statements():
        await _sync_departments(session, departments, ids, now, report)
        await _sync_members(session, members, now, report)
        await session.flush()
    log.info(
        "directory sync: %d departments (%d stores), %d guides; joined %s, moved %s, left %s"
        "; parked %s",
        report.departments,
        report.stores,
        report.guides,
        report.joined or "none",
        report.moved or "none",
        report.left or "none",
        report.parked or "none",
    )
    return report


async def _sync_departments(
    session: AsyncSession,
    departments: list[dict[str, Any]],
    ids: set[int],
    now: datetime,
    report: DirectoryReport,
) -> None:
    """Departments as WeCom lists them; those it no longer lists are marked deleted."""

    async def upsert_departments(batch: Sequence[dict[str, Any]]) -> None:
        # Read once for the batch: a known department is found here and an unknown one is
        # known to be new, with no statement each.
        known = {d.id: d for d in await _departments(session, [int(d["id"]) for d in batch])}
        new = [i for i in (int(d["id"]) for d in batch) if i not in known]
        codes = await free_codes(session, [i for i in new if 1 <= i <= DEPARTMENT_ID_MAX])
        for dept in batch:
            await upsert_department(
                session,
                int(dept["id"]),
                name=dept.get("name"),
                parent_id=dept.get("parentid"),
                order=dept.get("order"),
                now=now,
                known=known,
                codes=codes,
                flush=False,
            )
        await session.flush()  # the batch's departments in one go

    _, parked = await _in_chunks(
        session,
        departments,
        upsert_departments,
        job=SYNC_JOB,
        table=Department.__tablename__,
        key=lambda d: d["id"],
        now=now,
        detail=lambda d: f"department {d.get('name')!r} (parent {d.get('parentid')})",
    )
    report.parked += [f"department {d['id']}" for d in parked]
    await session.execute(
        update(Department)
        .where(
            # Only ids the column can hold: a parked one past its range is in no row anyway.
            Department.id.not_in(sorted(i for i in ids if 1 <= i <= DEPARTMENT_ID_MAX)),
            Department.deleted_at.is_(None),
        )
        .values(deleted_at=now, updated_at=now)
    )
    await refresh_store_flags(session)
    report.stores = await session.scalar(
        select(func.count()).where(Department.is_store.is_(True), Department.deleted_at.is_(None))
    )


@dataclass
class _Held:
    guides: dict[str, Guide]
    departments: list[Department]
    memberships: dict[str, list[StoreMembership]]


# Departments or guides written under one savepoint, between which the event loop runs: on
# SQLite the sync's statements run on the loop's thread, and a brand's 3,000 guides in one go
# held it for 0.65 s; a hundred take about 30 ms.
SYNC_CHUNK = 100
T = TypeVar("T")
R = TypeVar("R")


async def _held_for(
    session: AsyncSession, userids: Sequence[str], members: dict[str, dict[str, Any]]
) -> _Held:
    """The guides, their departments and all their memberships (locked, as set_memberships
    locks them), read a chunk of ids at a time."""
    named = [int(d) for u in userids for d in members[u].get("department") or []]
    held = _Held({}, await _departments(session, named), {})
    for i in range(0, len(userids), READ_CHUNK):
        chunk = list(userids[i : i + READ_CHUNK])
        for guide in await session.scalars(select(Guide).where(Guide.userid.in_(chunk))):
            held.guides[guide.userid] = guide
        for row in await session.scalars(
            select(StoreMembership)
            .where(StoreMembership.guide_userid.in_(chunk))
            .order_by(StoreMembership.id)
            .with_for_update()
        ):
            held.memberships.setdefault(row.guide_userid, []).append(row)
    return held


async def _departments(session: AsyncSession, ids: Sequence[int]) -> list[Department]:
    """The departments of these ids (those a column can hold), a chunk of ids at a time."""
    wanted = sorted({i for i in ids if 1 <= i <= DEPARTMENT_ID_MAX})
    found: list[Department] = []
    for i in range(0, len(wanted), READ_CHUNK):
        chunk = wanted[i : i + READ_CHUNK]
        found += await session.scalars(select(Department).where(Department.id.in_(chunk)))
    return found


async def _sync_members(
    session: AsyncSession,
    members: dict[str, dict[str, Any]],
    now: datetime,
    report: DirectoryReport,
) -> None:
    """Guides and their memberships as WeCom lists them; active guides it does not list left."""
    status_before = {g.userid: g.status for g in await session.scalars(select(Guide))}

    async def upsert_members(batch: Sequence[str]) -> list[tuple[str, str]]:
        # Read once for the batch: held here, its guides and departments are found in the
        # session with no statement each, and the memberships are handed over. A sync that
        # changes nothing was two statements a guide (a second a thousand guides).
        held = await _held_for(session, batch, members)
        changes = []
        for userid in batch:
            member = members[userid]
            depts = [int(d) for d in member.get("department") or []]
            _, created, moved = await upsert_guide(
                session,
                userid,
                name=member.get("name"),
                main_department=member.get("main_department"),
                departments=depts,
                at=now,
                first_from=EARLY,
                memberships=held.memberships.get(userid, []),
                known=held.guides,
                flush=False,
            )
            if created or status_before.get(userid) == GuideStatus.LEFT:
                changes.append(("joined", userid))
            elif moved:
                changes.append(("moved", userid))
        await session.flush()  # the batch's guides and memberships, a few statements a table
        return changes

    async def mark_all_left(batch: Sequence[str]) -> list[tuple[str, str]]:
        for userid in batch:
            await mark_left(session, userid, now)
        await session.flush()
        return [("left", userid) for userid in batch]

    leavers = [
        u
        for u, status in status_before.items()
        if u not in members and status == GuideStatus.ACTIVE
    ]
    for work, users in ((upsert_members, list(members)), (mark_all_left, leavers)):
        done, parked_users = await _in_chunks(
            session,
            users,
            work,
            job=SYNC_JOB,
            table=Guide.__tablename__,
            key=str,
            now=now,
            detail=lambda u: f"member {u}",
        )
        for kind, userid in (change for part in done for change in part):
            getattr(report, kind).append(userid)
        report.parked += [f"member {u}" for u in parked_users]


async def _in_chunks(
    session: AsyncSession,
    items: Sequence[T],
    work: Callable[[Sequence[T]], Awaitable[R]],
    **how: Any,
) -> tuple[list[R], list[T]]:
    """isolating() over SYNC_CHUNK items at a time, the event loop let run between them (the
    statements run on its thread: sync_directory)."""
    done: list[R] = []
    parked: list[T] = []
    for i in range(0, len(items), SYNC_CHUNK):
        if i:
            await asyncio.sleep(0)
        results, failed = await isolating(session, items[i : i + SYNC_CHUNK], work, **how)
        done += results
        parked += failed
    return done, parked
