"""The guide↔customer graph's building blocks: customers, relations, attribution, the event log.

The service (guidebot.contacts.service) composes these into what each contact event does; the
rules it keeps (one pair at a time, idempotent, out of order, one relation_events row per
status change) are written there. `end_relation` records an end without announcing it: the
service announces ends (RelationEnded), a transfer announces the move instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from types import SimpleNamespace
from typing import Any, Protocol

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.util import identity_key

from guidebot.contacts.directory import ensure_guide, store_at, store_at_query
from guidebot.contacts.models import Customer, EventKind, Relation, RelationEvent, RelationStatus
from guidebot.contacts.ways import way_for_state
from guidebot.db.base import UTCDateTime, only_filters
from guidebot.db.direct import Direct
from guidebot.db.engine import upsert_insert

log = logging.getLogger(__name__)

_END_KIND = {
    RelationStatus.LOST: EventKind.LOST,
    RelationStatus.REMOVED: EventKind.REMOVED,
    RelationStatus.TRANSFERRED: EventKind.TRANSFERRED_OUT,
}


# ---- customers -------------------------------------------------------------------------------


def customer_values(contact: dict[str, Any]) -> dict[str, Any]:
    values = {
        "name": contact.get("name"),
        "type": contact.get("type"),
        "gender": contact.get("gender"),
        "unionid": contact.get("unionid"),
        "avatar": contact.get("avatar"),
        "corp_name": contact.get("corp_name"),
    }
    return {k: v for k, v in values.items() if v is not None}


# Statements on every add are built once (per dialect, per set of columns) and run as Core:
# building an ORM statement and its cache key cost more than running it.
_BUILT: dict[tuple, Direct] = {}  # run on the driver on the add path (db.direct)
_CUSTOMERS = Customer.__table__
_RELATIONS = Relation.__table__
_EVENTS = RelationEvent.__table__


def _customer_upsert(dialect: str, columns: tuple[str, ...]):
    key = ("customer", dialect, columns)
    statement = _BUILT.get(key)
    if statement is None:
        insert = upsert_insert(dialect)(_CUSTOMERS)
        if columns:
            changed = {c: insert.excluded[c] for c in (*columns, "updated_at")}
            statement = insert.on_conflict_do_update(
                index_elements=[_CUSTOMERS.c.external_userid], set_=changed
            )
        else:
            statement = insert.on_conflict_do_nothing(index_elements=[_CUSTOMERS.c.external_userid])
        statement = _BUILT[key] = Direct(statement)
    return statement


async def upsert_customer(
    session: AsyncSession,
    external_userid: str,
    contact: dict[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    """Insert the customer if new; with a profile, overwrite what WeCom just told us. What
    was written from the profile (a column missing there keeps what the row had)."""
    values = customer_values(contact) if contact else {}
    if contact:
        values["profile_fetched_at"] = now
    statement = _customer_upsert(session.bind.dialect.name, tuple(sorted(values)))
    await statement.execute(
        session,
        {"external_userid": external_userid, "created_at": now, "updated_at": now, **values},
    )
    return values


# ---- relations -------------------------------------------------------------------------------


# The pair, found through the customer's few relations: PostgreSQL without statistics read
# every relation of the guide's through their index (the guide only filters).
_LOCK_RELATION_BY = (
    only_filters(_RELATIONS.c.guide_userid, bindparam("guide")),
    _RELATIONS.c.external_userid == bindparam("ext"),
)
# Built once: building the ORM statement (its comparisons, FOR UPDATE) cost more than its
# run, and every re-add, edit and transfer looks the pair up this way.
_LOCK_RELATION = (
    select(Relation)
    .where(*_LOCK_RELATION_BY)
    .with_for_update()
    .execution_options(populate_existing=True)
)


async def lock_relation(
    session: AsyncSession, userid: str, external_userid: str
) -> Relation | None:
    """The pair's relation, locked for this transaction on PostgreSQL (SQLite has one writer)."""
    return await session.scalar(_LOCK_RELATION, {"guide": userid, "ext": external_userid})


def _relation_insert(dialect: str):
    key = ("relation", dialect)
    statement = _BUILT.get(key)
    if statement is None:
        statement = (
            upsert_insert(dialect)(_RELATIONS)
            .on_conflict_do_nothing(
                index_elements=[_RELATIONS.c.guide_userid, _RELATIONS.c.external_userid]
            )
            .returning(_RELATIONS.c.id)
        )
        statement = _BUILT[key] = Direct(statement)
    return statement


# Every column of a new relation, so the row and the session's object agree without a read.
_NEW_RELATION = {c.key: None for c in _RELATIONS.c if c.key != "id"} | {"confirmed": True}


def follow_values(follow: dict[str, Any] | None) -> dict[str, Any]:
    """What apply_follow would set on a new relation, as column values for its insert."""
    if not follow:
        return {}
    blank = SimpleNamespace(remark=None, description=None, remark_mobiles=[], tags=[], add_way=None)
    apply_follow(blank, follow)  # type: ignore[arg-type]
    return vars(blank)


