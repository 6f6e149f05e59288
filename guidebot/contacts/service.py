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
  SQLite's single writer is never held across the network (guidebot.contacts.wecom_profile).
* What others care about is announced (guidebot.events), after it is recorded: a pair that
  becomes active (RelationAdded), an edit of its remark or description (RelationEdited), tags
  an edit gave it (TagsGained), an end (RelationEnded),
  and, from guidebot.contacts.handover, a completed transfer (RelationTransferred).

The building blocks (customers, relations, attribution, the event log) are in
guidebot.contacts.relations.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.add_look import AddLook, look_at_add
from guidebot.contacts.directory import ensure_guide
from guidebot.contacts.handover import complete_transfer, pending_transfer_from, pending_transfer_to
from guidebot.contacts.models import (
    EventKind,
    Relation,
    RelationStatus,
    Transfer,
    TransferStatus,
)
from guidebot.contacts.relations import (
    NewRelation,
    apply_follow,
    attribute,
    create_relation,
    end_relation,
    follow_values,
    lock_relation,
    log_event,
    set_attribution,
    upsert_customer,
)
from guidebot.contacts.tags import announce_gained, tag_key
from guidebot.contacts.wecom_profile import Profile
from guidebot.db.direct import flush_pending
from guidebot.events import (
    PairFacts,
    PairNames,
    RelationAdded,
    RelationEdited,
    RelationEnded,
    StoreRef,
    publish,
)

log = logging.getLogger(__name__)


# ---- adds ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Add:
    """One add of a pair, as record_added received it."""

    userid: str
    external_userid: str
    at: datetime
    now: datetime
    source: str
    state: str | None
    created: datetime  # WeCom's createtime for the pair, else the add's instant
    follow: dict[str, Any] | None
    half: bool
    inbox_id: int | None
    welcome_code: str | None
    by_edit: bool

    async def log(self, session: AsyncSession, relation: Relation, kind: str, previous) -> None:
        await log_event(
            session,
            relation,
            kind,
            at=self.at,
            now=self.now,
            source=self.source,
            previous_status=previous,
            inbox_id=self.inbox_id,
        )

    async def attribute_to(self, session: AsyncSession, relation: Relation, state) -> None:
        set_attribution(relation, state, await attribute(session, self.userid, state, self.created))

    async def announce(
        self,
        session: AsyncSession,
        relation: Relation | NewRelation,
        *,
        reactivated: bool,
        store: StoreRef | None = None,
        names: PairNames | None = None,
    ):
        await flush_pending(session)  # a known pair's object, changed: its hearers read it
        added = RelationAdded(
            guide_userid=relation.guide_userid,
            external_userid=relation.external_userid,
            at=self.at,
            now=self.now,
            source=self.source,
            reactivated=reactivated,
            by_edit=self.by_edit,
            welcome_code=self.welcome_code,
            relation=PairFacts.of(relation),
            store=store,
            names=names,
        )
        await publish(session, added)


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
    welcome_code: str | None = None,
    by_edit: bool = False,
) -> Relation | NewRelation:
    """The guide and the customer are connected as of `at` (an add event, or WeCom's list).

    New pair: an active relation, logged `added`. Ended pair and a newer add: `reactivated`
    with this add's attribution. Ended pair and an older add (it arrived after its delete): the
    relation stays ended; created_at, state and attribution are filled in if they were missing,
    and the add is logged then, once. Active pair: only missing details are filled in.

    A pair that becomes active here is announced (RelationAdded, with the add's `welcome_code`
    and `by_edit` when an edit revealed it), after it is recorded.
    """
    follow = profile.follow if profile else None
    add = _Add(
        userid=userid,
        external_userid=external_userid,
        at=at,
        now=now,
        source=source,
        state=state or (follow.get("state") if follow else None) or None,
        created=(profile.createtime if profile else None) or at,
        follow=follow,
        half=half,
        inbox_id=inbox_id,
        welcome_code=welcome_code,
        by_edit=by_edit,
    )
    # What the add must know, in one statement (guidebot.contacts.add_look).
    look = await look_at_add(session, userid, external_userid, add.state, add.created)
    if not look.guide_known:
        await ensure_guide(session, userid, now)
    written = await upsert_customer(
        session, external_userid, profile.contact if profile else None, now
    )
    # The names the welcome's text needs, where this add is sure of them: the customer's as the
    # profile just wrote it, the guide's as the look read it.
    names = (
        PairNames(written["name"], look.guide_name)
        if "name" in written and look.guide_known
        else None
    )
    if look.transfer_pending:
        pending = await pending_transfer_to(session, userid, external_userid)
        if pending is not None:
            # The takeover guide's add for a transfer in flight: the customer moves, with
            # history; the pair is then looked at again, locked.
            await complete_transfer(
                session, pending, at=at, now=now, source=source, inbox_id=inbox_id
            )
            look = None
    relation = None
    if look is None or look.relation_id is not None:
        relation = await lock_relation(session, userid, external_userid)
    if relation is None:
        return await _add_new_pair(session, add, look, names)
    await _add_known_pair(session, relation, add)
    return relation


