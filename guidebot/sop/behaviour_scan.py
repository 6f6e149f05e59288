"""The `sop-behaviour` job: the time-based behaviour triggers (guidebot.sop.behaviour).

`opened_no_order`, `silent` and `repurchase_due` fire when nothing happened for a while, which
no fact announces; so no per-customer timer either (architecture rule 5): every few minutes
this job asks the tables which customers' `after` ran out since a short lookback, and enrolls
each for its occurrence.

* Bounded: candidates are read SCAN_BATCH at a time, in key order (keyset paging), each batch
  enrolled in its own transaction.
* Safe on several instances: an occurrence is the enrollment's unique `cycle`, so two
  instances scanning at once enroll the customer once (the loser's insert finds the row).
* No bad row stops it: a batch that fails on a row is retried row by row, the failing one
  parked (guidebot.db.parking) and the rest enrolled.
* LOOKBACK: a fact whose `after` ran out longer ago than this (the server was down, or the
  playbook was added later) is not acted on late; the next occurrence is.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import NamedTuple

from sqlalchemy import Select, and_, exists, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from guidebot.contacts.models import CustomerStage, CustomerStageOrder, Stage
from guidebot.content.models import ContentOpen
from guidebot.db.parking import isolating
from guidebot.sop.behaviour import (
    enroll_pair,
    no_order_key,
    playbooks_for,
    repurchase_key,
    silent_key,
)
from guidebot.sop.context import SopRuntime
from guidebot.sop.playbook import TIMED_TRIGGERS, Playbook
from guidebot.sop.queries import link_reached_customer

log = logging.getLogger(__name__)

JOB = "sop-behaviour"
EVERY_SECONDS = 300
LOOKBACK = timedelta(days=3)
SCAN_BATCH = 500


class Candidate(NamedTuple):
    external_userid: str
    guide_userid: str
    due: datetime  # the fact's instant plus `after`: when the enrollment begins
    occurrence: str


@dataclass
class BehaviourReport:
    enrolled: int = 0
    parked: int = 0
    playbooks: list[str] = field(default_factory=list)


async def sop_behaviour(sop: SopRuntime, now: datetime | None = None) -> BehaviourReport:
    """Enroll the customers whose `after` ran out, for every timed behaviour playbook."""
    now = now or sop.clock.now()
    report = BehaviourReport()
    for event in TIMED_TRIGGERS:
        for playbook in playbooks_for(sop, event):
            try:
                await _scan(sop, playbook, now, report)
            except Exception:
                log.exception("%s scan of %s failed; tried again next run", event, playbook.id)
            report.playbooks.append(playbook.id)
    return report


async def _scan(sop: SopRuntime, playbook: Playbook, now: datetime, report: BehaviourReport):
    async for batch in _candidates(sop, playbook, now):
        async with sop.sessions() as session, session.begin():
            counts, parked = await isolating(
                session,
                batch,
                partial(_enroll_batch, sop, session, playbook, now),
                job=JOB,
                table=CustomerStage.__tablename__,
                key=lambda c: c.external_userid,
                now=now,
                detail=lambda c: (
                    f"playbook {playbook.id} {c.occurrence} for "
                    f"{c.guide_userid}/{c.external_userid}"
                ),
            )
            report.enrolled += sum(counts)
            report.parked += len(parked)


async def _enroll_batch(
    sop: SopRuntime,
    session: AsyncSession,
    playbook: Playbook,
    now: datetime,
    batch: Sequence[Candidate],
) -> int:
    enrolled = 0
    for candidate in batch:
        enrolled += await enroll_pair(
            sop,
            session,
            playbook,
            guide_userid=candidate.guide_userid,
            external_userid=candidate.external_userid,
            at=candidate.due,
            now=now,
            occurrence=candidate.occurrence,
        )
    return enrolled


async def _candidates(
    sop: SopRuntime, playbook: Playbook, now: datetime
) -> AsyncIterator[list[Candidate]]:
    """The playbook's candidates, a batch at a time, in (customer, key) order."""
    trigger = playbook.trigger
    assert trigger.after is not None
    newest = now - trigger.after  # the fact must be at least this old
    oldest = newest - LOOKBACK
    last = ("", "")
    while True:
        query = _QUERIES[trigger.event](playbook, oldest, newest, last)
        async with sop.sessions() as session:
            rows = (await session.execute(query.limit(SCAN_BATCH))).all()
        if not rows:
            return
        batch = []
        for ext, guide, at, key in rows:
            batch.append(Candidate(ext, guide, at + trigger.after, _KEYS[trigger.event](key, at)))
        last = (rows[-1][0], str(rows[-1][3]))
        yield batch
        if len(rows) < SCAN_BATCH:
            return


def _silent(playbook: Playbook, oldest: datetime, newest: datetime, last) -> Select:
    """Customers whose last act (or add) is `after` old: no reply, open or order since."""
    s = CustomerStage
    return (
        select(s.external_userid, s.guide_userid, s.last_active_at, s.external_userid)
        .where(
            s.stage != Stage.LOST,
            s.last_active_at > oldest,
            s.last_active_at <= newest,
            s.external_userid > last[0],
        )
        .order_by(s.external_userid)
    )


def _repurchase(playbook: Playbook, oldest: datetime, newest: datetime, last) -> Select:
    """Customers whose last counted order is `after` old (and, with `orders`, who have
    exactly that many counted orders): an order of the window with none paid after it."""
    o, s = CustomerStageOrder, CustomerStage
    later = aliased(CustomerStageOrder)
    query = (
        select(s.external_userid, s.guide_userid, o.paid_at, s.external_userid)
        .distinct()
        .join(o, o.external_userid == s.external_userid)
        .where(
            o.paid_at > oldest,
            o.paid_at <= newest,
            ~exists().where(later.external_userid == o.external_userid, later.paid_at > o.paid_at),
            s.stage != Stage.LOST,
            s.external_userid > last[0],
        )
        .order_by(s.external_userid)
    )
    if playbook.trigger.orders is not None:
        query = query.where(s.orders == playbook.trigger.orders)
    return query


def _no_order(playbook: Playbook, oldest: datetime, newest: datetime, last) -> Select:
    """Each link's first open by its customer, `after` old, with no counted order paid by
    the customer since the open."""
    c, o = ContentOpen, CustomerStageOrder
    earlier = aliased(ContentOpen)
    return (
        select(c.external_userid, c.guide_userid, c.opened_at, c.link_nonce)
        .distinct()
        .where(
            c.opened_at > oldest,
            c.opened_at <= newest,
            c.external_userid.is_not(None),
            ~exists().where(
                earlier.external_userid == c.external_userid,
                earlier.link_nonce == c.link_nonce,
                earlier.opened_at < c.opened_at,
            ),
            ~exists().where(o.external_userid == c.external_userid, o.paid_at >= c.opened_at),
            link_reached_customer(c.link_nonce, c.task_id),
            (c.external_userid > last[0])
            | and_(c.external_userid == last[0], c.link_nonce > last[1]),
        )
        .order_by(c.external_userid, c.link_nonce)
    )


_QUERIES = {"silent": _silent, "repurchase_due": _repurchase, "opened_no_order": _no_order}
_KEYS = {
    "silent": lambda _key, at: silent_key(at),
    "repurchase_due": lambda _key, at: repurchase_key(at),
    "opened_no_order": lambda nonce, _at: no_order_key(nonce),
}

__all__ = ["JOB", "BehaviourReport", "sop_behaviour"]
