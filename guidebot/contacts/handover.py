"""A transfer completing: the customer moves from the handover guide to the takeover guide.

Whichever tells us first completes it (the takeover's add, the handover's delete marked
DELETE_BY_TRANSFER, or the transfer poll in guidebot.contacts.transfers); the move is announced
(RelationTransferred), so what followed the customer with the old guide follows them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.directory import ensure_guide
from guidebot.contacts.models import EventKind, Relation, RelationStatus, Transfer, TransferStatus
from guidebot.contacts.relations import (
    create_relation,
    end_relation,
    lock_relation,
    log_event,
    upsert_customer,
)
from guidebot.db.base import constant
from guidebot.events import RelationTransferred, publish

log = logging.getLogger(__name__)


async def pending_transfer_from(
    session: AsyncSession, handover: str, external_userid: str
) -> Transfer | None:
    return await session.scalar(
        select(Transfer)
        .where(
            Transfer.handover_userid == handover,
            Transfer.external_userid == external_userid,
            Transfer.status == constant(TransferStatus.PENDING),
        )
        .with_for_update()
    )


_TRANSFERS = Transfer.__table__
# Built once, Core: every add asks whether a transfer to its guide is waiting; almost never.
_ANY_PENDING_TO = (
    select(_TRANSFERS.c.id)
    .where(
        _TRANSFERS.c.takeover_userid == bindparam("takeover"),
        _TRANSFERS.c.external_userid == bindparam("ext"),
        _TRANSFERS.c.status == constant(TransferStatus.PENDING),
    )
    .limit(1)
)


async def pending_transfer_to(
    session: AsyncSession, takeover: str, external_userid: str
) -> Transfer | None:
    found = await session.execute(_ANY_PENDING_TO, {"takeover": takeover, "ext": external_userid})
    if found.first() is None:
        return None  # nothing to lock: the locked read below only for the rare one waiting
    return await session.scalar(
        select(Transfer)
        .where(
            Transfer.takeover_userid == takeover,
            Transfer.external_userid == external_userid,
            Transfer.status == constant(TransferStatus.PENDING),
        )
        .order_by(Transfer.requested_at.desc(), Transfer.id.desc())
        .limit(1)
        .with_for_update()
    )


@dataclass(frozen=True, slots=True)
class _Move:
    """One transfer completing, with when and how we learnt it."""

    transfer: Transfer
    at: datetime
    now: datetime
    source: str
    inbox_id: int | None

    async def log(self, session, relation: Relation, kind: str, *, at, previous, counterpart):
        await log_event(
            session,
            relation,
            kind,
            at=at,
            now=self.now,
            source=self.source,
            previous_status=previous,
            inbox_id=self.inbox_id,
            counterpart=counterpart,
            reason=self.transfer.kind,
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
    the takeover's relation is active with the same attribution and created time; announced
    (RelationTransferred), so what followed the customer (their enrollments) follows.
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
    move = _Move(transfer, at, now, source, inbox_id)
    old = await _end_handover(session, move)
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
    await _activate_takeover(session, move, carried)
    await session.flush()
    moved = RelationTransferred(
        external_userid=ext, from_guide=handover, to_guide=takeover, at=at, now=now
    )
    await publish(session, moved)
    log.info("transfer of %s from %s to %s completed at %s", ext, handover, takeover, at)


async def _end_handover(session: AsyncSession, move: _Move) -> Relation | None:
    """The handover's relation ends `transferred`, naming the takeover as successor."""
    transfer = move.transfer
    handover, takeover = transfer.handover_userid, transfer.takeover_userid
    ext = transfer.external_userid
    old = await lock_relation(session, handover, ext)
    if old is not None and old.status != RelationStatus.TRANSFERRED:
        at_old = max(move.at, old.last_event_at)  # the transfer completes whatever came before
        previous = old.status
        old.status = RelationStatus.TRANSFERRED
        old.ended_at = at_old
        old.end_reason = "transfer"
        old.successor_userid = takeover
        old.last_event_at = at_old
        old.updated_at = move.now
        await move.log(
            session,
            old,
            EventKind.TRANSFERRED_OUT,
            at=at_old,
            previous=previous,
            counterpart=takeover,
        )
    elif old is None:
        await end_relation(
            session,
            userid=handover,
            external_userid=ext,
            status=RelationStatus.TRANSFERRED,
            at=move.at,
            now=move.now,
            source=move.source,
            reason="transfer",
            successor=takeover,
            inbox_id=move.inbox_id,
        )
        old = await lock_relation(session, handover, ext)
    elif old.successor_userid is None:
        old.successor_userid = takeover
    return old


async def _activate_takeover(session: AsyncSession, move: _Move, carried: dict[str, Any]) -> None:
    """The takeover's relation is active, carrying the handover's attribution and created time.
    Already the takeover's customer: WeCom just drops the handover; nothing new to log."""
    transfer, at, now = move.transfer, move.at, move.now
    handover, takeover = transfer.handover_userid, transfer.takeover_userid
    ext = transfer.external_userid
    new = await lock_relation(session, takeover, ext)
    if new is None:
        new, inserted = await create_relation(
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
            await move.log(
                session, new, EventKind.TRANSFERRED_IN, at=at, previous=None, counterpart=handover
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
        await move.log(
            session, new, EventKind.TRANSFERRED_IN, at=at, previous=previous, counterpart=handover
        )


__all__ = ["complete_transfer", "pending_transfer_from", "pending_transfer_to"]
