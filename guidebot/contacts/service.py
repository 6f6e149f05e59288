"""Customers and guide↔customer relations: what each contact event does to the graph.

Rules every function here keeps:

* One pair at a time. An event about (guide, customer) touches that relation only; a customer
  with several guides keeps the others exactly as they were.
* Idempotent. Applying the same event twice changes nothing the second time and logs nothing.
* Out of order. A relation remembers the CreateTime of the event that last set its status
  (`last_event_at`); an older event never changes the status. An add that arrives after its
  delete fills in created_at, state and attribution but leaves the relation ended. In the same
  second, an end wins over an add (a relation must exist before it can end).
* Every status change appends one row to relation_events, with the store it counts for.
* WeCom first, database second: a handler's WeCom calls happen before its first statement, so
  SQLite's single writer is never held across the network.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.directory import ensure_guide, store_at
from guidebot.contacts.models import (
    Customer,
    EventKind,
    Relation,
    RelationEvent,
    RelationStatus,
    Transfer,
    TransferStatus,
)
from guidebot.contacts.ways import way_for_state
from guidebot.db.engine import upsert_insert
from guidebot.wecom.client import WeComClient, WeComError, WeComTransportError

log = logging.getLogger(__name__)

# externalcontact/get answers these when there is nothing to read for this pair any more: the
# event is still recorded from what it says.
NO_PROFILE = frozenset({84061, 40096})
# Worth retrying: WeCom busy, a concurrency or frequency limit, or no answer at all.
TRANSIENT = frozenset({-1, 45009, 45033})

_END_KIND = {
    RelationStatus.LOST: EventKind.LOST,
    RelationStatus.REMOVED: EventKind.REMOVED,
    RelationStatus.TRANSFERRED: EventKind.TRANSFERRED_OUT,
}


def from_epoch(seconds: int | float | str | None) -> datetime | None:
    if seconds in (None, "", 0, "0"):
        return None
    return datetime.fromtimestamp(int(seconds), UTC)


# ---- what WeCom says about a pair ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Profile:
    """externalcontact/get for one customer, narrowed to one guide's follow_user entry."""

    contact: dict[str, Any]
    follow: dict[str, Any] | None  # None: WeCom lists no relation between them

    @property
    def createtime(self) -> datetime | None:
        return from_epoch(self.follow.get("createtime")) if self.follow else None

    @classmethod
    def of(cls, answer: dict[str, Any], userid: str) -> Profile:
        """externalcontact/get's answer, narrowed to one guide."""
        follow_users = answer.get("follow_user") or []
        follow = next((f for f in follow_users if f.get("userid") == userid), None)
        return cls(dict(answer.get("external_contact") or {}), follow)


def is_transient(exc: WeComError) -> bool:
    """Worth asking again later: no answer at all, WeCom busy, or a limit (45009 cooldown)."""
    return isinstance(exc, WeComTransportError) or exc.errcode in TRANSIENT


async def fetch_contact(
    wecom: WeComClient, external_userid: str, *, deadline: datetime | None = None
) -> dict[str, Any] | None:
    """externalcontact/get's whole answer, or None when WeCom has none to give.

    Transient failures raise (a call not made by its ``deadline`` too); 84061 (no relation)
    and other refusals return None.
    """
    try:
        return await wecom.get_external_contact(external_userid, deadline=deadline)
    except WeComError as exc:
        if is_transient(exc):
            raise
        if exc.errcode not in NO_PROFILE:
            log.warning(
                "externalcontact/get %s: %s; recording the event alone", external_userid, exc
            )
        return None


async def fetch_profile(
    wecom: WeComClient, external_userid: str, userid: str, *, deadline: datetime | None = None
) -> Profile | None:
    """The customer's profile and this guide's entry, or None when WeCom has none to give.

    Transient failures raise (the inbox worker retries the event); 84061 (no relation) and
    other refusals return None so the event is still recorded from what it says.
    """
    answer = await fetch_contact(wecom, external_userid, deadline=deadline)
    return None if answer is None else Profile.of(answer, userid)


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