class NewRelation(SimpleNamespace):
    """A relation as create_relation inserted it: its columns as attributes, as a Relation's
    (no ORM object: building one, and the session taking it, cost more than the insert)."""

    id: int
    guide_userid: str
    external_userid: str
    status: str
    store_id: int | None
    channel: str | None
    campaign: str | None
    state: str | None
    tags: list[dict[str, Any]]
    remark: str | None
    description: str | None


async def create_relation(
    session: AsyncSession, **values: Any
) -> tuple[Relation | NewRelation, bool]:
    """Insert the pair's relation unless another transaction just did. (relation, inserted):
    the row as inserted, every column given, in one Core statement; or the one there, locked.
    The hearers of the add are handed what it wrote (events.RelationAdded.relation)."""
    row = _NEW_RELATION | {"tags": [], "remark_mobiles": []} | values
    statement = _relation_insert(session.bind.dialect.name)
    new_id = (await statement.execute(session, row)).scalar()
    if new_id is not None:
        return NewRelation(id=new_id, **row), True
    relation = await lock_relation(session, values["guide_userid"], values["external_userid"])
    assert relation is not None
    return relation, False


@dataclass(frozen=True, slots=True)
class Attribution:
    store_id: int | None
    channel: str | None = None
    campaign: str | None = None
    config_id: str | None = None


async def attribute(
    session: AsyncSession, userid: str, state: str | None, at: datetime
) -> Attribution:
    """A known contact-way state names store, channel and campaign; anything else (no state,
    or a state we did not create) counts for the guide's store at the time."""
    way = await way_for_state(session, state)
    if way is not None:
        return Attribution(way.store_id, way.channel, way.campaign, way.config_id)
    return Attribution(await store_at(session, userid, at))


def set_attribution(relation: Relation, state: str | None, attribution: Attribution) -> None:
    relation.state = state
    relation.store_id = attribution.store_id
    relation.channel = attribution.channel
    relation.campaign = attribution.campaign
    relation.config_id = attribution.config_id


