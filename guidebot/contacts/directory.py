"""The address book: departments are regions and stores, members are guides.

The rows one at a time: lookups, departments, guides and their memberships. The full sync
against WeCom's department/list and user/list is guidebot.contacts.directory_sync;
change_contact callbacks keep the tables current in between (guidebot.contacts.directory_changes).

Store membership is effective-dated: moving a guide closes one membership and opens another,
so whatever happened before the move stays with the store where it happened.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import bindparam, case, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from guidebot.contacts.errors import Conflict, Invalid, NotFound
from guidebot.contacts.models import (
    ContactWay,
    Department,
    Guide,
    GuideStatus,
    Relation,
    StoreMembership,
    Transfer,
)
from guidebot.db.base import UTCDateTime
from guidebot.db.direct import Direct
from guidebot.db.engine import upsert_insert
from guidebot.events import GuideLeft, publish

log = logging.getLogger(__name__)

_CODE = re.compile(r"[A-Za-z0-9_.-]{1,20}")
_DEPARTMENT_ID = re.compile(r"[0-9]{1,10}")
DEPARTMENT_ID_MAX = 2**31 - 1  # departments.id is an integer column
READ_CHUNK = 1000  # values in one IN (...): well inside either engine's limit on parameters


# ---- lookups ---------------------------------------------------------------------------------


# pg_advisory_xact_lock key for writes to the address book ("guidebot directory").
DIRECTORY_LOCK = 0x6764_6469_7265


async def lock_directory(session: AsyncSession) -> None:
    """One transaction at a time writes departments and guides, until it commits.

    Instances syncing at start-up together, or a sync meeting the change_contact callback
    for the same member, would otherwise both insert one row and one of them fail on its
    key. On SQLite the write lock already serialises them.
    """
    if session.bind.dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(DIRECTORY_LOCK)))


async def find_store(session: AsyncSession, ref: str | int) -> Department | None:
    """A department by its store code, else by its WeCom id; deleted ones are not found."""
    text = str(ref).strip()
    found = await session.scalar(
        select(Department).where(Department.code == text, Department.deleted_at.is_(None))
    )
    # Only what a department id can be (an int32 column): not "²", nor 30 digits.
    if found is None and _DEPARTMENT_ID.fullmatch(text) and int(text) <= DEPARTMENT_ID_MAX:
        found = await session.scalar(
            select(Department).where(Department.id == int(text), Department.deleted_at.is_(None))
        )
    return found


async def require_store(session: AsyncSession, ref: str | int) -> Department:
    """find_store for a filter or a write that names a store: an unknown one is Invalid, in
    the same words wherever a store is named."""
    found = await find_store(session, ref)
    if found is None:
        raise Invalid(f"没有这家门店 / unknown store {ref!r}")
    return found


_MEMBERSHIPS = StoreMembership.__table__
_DEPARTMENTS = Department.__table__


def store_at_query(guide: Any, at: Any):
    """The store `guide` belonged to at `at` (bind parameters or columns), as a Core select of
    one row (`store_id`), or none: their main department if it was a store, else the store
    they joined last. Built once by its callers (store_at; the add's look,
    guidebot.contacts.add_look)."""
    main = (
        select(Guide.__table__.c.main_department)
        .where(Guide.__table__.c.userid == guide)
        .scalar_subquery()
    )
    return (
        select(_MEMBERSHIPS.c.store_id)
        .join(_DEPARTMENTS, _DEPARTMENTS.c.id == _MEMBERSHIPS.c.store_id)
        .where(
            _MEMBERSHIPS.c.guide_userid == guide,
            _MEMBERSHIPS.c.valid_from <= at,
            or_(_MEMBERSHIPS.c.valid_to.is_(None), _MEMBERSHIPS.c.valid_to > at),
            _DEPARTMENTS.c.is_store.is_(True),
        )
        .order_by(
            case((_MEMBERSHIPS.c.store_id == main, 0), else_=1),
            _MEMBERSHIPS.c.valid_from.desc(),
            _MEMBERSHIPS.c.store_id,
        )
        .limit(1)
    )


# On the driver on the inbox worker's paths (db.direct).
_STORE_AT = Direct(store_at_query(bindparam("guide"), bindparam("at", type_=UTCDateTime)))


async def store_at(session: AsyncSession, userid: str, at: datetime) -> int | None:
    """The store the guide belonged to at `at`: their main department if it was a store."""
    return (await _STORE_AT.execute(session, {"guide": userid, "at": at})).scalar()


def store_zone(store: Department | None, default: str) -> ZoneInfo:
    """The time zone a store's days run in: its override, else the corp default (IANA)."""
    return ZoneInfo(store.timezone if store is not None and store.timezone else default)