async def _add_new_pair(
    session: AsyncSession, add: _Add, look: AddLook | None, names: PairNames | None
) -> Relation | NewRelation:
    if look is not None:
        attribution, store = look.attribution, look.store
    else:
        attribution, store = await attribute(session, add.userid, add.state, add.created), None
        names = None  # read before a transfer completed
    relation, inserted = await create_relation(
        session,
        guide_userid=add.userid,
        external_userid=add.external_userid,
        status=RelationStatus.ACTIVE,
        created_at=add.created,
        confirmed=not add.half,
        state=add.state,
        store_id=attribution.store_id,
        channel=attribution.channel,
        campaign=attribution.campaign,
        config_id=attribution.config_id,
        last_event_at=add.at,
        updated_at=add.now,
        **follow_values(add.follow),  # in the insert, not an UPDATE after it
    )
    if not inserted:
        apply_follow(relation, add.follow)
    if inserted:
        await add.log(session, relation, EventKind.ADDED, None)
        await add.announce(session, relation, reactivated=False, store=store, names=names)
    return relation


async def _add_known_pair(session: AsyncSession, relation: Relation, add: _Add) -> None:
    apply_follow(relation, add.follow)
    reactivated = False
    if not add.half:
        relation.confirmed = True
    if relation.status == RelationStatus.ACTIVE:
        # Active as of this add: a delete older than it, arriving late, must not end it.
        relation.last_event_at = max(relation.last_event_at, add.at)
        if relation.created_at is None:
            relation.created_at = add.created
        if relation.store_id is None and relation.channel is None:
            await add.attribute_to(session, relation, relation.state or add.state)
    elif add.at > relation.last_event_at:
        reactivated = True
        previous = relation.status
        relation.status = RelationStatus.ACTIVE
        relation.created_at = add.created
        relation.confirmed = not add.half
        relation.ended_at = relation.end_reason = relation.successor_userid = None
        relation.last_event_at = add.at
        await add.attribute_to(session, relation, add.state)
        await add.log(session, relation, EventKind.REACTIVATED, previous)
    elif relation.created_at is None:
        # The add arrived after the end it precedes: fill in, log it, keep the relation ended.
        relation.created_at = add.created
        await add.attribute_to(session, relation, add.state)
        await add.log(session, relation, EventKind.ADDED, None)
    relation.updated_at = add.now
    await session.flush()
    if reactivated:
        await add.announce(session, relation, reactivated=True)


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
) -> Relation | NewRelation | None:
    """edit_external_contact: refresh the profile and this guide's remark, tags, mobiles.

    An edit of a pair we never saw added proves the relation exists: it is recorded as added.
    Tags the pair gained are announced (TagsGained).
    """
    if profile is None:
        return None
    await upsert_customer(session, external_userid, profile.contact, now)
    relation = await lock_relation(session, userid, external_userid)
    if relation is None:
        if profile.follow is None:
            return None
        relation = await record_added(
            session,
            userid=userid,
            external_userid=external_userid,
            at=profile.createtime or at,
            now=now,
            source=source,
            profile=profile,
            inbox_id=inbox_id,
            by_edit=True,
        )
        written = tuple(k for k in ("remark", "description") if getattr(relation, k))
        await _announce_edit(session, relation, written, at=at, now=now, source=source)
        await announce_gained(session, relation, set(), at=at, now=now, source=source)
        return relation
    tags_before = {tag_key(t) for t in relation.tags or ()} - {None}
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
    await _announce_edit(
        session, relation, tuple(c for c in changed if c != "tags"), at=at, now=now, source=source
    )
    await announce_gained(session, relation, tags_before, at=at, now=now, source=source)
    return relation


async def _announce_edit(
    session: AsyncSession,
    relation: Relation | NewRelation,
    changed: tuple[str, ...],
    *,
    at: datetime,
    now: datetime,
    source: str,
) -> None:
    if changed:
        await publish(
            session,
            RelationEdited(
                guide_userid=relation.guide_userid,
                external_userid=relation.external_userid,
                changed=changed,
                at=at,
                now=now,
                active=relation.status == RelationStatus.ACTIVE,
                source=source,
            ),
        )


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
) -> str:
    """The relation ended at `at` (lost, removed or transferred), unless something newer
    already happened to this pair. A first-seen pair is recorded ended, details to follow.
    Announced (RelationEnded) whenever the pair is ended afterwards. The pair's status."""
    ended = await end_relation(
        session,
        userid=userid,
        external_userid=external_userid,
        status=status,
        at=at,
        now=now,
        source=source,
        reason=reason,
        successor=successor,
        inbox_id=inbox_id,
    )
    await _announce_end(session, userid, external_userid, ended, at=at, now=now, source=source)
    return ended


async def _announce_end(
    session: AsyncSession,
    userid: str,
    external_userid: str,
    status: str,
    *,
    at: datetime,
    now: datetime,
    source: str,
) -> None:
    if status != RelationStatus.ACTIVE:
        ended = RelationEnded(
            guide_userid=userid,
            external_userid=external_userid,
            status=status,
            at=at,
            now=now,
            source=source,
        )
        await publish(session, ended)


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
) -> str:
    """del_external_contact: `removed`, or with DELETE_BY_TRANSFER the transfer completing.
    The pair's status."""
    if by_transfer:
        pending = await pending_transfer_from(session, userid, external_userid)
        if pending is not None:
            await complete_transfer(
                session, pending, at=at, now=now, source=source, inbox_id=inbox_id
            )
            relation = await lock_relation(session, userid, external_userid)
            assert relation is not None
            await flush_pending(session)  # the hearers read what the transfer wrote
            await _announce_end(
                session, userid, external_userid, relation.status, at=at, now=now, source=source
            )
            return relation.status
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
    "record_added",
    "record_deleted_by_guide",
    "record_edited",
    "record_ended",
    "record_transfer_failed",
]