async def upsert_customer(
    session: AsyncSession,
    external_userid: str,
    contact: dict[str, Any] | None,
    now: datetime,
) -> None:
    """Insert the customer if new; with a profile, overwrite what WeCom just told us."""
    insert = upsert_insert(session.bind.dialect.name)
    values = customer_values(contact) if contact else {}
    if contact:
        values["profile_fetched_at"] = now
    statement = insert(Customer).values(
        external_userid=external_userid, created_at=now, updated_at=now, **values
    )
    if values:
        statement = statement.on_conflict_do_update(
            index_elements=[Customer.external_userid], set_={**values, "updated_at": now}
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=[Customer.external_userid])
    await session.execute(statement)


# ---- relations -------------------------------------------------------------------------------


async def lock_relation(
    session: AsyncSession, userid: str, external_userid: str
) -> Relation | None:
    """The pair's relation, locked for this transaction on PostgreSQL (SQLite has one writer)."""
    return await session.scalar(
        select(Relation)
        .where(Relation.guide_userid == userid, Relation.external_userid == external_userid)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def _create_relation(session: AsyncSession, **values: Any) -> tuple[Relation, bool]:
    """Insert the pair's relation unless another transaction just did. (relation, inserted)."""
    insert = upsert_insert(session.bind.dialect.name)
    values.setdefault("tags", [])
    values.setdefault("remark_mobiles", [])
    result = await session.execute(
        insert(Relation)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[Relation.guide_userid, Relation.external_userid])
        .returning(Relation.id)
    )
    inserted = result.scalar() is not None
    relation = await lock_relation(session, values["guide_userid"], values["external_userid"])
    assert relation is not None
    return relation, inserted


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


def _set_attribution(relation: Relation, state: str | None, attribution: Attribution) -> None:
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