# ---- departments -----------------------------------------------------------------------------


def _codes_for(dept_id: int) -> tuple[str, ...]:
    """The codes a new department may take, in order of preference: its id, else d<id>, d<id>-2,
    ...: an operator may have given those codes to other stores."""
    return (str(dept_id), f"d{dept_id}", *(f"d{dept_id}-{n}" for n in range(2, 100)))


async def _free_code(session: AsyncSession, dept_id: int) -> str:
    for code in _codes_for(dept_id):
        if not await session.scalar(select(func.count()).where(Department.code == code)):
            return code
    raise ValueError(f"no free store code for department {dept_id} (d{dept_id}-99 is taken)")


async def free_codes(session: AsyncSession, dept_ids: Sequence[int]) -> dict[int, str]:
    """The code each of these new departments takes (see _codes_for), with one statement for
    all whose first two choices are free, as a first sync's hundreds of stores' are. The
    choices of two departments never meet (each names its own id), so one read serves all."""
    first_two = {dept_id: _codes_for(dept_id)[:2] for dept_id in dept_ids}
    wanted = sorted({code for codes in first_two.values() for code in codes})
    taken: set[str] = set()
    for i in range(0, len(wanted), READ_CHUNK):
        chunk = wanted[i : i + READ_CHUNK]
        taken.update(
            await session.scalars(select(Department.code).where(Department.code.in_(chunk)))
        )
    found: dict[int, str] = {}
    for dept_id, codes in first_two.items():
        free = next((code for code in codes if code not in taken), None)
        found[dept_id] = free if free is not None else await _free_code(session, dept_id)
    return found


async def upsert_department(
    session: AsyncSession,
    dept_id: int,
    *,
    name: str | None,
    parent_id: int | None,
    order: int | None,
    now: datetime,
    known: Mapping[int, Department] | None = None,
    codes: Mapping[int, str] | None = None,
    flush: bool = True,
) -> Department:
    """`known`: the departments the caller read already; an id not in it has no row, so it is
    not asked for again (a first sync of a brand's 500 stores asked 500 times). `codes`: a new
    department's code, from free_codes. `flush=False`: the caller flushes its batch at once."""
    if not 1 <= dept_id <= DEPARTMENT_ID_MAX:
        raise ValueError(f"department id {dept_id} is past departments.id's {DEPARTMENT_ID_MAX}")
    parent_id = parent_id or None  # WeCom's root has parentid 0
    dept = known.get(dept_id) if known is not None else await session.get(Department, dept_id)
    if dept is None:
        dept = Department(
            id=dept_id,
            name=name or str(dept_id),
            parent_id=parent_id,
            sort_order=order or 0,
            is_store=True,
            code=codes[dept_id]
            if codes and dept_id in codes
            else await _free_code(session, dept_id),
            updated_at=now,
        )
        session.add(dept)
        if flush:
            await session.flush()
        return dept
    changed = {
        "name": name if name is not None else dept.name,
        "parent_id": parent_id,
        "sort_order": order if order is not None else dept.sort_order,
        "deleted_at": None,
    }
    if any(getattr(dept, k) != v for k, v in changed.items()):
        for key, value in changed.items():
            setattr(dept, key, value)
        dept.updated_at = now
    return dept


async def ensure_department(session: AsyncSession, dept_id: int, now: datetime) -> None:
    """A placeholder for a department an event names before we have synced it."""
    if await session.get(Department, dept_id) is None:
        await lock_directory(session)
        await upsert_department(session, dept_id, name=None, parent_id=None, order=None, now=now)


