"""Profiles fetched later: customers recorded from an event alone get their profile filled in.

An add with a WelcomeCode is recorded even when externalcontact/get fails transiently (the
welcome cannot wait for a retry), and an add WeCom answered 84061 for is recorded too; both
leave the customer's `profile_fetched_at` NULL. The `refetch-profiles` job asks WeCom again for
such customers that have an active relation:

* A bounded batch per run, oldest first. WeCom calls happen outside any transaction (SQLite's
  single writer is never held across the network); each answer is written in its own short one.
* A transient failure (a 45009 cooldown, -1, 45033, no answer) ends the run: WeCom is asked
  again at the next run, and meanwhile the client's cooldown keeps it from being asked at all.
* A refusal (84061 and the like) leaves the profile NULL and moves the customer to the back of
  the queue: it is asked again after `RETRY_REFUSED_AFTER`, not at every run.
* Idempotent and safe on several instances: a profile is written only while
  `profile_fetched_at` is still NULL, so a second instance (or an edit event that fetched the
  profile meanwhile) makes the later write a no-op.

The customer's fields and each active relation's follow_user details (remark, description,
tags, mobiles, add_way) are what the add would have recorded with a profile; filling them in
completes the add and is not logged as an edit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.contacts.models import Customer, Relation, RelationStatus
from guidebot.contacts.relations import apply_follow, customer_values, lock_relation
from guidebot.contacts.wecom_profile import Profile, fetch_contact, is_transient
from guidebot.periodic import take_turn
from guidebot.wecom.client import WeComClient, WeComError

log = logging.getLogger(__name__)

BATCH = 50  # externalcontact/get calls per run at most
EVERY_SECONDS = 120  # the job's interval: past the client's 60 s 45009 cooldown
RETRY_REFUSED_AFTER = timedelta(hours=1)


@dataclass(slots=True)
class ProfileReport:
    started_at: datetime
    candidates: int = 0
    filled: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # WeCom had no profile to give
    stopped: str | None = None  # the transient failure that ended the run early


async def missing_profiles(session: AsyncSession, now: datetime, limit: int) -> list[str]:
    """Customers with an active relation and no profile, due to be asked: oldest first.

    A customer never asked has updated_at == created_at (recording an event without a profile
    does not touch the row); one WeCom refused was touched then, and waits its turn.
    """
    active = exists().where(
        Relation.external_userid == Customer.external_userid,
        Relation.status == RelationStatus.ACTIVE,
    )
    return list(
        await session.scalars(
            select(Customer.external_userid)
            .where(
                Customer.profile_fetched_at.is_(None),
                active,
                or_(
                    Customer.updated_at == Customer.created_at,
                    Customer.updated_at <= now - RETRY_REFUSED_AFTER,
                ),
            )
            .order_by(Customer.updated_at, Customer.external_userid)
            .limit(limit)
        )
    )


async def refetch_profiles(
    sessions: async_sessionmaker[AsyncSession],
    wecom: WeComClient,
    now: datetime,
    *,
    batch: int = BATCH,
) -> ProfileReport:
    """Ask WeCom for up to `batch` missing profiles; see the module docstring."""
    report = ProfileReport(started_at=now)
    async with sessions() as session:
        due = await missing_profiles(session, now, batch)
    report.candidates = len(due)
    for external_userid in due:
        try:
            answer = await fetch_contact(wecom, external_userid)
        except WeComError as exc:
            if not is_transient(exc):
                raise
            report.stopped = str(exc)
            log.info(
                "refetch-profiles: stopped after %d of %d: %s",
                len(report.filled) + len(report.refused),
                len(due),
                exc,
            )
            break
        await take_turn()
        async with sessions() as session, session.begin():
            if answer and answer.get("external_contact"):
                if await store_profile(session, external_userid, answer, now):
                    report.filled.append(external_userid)
            else:
                await _put_back(session, external_userid, now)
                report.refused.append(external_userid)
    if report.filled or report.refused:
        log.info(
            "refetch-profiles: %d filled in, %d refused (of %d due)",
            len(report.filled),
            len(report.refused),
            len(due),
        )
    return report


async def store_profile(
    session: AsyncSession, external_userid: str, answer: dict[str, Any], now: datetime
) -> bool:
    """Write a fetched profile unless someone already has; whether this call wrote it."""
    values = customer_values(answer.get("external_contact") or {})
    written = await session.execute(
        update(Customer)
        .where(Customer.external_userid == external_userid, Customer.profile_fetched_at.is_(None))
        .values(**values, profile_fetched_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if written.rowcount != 1:
        return False
    guides = list(
        await session.scalars(
            select(Relation.guide_userid)
            .where(
                Relation.external_userid == external_userid,
                Relation.status == RelationStatus.ACTIVE,
            )
            .order_by(Relation.guide_userid)
        )
    )
    for userid in guides:
        follow = Profile.of(answer, userid).follow
        relation = await lock_relation(session, userid, external_userid)
        if follow is None or relation is None or relation.status != RelationStatus.ACTIVE:
            continue
        add_way = relation.add_way
        if apply_follow(relation, follow) or relation.add_way != add_way:
            relation.updated_at = now
    return True


async def _put_back(session: AsyncSession, external_userid: str, now: datetime) -> None:
    """WeCom has no profile to give now: ask again after RETRY_REFUSED_AFTER."""
    await session.execute(
        update(Customer)
        .where(Customer.external_userid == external_userid, Customer.profile_fetched_at.is_(None))
        .values(updated_at=now)
        .execution_options(synchronize_session=False)
    )


__all__ = [
    "BATCH",
    "EVERY_SECONDS",
    "RETRY_REFUSED_AFTER",
    "ProfileReport",
    "missing_profiles",
    "refetch_profiles",
    "store_profile",
]