async def log_event(
    session: AsyncSession,
    relation: Relation,
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
    if store_id is None:
        store_id = await store_at(session, relation.guide_userid, at)
    insert = upsert_insert(session.bind.dialect.name)
    await session.execute(
        insert(RelationEvent)
        .values(
            occurred_at=at,
            recorded_at=now,
            kind=kind,
            guide_userid=relation.guide_userid,
            store_id=store_id,
            external_userid=relation.external_userid,
            previous_status=previous_status,
            channel=relation.channel,
            campaign=relation.campaign,
            state=relation.state,
            counterpart_userid=counterpart,
            reason=reason,
            source=source,
            inbox_id=inbox_id,
        )
        .on_conflict_do_nothing(
            index_elements=[
                RelationEvent.guide_userid,
                RelationEvent.external_userid,
                RelationEvent.kind,
                RelationEvent.occurred_at,
            ]
        )
    )
    log.debug("relation %s/%s: %s at %s", relation.guide_userid, relation.external_userid, kind, at)


# ---- adds ------------------------------------------------------------------------------------


async def record_added(
    session: AsyncSession,
    *,
    userid: str,
    external_userid: str,
    at: datetime,
    now: datetime,
    source: str,
    state: str | None = None,
    profile: Profile | None = None,
    half: bool = False,
    inbox_id: int | None = None,
) -> Relation:
    """The guide and the customer are connected as of `at` (an add event, or WeCom's list).

    New pair: an active relation, logged `added`. Ended pair and a newer add: `reactivated`
    with this add's attribution. Ended pair and an older add (it arrived after its delete): the
    relation stays ended; created_at, state and attribution are filled in if they were missing,
    and the add is logged then, once. Active pair: only missing details are filled in.
    """
    await ensure_guide(session, userid, now)
    await upsert_customer(session, external_userid, profile.contact if profile else None, now)
    follow = profile.follow if profile else None
    created = (profile.createtime if profile else None) or at
    state = state or (follow.get("state") if follow else None) or None

    pending = await pending_transfer_to(session, userid, external_userid)
    if pending is not None:
        # The takeover guide's add for a transfer in flight: the customer moves, with history.
        await complete_transfer(session, pending, at=at, now=now, source=source, inbox_id=inbox_id)

    relation = await lock_relation(session, userid, external_userid)
    if relation is None:
        attribution = await attribute(session, userid, state, created)
        relation, inserted = await _create_relation(
            session,
            guide_userid=userid,
            external_userid=external_userid,
            status=RelationStatus.ACTIVE,
            created_at=created,
            confirmed=not half,
            state=state,
            store_id=attribution.store_id,
            channel=attribution.channel,
            campaign=attribution.campaign,
            config_id=attribution.config_id,
            last_event_at=at,
            updated_at=now,
        )
        apply_follow(relation, follow)
        if inserted:
            await log_event(
                session,
                relation,
                EventKind.ADDED,
                at=at,
                now=now,
                source=source,
                previous_status=None,
                inbox_id=inbox_id,
            )
        return relation

    apply_follow(relation, follow)
    if not half:
        relation.confirmed = True
    if relation.status == RelationStatus.ACTIVE:
        # Active as of this add: a delete older than it, arriving late, must not end it.
        relation.last_event_at = max(relation.last_event_at, at)
        if relation.created_at is None:
            relation.created_at = created
        if relation.store_id is None and relation.channel is None:
            state = relation.state or state
            _set_attribution(relation, state, await attribute(session, userid, state, created))
    elif at > relation.last_event_at:
        previous = relation.status
        relation.status = RelationStatus.ACTIVE
        relation.created_at = created
        relation.confirmed = not half
        relation.ended_at = relation.end_reason = relation.successor_userid = None
        relation.last_event_at = at
        _set_attribution(relation, state, await attribute(session, userid, state, created))
        await log_event(
            session,
            relation,
            EventKind.REACTIVATED,
            at=at,
            now=now,
            source=source,
            previous_status=previous,
            inbox_id=inbox_id,
        )
    elif relation.created_at is None:
        # The add arrived after the end it precedes: fill in, log it, keep the relation ended.
        relation.created_at = created
        _set_attribution(relation, state, await attribute(session, userid, state, created))
        await log_event(
            session,
            relation,
            EventKind.ADDED,
            at=at,
            now=now,
            source=source,
            previous_status=None,
            inbox_id=inbox_id,
        )
    relation.updated_at = now
    await session.flush()
    return relation


async def record_edited(
    session: AsyncSession,
    *,
    userid: str,
    external_userid: str,
    at: datetime,
    now: datetime,
    source: str,
    profile: Profile | None,
    inbox_id: int | None = None,
) -> Relation | None:
    """edit_external_contact: refresh the profile and this guide's remark, tags, mobiles.

    An edit of a pair we never saw added proves the relation exists: it is recorded as added.
    """
    if profile is None:
        return None
    await upsert_customer(session, external_userid, profile.contact, now)
    relation = await lock_relation(session, userid, external_userid)
    if relation is None:
        if profile.follow is None:
            return None
        return await record_added(
            session,
            userid=userid,
            external_userid=external_userid,
            at=profile.createtime or at,
            now=now,
            source=source,
            profile=profile,
            inbox_id=inbox_id,
        )
    changed = apply_follow(relation, profile.follow)
    if changed:
        relation.updated_at = now
        await log_event(
            session,
            relation,
            EventKind.EDITED,
            at=at,
            now=now,
            source=source,
            previous_status=relation.status,
            inbox_id=inbox_id,
            reason=",".join(changed),
        )
    await session.flush()
    return relation


# ---- ends ------------------------------------------------------------------------------------


async def record_ended(
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
) -> Relation:
    """The relation ended at `at` (lost, removed or transferred), unless something newer
    already happened to this pair. A first-seen pair is recorded ended, details to follow."""
    assert status in RelationStatus.ENDED
    await ensure_guide(session, userid, now)
    await upsert_customer(session, external_userid, None, now)
    relation = await lock_relation(session, userid, external_userid)
    if relation is None:
        relation, inserted = await _create_relation(
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
            await log_event(
                session,
                relation,
                _END_KIND[status],
                at=at,
                now=now,
                source=source,
                previous_status=RelationStatus.ACTIVE,  # it must have been, to end
                inbox_id=inbox_id,
                counterpart=successor,
                reason=reason,
            )
        return relation
    if at < relation.last_event_at:
        log.info(
            "%s for %s/%s at %s is older than %s; status stays %s",
            reason,
            userid,
            external_userid,
            at.isoformat(),
            relation.last_event_at.isoformat(),
            relation.status,
        )
        return relation
    if relation.status == status:
        if successor and not relation.successor_userid:
            relation.successor_userid = successor
            relation.updated_at = now
        return relation
    previous = relation.status
    relation.status = status
    relation.ended_at = at
    relation.end_reason = reason
    relation.successor_userid = successor
    relation.last_event_at = at
    relation.updated_at = now
    await log_event(
        session,
        relation,
        _END_KIND[status],
        at=at,
        now=now,
        source=source,
        previous_status=previous,
        inbox_id=inbox_id,
        counterpart=successor,
        reason=reason,
    )
    await session.flush()
    return relation


async def record_deleted_by_guide(
    session: AsyncSession,
    *,
    userid: str,
    external_userid: str,
    by_transfer: bool,
    at: datetime,
    now: datetime,
    source: str,
    inbox_id: int | None = None,
) -> Relation:
    """del_external_contact: `removed`, or with DELETE_BY_TRANSFER the transfer completing."""
    if by_transfer:
        pending = await pending_transfer_from(session, userid, external_userid)
        if pending is not None:
            await complete_transfer(
                session, pending, at=at, now=now, source=source, inbox_id=inbox_id
            )
            relation = await lock_relation(session, userid, external_userid)
            assert relation is not None
            return relation
        return await record_ended(
            session,
            userid=userid,
            external_userid=external_userid,
            status=RelationStatus.TRANSFERRED,
            at=at,
            now=now,
            source=source,
            reason="transfer",
            inbox_id=inbox_id,
        )
    return await record_ended(
        session,
        userid=userid,
        external_userid=external_userid,
        status=RelationStatus.REMOVED,
        at=at,
        now=now,
        source=source,
        reason="deleted_by_guide",
        inbox_id=inbox_id,
    )


# ---- transfers -------------------------------------------------------------------------------


async def pending_transfer_from(
    session: AsyncSession, handover: str, external_userid: str
) -> Transfer | None:
    return await session.scalar(
        select(Transfer)
        .where(
            Transfer.handover_userid == handover,
            Transfer.external_userid == external_userid,
            Transfer.status == TransferStatus.PENDING,
        )
        .with_for_update()
    )


async def pending_transfer_to(
    session: AsyncSession, takeover: str, external_userid: str
) -> Transfer | None:
    return await session.scalar(
        select(Transfer)
        .where(
            Transfer.takeover_userid == takeover,
            Transfer.external_userid == external_userid,
            Transfer.status == TransferStatus.PENDING,
        )
        .order_by(Transfer.requested_at.desc(), Transfer.id.desc())
        .limit(1)
        .with_for_update()
    )


async def complete_transfer(
    session: AsyncSession,
    transfer: Transfer,
    *,
    at: datetime,
    now: datetime,
    source: str,
    inbox_id: int | None = None,
) -> None:
    """The takeover accepted: the handover's relation ends `transferred` (successor named) and
    the takeover's relation is active with the same attribution and created time.
    Idempotent: a transfer that is no longer pending is left alone."""
    if transfer.status != TransferStatus.PENDING:
        return
    handover, takeover = transfer.handover_userid, transfer.takeover_userid
    ext = transfer.external_userid
    transfer.status = TransferStatus.ACCEPTED
    transfer.fail_reason = None  # any "waiting for WeCom" note is settled now
    transfer.completed_at = at
    transfer.updated_at = now

    await ensure_guide(session, takeover, now)
    await upsert_customer(session, ext, None, now)
    old = await lock_relation(session, handover, ext)
    if old is not None and old.status != RelationStatus.TRANSFERRED:
        at_old = max(at, old.last_event_at)  # the transfer completes whatever came before
        previous = old.status
        old.status = RelationStatus.TRANSFERRED
        old.ended_at = at_old
        old.end_reason = "transfer"
        old.successor_userid = takeover
        old.last_event_at = at_old
        old.updated_at = now
        await log_event(
            session,
            old,
            EventKind.TRANSFERRED_OUT,
            at=at_old,
            now=now,
            source=source,
            previous_status=previous,
            inbox_id=inbox_id,
            counterpart=takeover,
            reason=transfer.kind,
        )
    elif old is None:
        await record_ended(
            session,
            userid=handover,
            external_userid=ext,
            status=RelationStatus.TRANSFERRED,
            at=at,
            now=now,
            source=source,
            reason="transfer",
            successor=takeover,
            inbox_id=inbox_id,
        )
        old = await lock_relation(session, handover, ext)
    elif old.successor_userid is None:
        old.successor_userid = takeover

    carried: dict[str, Any] = {}
    if old is not None:
        carried = {
            "created_at": old.created_at,
            "state": old.state,
            "store_id": old.store_id,
            "channel": old.channel,
            "campaign": old.campaign,
            "config_id": old.config_id,
        }
    new = await lock_relation(session, takeover, ext)
    if new is None:
        new, inserted = await _create_relation(
            session,
            guide_userid=takeover,
            external_userid=ext,
            status=RelationStatus.ACTIVE,
            predecessor_userid=handover,
            last_event_at=at,
            updated_at=now,
            **{"created_at": at, **{k: v for k, v in carried.items() if v is not None}},
        )
        if inserted:
            await log_event(
                session,
                new,
                EventKind.TRANSFERRED_IN,
                at=at,
                now=now,
                source=source,
                previous_status=None,
                inbox_id=inbox_id,
                counterpart=handover,
                reason=transfer.kind,
            )
    elif new.status != RelationStatus.ACTIVE and at > new.last_event_at:
        previous = new.status
        new.status = RelationStatus.ACTIVE
        new.ended_at = new.end_reason = new.successor_userid = None
        new.predecessor_userid = handover
        new.last_event_at = at
        for key, value in carried.items():
            setattr(new, key, value)
        new.updated_at = now
        await log_event(
            session,
            new,
            EventKind.TRANSFERRED_IN,
            at=at,
            now=now,
            source=source,
            previous_status=previous,
            inbox_id=inbox_id,
            counterpart=handover,
            reason=transfer.kind,
        )
    # Already the takeover's customer: WeCom just drops the handover; nothing new to log.
    await session.flush()
    # The SOP engine follows the customer: running enrollments move to the takeover guide.
    from guidebot.sop.enrollment import transfer_enrollments

    await transfer_enrollments(
        session, external_userid=ext, from_guide=handover, to_guide=takeover, now=now
    )
    log.info("transfer of %s from %s to %s completed at %s", ext, handover, takeover, at)


async def record_transfer_failed(
    session: AsyncSession,
    *,
    takeover_userid: str,
    external_userid: str,
    fail_reason: str,
    at: datetime,
    now: datetime,
) -> Transfer | None:
    """transfer_fail: the pending transfer to this takeover ends; the relation stays put."""
    transfer = await pending_transfer_to(session, takeover_userid, external_userid)
    if transfer is None:
        log.info(
            "transfer_fail (%s) for %s to %s matches no pending transfer",
            fail_reason,
            external_userid,
            takeover_userid,
        )
        return None
    transfer.status = (
        TransferStatus.LIMIT_EXCEEDED
        if fail_reason == "customer_limit_exceed"
        else TransferStatus.REFUSED
    )
    transfer.fail_reason = fail_reason
    transfer.completed_at = at
    transfer.updated_at = now
    await session.flush()
    return transfer


__all__ = [
    "Profile",
    "apply_follow",
    "attribute",
    "complete_transfer",
    "customer_values",
    "fetch_contact",
    "fetch_profile",
    "from_epoch",
    "is_transient",
    "lock_relation",
    "log_event",
    "record_added",
    "record_deleted_by_guide",
    "record_edited",
    "record_ended",
    "record_transfer_failed",
    "upsert_customer",
]