async def refresh_store_flags(session: AsyncSession) -> None:
    """A department is a store exactly when no live department hangs below it."""
    child = aliased(Department)
    await session.execute(
        update(Department).values(
            is_store=~exists().where(child.parent_id == Department.id, child.deleted_at.is_(None))
        )
    )


async def mark_department_deleted(session: AsyncSession, dept_id: int, at: datetime) -> None:
    await session.execute(
        update(Department)
        .where(Department.id == dept_id, Department.deleted_at.is_(None))
        .values(deleted_at=at, updated_at=at)
    )


async def update_store(
    session: AsyncSession,
    ref: str | int,
    *,
    code: str | None = None,
    timezone: str | None = None,
    clear_timezone: bool = False,
    now: datetime,
) -> Department:
    """Set a store's code and/or its time zone override (an IANA name)."""
    store = await find_store(session, ref)
    if store is None or not store.is_store:
        raise NotFound(f"no store {ref!r}")
    if code is not None:
        if not _CODE.fullmatch(code):
            raise Invalid(f"code {code!r} must be 1-20 letters, digits, '_', '.' or '-'")
        holder = await session.scalar(select(Department).where(Department.code == code))
        if holder is not None and holder.id != store.id:
            raise Conflict(f"code {code!r} is already used by department {holder.id}")
        used = await session.scalar(
            select(func.count()).select_from(ContactWay).where(ContactWay.store_id == store.id)
        )
        if used and code != store.code:
            raise Conflict(
                f"store {store.code!r} has {used} contact way(s) whose state names its code"
            )
        store.code = code
    if timezone is not None:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise Invalid(f"timezone {timezone!r} is not an IANA time zone name") from None
        store.timezone = timezone
    elif clear_timezone:
        store.timezone = None
    store.updated_at = now
    await session.flush()
    return store


# ---- guides and memberships ------------------------------------------------------------------


def _placeholder_guide(dialect: str) -> Direct:
    # ON CONFLICT: the guide is known (most events), or two first events for one unsynced
    # guide must not both insert it.
    return Direct(
        upsert_insert(dialect)(Guide.__table__)
        .values(
            userid=bindparam("guide"),
            name=bindparam("guide"),
            status=GuideStatus.ACTIVE,
            updated_at=bindparam("now"),
        )
        .on_conflict_do_nothing(index_elements=[Guide.__table__.c.userid])
    )


# Built once: every end of a pair makes sure of its guide (on the driver: db.direct).
_PLACEHOLDER_GUIDE = {name: _placeholder_guide(name) for name in ("sqlite", "postgresql")}


async def ensure_guide(session: AsyncSession, userid: str, now: datetime) -> None:
    """The guide is in guides: known, or a placeholder (named by userid) until the address
    book fills it in. One statement, no read."""
    placeholder = _PLACEHOLDER_GUIDE[session.bind.dialect.name]
    await placeholder.execute(session, {"guide": userid, "now": now})


async def set_memberships(
    session: AsyncSession,
    userid: str,
    dept_ids: Iterable[int],
    at: datetime,
    *,
    first_from: datetime | None = None,
    rows: Sequence[StoreMembership] | None = None,
    flush: bool = True,
) -> bool:
    """Close the memberships the guide no longer has and open the new ones, at `at`.

    A guide with no history at all starts at `first_from` (the first sync passes EARLY).
    `rows`: all the guide's memberships, when the caller read them already (locked).
    Returns whether anything changed.
    """
    if rows is None:
        rows = list(
            await session.scalars(
                select(StoreMembership)
                .where(StoreMembership.guide_userid == userid)
                .with_for_update()
            )
        )
    wanted = set(dept_ids)
    open_ids = {row.store_id for row in rows if row.valid_to is None}
    changed = False
    for row in rows:
        if row.valid_to is None and row.store_id not in wanted:
            row.valid_to = max(at, row.valid_from)
            changed = True
    start = at if rows else (first_from or at)
    for dept_id in sorted(wanted - open_ids):
        await ensure_department(session, dept_id, at)
        session.add(StoreMembership(guide_userid=userid, store_id=dept_id, valid_from=start))
        changed = True
    if flush:
        await session.flush()
    return changed


