"""What an add must know before it writes, read in one statement.

An add callback asks four things before it records the pair: is the guide known (else a
placeholder row goes in first), is a transfer to this guide waiting for the customer (the add
completes it), is the pair already there (the rare known pair takes the locked read), and
where does it count (the 「联系我」 way its state names, else the guide's store at the time,
with that store's code, time zone and name, and the guide's name, which the SOP engine needs
for the welcome). At a
livestream's rate each statement is CPU the next welcome waits behind (README, Benchmarks:
welcome); asked one by one they were four statements and the store's a fifth, in the SOP
subscriber. Here they are one select, built once: scalar subqueries for the first three, and
an outer join from a one-row table to the way, and the department joined to the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.directory import store_at_query
from guidebot.contacts.models import (
    ContactWay,
    Department,
    Guide,
    Relation,
    Transfer,
    TransferStatus,
)
from guidebot.contacts.relations import Attribution
from guidebot.db.base import UTCDateTime, constant, only_filters
from guidebot.db.direct import Direct
from guidebot.events import StoreRef

_GUIDES = Guide.__table__
_TRANSFERS = Transfer.__table__
_RELATIONS = Relation.__table__
_WAYS = ContactWay.__table__
_DEPARTMENTS = Department.__table__


def _build():
    guide, ext = bindparam("guide"), bindparam("ext")
    # The guide's name, '' for a nameless one: known when not NULL (the welcome's text needs it).
    known = (
        select(func.coalesce(_GUIDES.c.name, "")).where(_GUIDES.c.userid == guide).scalar_subquery()
    )
    pending = (
        select(_TRANSFERS.c.id)
        .where(
            _TRANSFERS.c.takeover_userid == guide,
            _TRANSFERS.c.external_userid == ext,
            _TRANSFERS.c.status == constant(TransferStatus.PENDING),
        )
        # By the customer: SQLite would pick the status index and read every pending
        # transfer (a departing guide's customers wait by the thousand for a day).
        .with_hint(_TRANSFERS, "INDEXED BY ix_transfers_customer", "sqlite")
        .limit(1)
        .scalar_subquery()
    )
    pair = (
        select(_RELATIONS.c.id)
        # By the customer, who has a few guides; a guide has thousands of customers.
        .where(_RELATIONS.c.external_userid == ext, only_filters(_RELATIONS.c.guide_userid, guide))
        .scalar_subquery()
    )
    then = (
        store_at_query(guide, bindparam("at", type_=UTCDateTime))
        .scalar_subquery()
        .label("store_then")
    )
    one = select(literal_column("1").label("one")).subquery("one")
    # Scalar subqueries throughout: SQLite ran the guide's store as a joined derived table
    # about ten times slower (it materialised it on every run).
    asked = (
        select(
            known.label("guide"),
            pending.label("pending"),
            pair.label("relation_id"),
            _WAYS.c.config_id,
            _WAYS.c.store_id.label("way_store_id"),
            _WAYS.c.channel,
            _WAYS.c.campaign,
            then,
        )
        .select_from(one.outerjoin(_WAYS, _WAYS.c.state == bindparam("state")))
        .subquery("asked")
    )
    store = func.coalesce(asked.c.way_store_id, asked.c.store_then)
    return select(
        asked, _DEPARTMENTS.c.code, _DEPARTMENTS.c.timezone, _DEPARTMENTS.c.name
    ).select_from(asked.outerjoin(_DEPARTMENTS, _DEPARTMENTS.c.id == store))


_LOOK = Direct(_build())  # run on the driver on the add path (db.direct)


@dataclass(frozen=True, slots=True)
class AddLook:
    guide_known: bool
    guide_name: str | None
    transfer_pending: bool
    relation_id: int | None
    # Where a new pair counts (relations.attribute's answer) and that store's code and zone.
    attribution: Attribution
    store: StoreRef


async def look_at_add(
    session: AsyncSession, userid: str, external_userid: str, state: str | None, at: datetime
) -> AddLook:
    """The four answers for an add of (userid, external_userid) with `state`, counted at `at`.

    Unlocked reads: a pair or a transfer that appears in between is the ON CONFLICT of the
    relation's insert, or the locked reads of the paths that take them."""
    row = (
        await _LOOK.execute(
            session, {"guide": userid, "ext": external_userid, "state": state or None, "at": at}
        )
    ).one()
    if row.config_id is not None:  # a way of ours: its store, channel and campaign
        attribution = Attribution(row.way_store_id, row.channel, row.campaign, row.config_id)
    else:
        attribution = Attribution(row.store_then)
    return AddLook(
        guide_known=row.guide is not None,
        guide_name=row.guide or None,
        transfer_pending=row.pending is not None,
        relation_id=row.relation_id,
        attribution=attribution,
        store=StoreRef(attribution.store_id, row.code, row.timezone, row.name),
    )


__all__ = ["AddLook", "look_at_add"]