def _tags(follow: dict[str, Any], previous: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """externalcontact/get gives tags with names; batch/get_by_user only their ids."""
    if "tags" in follow:
        return [
            {"id": t.get("tag_id"), "name": t.get("tag_name"), "group": t.get("group_name")}
            for t in follow.get("tags") or []
        ]
    known = {t.get("id"): t for t in previous}
    return [known.get(tid) or {"id": tid, "name": None, "group": None} for tid in follow["tag_id"]]


def apply_follow(relation: Relation, follow: dict[str, Any] | None) -> list[str]:
    """Copy this guide's remark, description, tags and mobiles; the names of what changed."""
    if not follow:
        return []
    wanted: dict[str, Any] = {
        "remark": follow.get("remark") or None,
        "description": follow.get("description") or None,
        "remark_mobiles": [m for m in follow.get("remark_mobiles") or [] if m],
    }
    if "tags" in follow or "tag_id" in follow:
        wanted["tags"] = _tags(follow, relation.tags or [])
    changed = [k for k, v in wanted.items() if getattr(relation, k) != v]
    for key in changed:
        setattr(relation, key, wanted[key])
    if follow.get("add_way") is not None:
        relation.add_way = follow["add_way"]
    return changed


def _event_insert(dialect: str, store_then: bool = False):
    """The log line's insert; `store_then`: its store is the guide's at the time, looked up
    in the insert itself (a pair with no store of its own, as a first-seen end's)."""
    key = ("event", dialect, store_then)
    statement = _BUILT.get(key)
    if statement is None:
        insert = upsert_insert(dialect)(_EVENTS)
        if store_then:
            at = bindparam("b_at", type_=UTCDateTime)  # a column's own name is the insert's
            store = store_at_query(bindparam("b_guide"), at)
            insert = insert.values(store_id=store.scalar_subquery())
        statement = insert.on_conflict_do_nothing(
            index_elements=[
                _EVENTS.c.guide_userid,
                _EVENTS.c.external_userid,
                _EVENTS.c.kind,
                _EVENTS.c.occurred_at,
            ]
        )
        statement = _BUILT[key] = Direct(statement)
    return statement


class LoggedPair(Protocol):
    """What a log line repeats of its pair: a Relation, or a row of those columns."""

    guide_userid: str
    external_userid: str
    store_id: int | None
    channel: str | None
    campaign: str | None
    state: str | None


async def log_event(
    session: AsyncSession,
    relation: LoggedPair,
    kind: str,
    *,
    at: datetime,
    now: datetime,
    source: str,
    previous_status: str | None,
    inbox_id: int | None = None,
    counterpart: str | None = None,
    reason: str | None = None,
) -> None:
    """Append one row to relation_events; the same change at the same instant is kept once."""
    store_id = relation.store_id
    if store_id is not None:
        row = {"store_id": store_id}
    else:
        row = {"b_guide": relation.guide_userid, "b_at": at}
    await _event_insert(session.bind.dialect.name, store_id is None).execute(
        session,
        row
        | {
            "occurred_at": at,
            "recorded_at": now,
            "kind": kind,
            "guide_userid": relation.guide_userid,
            "external_userid": relation.external_userid,
            "previous_status": previous_status,
            "channel": relation.channel,
            "campaign": relation.campaign,
            "state": relation.state,
            "counterpart_userid": counterpart,
            "reason": reason,
            "source": source,
            "inbox_id": inbox_id,
        },
    )
    log.debug("relation %s/%s: %s at %s", relation.guide_userid, relation.external_userid, kind, at)


# ---- ends ------------------------------------------------------------------------------------


# Built once: what an end reads of the pair (locked on PostgreSQL: one pair at a time) and
# what it writes, as Core statements (on the driver: db.direct). The ORM's locked read,
# its object and its flush were the two SQLAlchemy statements left on a delete.
_PAIR_FOR_END = Direct(
    select(
        _RELATIONS.c.id,
        _RELATIONS.c.guide_userid,
        _RELATIONS.c.external_userid,
        _RELATIONS.c.status,
        _RELATIONS.c.last_event_at,
        _RELATIONS.c.successor_userid,
        _RELATIONS.c.store_id,
        _RELATIONS.c.channel,
        _RELATIONS.c.campaign,
        _RELATIONS.c.state,
    )
    .where(*_LOCK_RELATION_BY)
    .with_for_update()
)
_BY_ID = _RELATIONS.c.id == bindparam("b_id")
_END = Direct(
    update(_RELATIONS)
    .where(_BY_ID)
    .values(
        status=bindparam("b_status"),
        ended_at=bindparam("b_at"),
        end_reason=bindparam("b_reason"),
        successor_userid=bindparam("b_successor"),
        last_event_at=bindparam("b_at"),
        updated_at=bindparam("b_now"),
    )
)
_NAME_SUCCESSOR = Direct(
    update(_RELATIONS)
    .where(_BY_ID)
    .values(successor_userid=bindparam("b_successor"), updated_at=bindparam("b_now"))
)


async def end_relation(
    session: AsyncSession,
    *,
    userid: str,
    external_userid: str,
    status: str,
    at: datetime,
    now: datetime,
    source: str,
    reason: str,
    successor: str | None = None,
    inbox_id: int | None = None,
) -> str:
    """The relation ended at `at` (lost, removed or transferred), unless something newer
    already happened to this pair. A first-seen pair is recorded ended, details to follow.
    The pair's status afterwards."""
    assert status in RelationStatus.ENDED
    kind = _END_KIND[status]
    log_end = partial(
        log_event, at=at, now=now, source=source, inbox_id=inbox_id, counterpart=successor
    )
    pair = (await _PAIR_FOR_END.execute(session, {"guide": userid, "ext": external_userid})).first()
    if pair is None:
        # A first-seen pair: its guide and customer may be new too (a relation's keys
        # reference both, so a known pair's are there).
        await ensure_guide(session, userid, now)
        await upsert_customer(session, external_userid, None, now)
        relation, inserted = await create_relation(
            session,
            guide_userid=userid,
            external_userid=external_userid,
            status=status,
            created_at=None,
            ended_at=at,
            end_reason=reason,
            successor_userid=successor,
            last_event_at=at,
            updated_at=now,
        )
        if inserted:
            # It must have been active, to end.
            await log_end(
                session, relation, kind, previous_status=RelationStatus.ACTIVE, reason=reason
            )
        return relation.status
    if at < pair.last_event_at:
        log.info(
            "%s for %s/%s at %s is older than %s; status stays %s",
            reason,
            userid,
            external_userid,
            at.isoformat(),
            pair.last_event_at.isoformat(),
            pair.status,
        )
        return pair.status
    asked = {"b_id": pair.id, "b_successor": successor, "b_now": now}
    if pair.status == status:
        if successor and not pair.successor_userid:
            await _NAME_SUCCESSOR.execute(session, asked)
            _expire_held(session, pair.id)
        return pair.status
    asked |= {"b_status": status, "b_at": at, "b_reason": reason}
    await _END.execute(session, asked)
    _expire_held(session, pair.id)
    await log_end(session, pair, kind, previous_status=pair.status, reason=reason)
    return status


def _expire_held(session: AsyncSession, relation_id: int) -> None:
    """A relation object the session holds (an earlier event of the batch read it) reads
    anew: the statement above changed its row behind it."""
    held = session.sync_session.identity_map.get(identity_key(Relation, relation_id))
    if held is not None:
        session.expire(held)


__all__ = [
    "Attribution",
    "NewRelation",
    "apply_follow",
    "attribute",
    "create_relation",
    "customer_values",
    "end_relation",
    "follow_values",
    "lock_relation",
    "log_event",
    "set_attribution",
    "upsert_customer",
]