async def upsert_guide(
    session: AsyncSession,
    userid: str,
    *,
    name: str | None,
    main_department: int | None,
    departments: Sequence[int],
    at: datetime,
    first_from: datetime | None = None,
    memberships: Sequence[StoreMembership] | None = None,
    known: Mapping[str, Guide] | None = None,
    flush: bool = True,
) -> tuple[Guide, bool, bool]:
    """Make the guide active with these departments. Returns (guide, created, moved).
    `memberships`: all the guide's memberships, when the caller read them already (locked).
    `known`: the guides the caller read already; a userid not in it has no row, so it is not
    asked for again (a first sync of 3,000 guides asked 3,000 times). `flush=False` leaves
    the rows to the caller's flush: a batch's guides and memberships are then written a few
    statements a table (the unit of work orders the tables by their foreign keys)."""
    guide = known.get(userid) if known is not None else await session.get(Guide, userid)
    created = guide is None
    if guide is None:
        guide = Guide(userid=userid, name=name or userid, updated_at=at)
        session.add(guide)
    if name:
        guide.name = name
    guide.status = GuideStatus.ACTIVE
    guide.left_at = None
    guide.main_department = main_department or (departments[0] if departments else None)
    guide.updated_at = at
    if flush:
        await session.flush()
    moved = await set_memberships(
        session, userid, departments, at, first_from=first_from, rows=memberships, flush=flush
    )
    return guide, created, moved


async def mark_left(session: AsyncSession, userid: str, at: datetime) -> bool:
    """The guide left the corp: memberships close; relations stay for a resigned transfer."""
    guide = await session.get(Guide, userid)
    if guide is None or guide.status == GuideStatus.LEFT:
        return False
    guide.status = GuideStatus.LEFT
    guide.left_at = at
    guide.updated_at = at
    await set_memberships(session, userid, (), at)
    await publish(session, GuideLeft(guide_userid=userid, at=at, now=at))
    return True


async def rename_guide(session: AsyncSession, old: str, new: str, at: datetime) -> None:
    """WeCom changed a member's userid: the person, and their history, move to the new id.

    relation_events keeps the ids of its time (it is append-only); current state moves.
    """
    old_guide = await session.get(Guide, old)
    if old_guide is None or old == new:
        return
    if await session.get(Guide, new) is None:
        session.add(
            Guide(
                userid=new,
                name=old_guide.name,
                status=old_guide.status,
                main_department=old_guide.main_department,
                left_at=old_guide.left_at,
                updated_at=at,
            )
        )
        await session.flush()
    other = aliased(Relation)
    await session.execute(
        update(Relation)
        .where(
            Relation.guide_userid == old,
            ~exists().where(
                other.guide_userid == new, other.external_userid == Relation.external_userid
            ),
        )
        .values(guide_userid=new)
    )
    for column in (Relation.successor_userid, Relation.predecessor_userid):
        await session.execute(update(Relation).where(column == old).values({column: new}))
    member = aliased(StoreMembership)
    await session.execute(
        update(StoreMembership)
        .where(
            StoreMembership.guide_userid == old,
            or_(
                StoreMembership.valid_to.is_not(None),
                ~exists().where(
                    member.guide_userid == new,
                    member.store_id == StoreMembership.store_id,
                    member.valid_to.is_(None),
                ),
            ),
        )
        .values(guide_userid=new)
    )
    for column in (Transfer.handover_userid, Transfer.takeover_userid):
        await session.execute(update(Transfer).where(column == old).values({column: new}))
    for way in await session.scalars(select(ContactWay)):
        if old in way.userids:
            way.userids = [new if u == old else u for u in way.userids]
    await session.flush()
    still_used = await session.scalar(
        select(func.count()).select_from(Relation).where(Relation.guide_userid == old)
    ) or await session.scalar(
        select(func.count()).select_from(StoreMembership).where(StoreMembership.guide_userid == old)
    )
    if still_used:
        await mark_left(session, old, at)
    else:
        await session.delete(old_guide)
    await session.flush()
    log.info("guide %s renamed to %s", old, new)
