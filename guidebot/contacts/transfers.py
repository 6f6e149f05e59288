"""Handing customers from one guide to another: in service (转接) or after resigning (离职继承).

A request is written as `pending` rows and committed before WeCom is asked, so a crash or an
unanswered call leaves a record that `poll_transfer_results` settles from WeCom's
transfer_result. WeCom completes an accepted transfer about 24 hours later; the callbacks
(del_external_contact DELETE_BY_TRANSFER, the takeover's add, transfer_fail) or the poll,
whichever comes first, move the relation (see handover.complete_transfer).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.errors import Conflict, Invalid, NotFound
from guidebot.contacts.handover import complete_transfer
from guidebot.contacts.models import (
    EventSource,
    Guide,
    GuideStatus,
    Relation,
    RelationStatus,
    Transfer,
    TransferKind,
    TransferStatus,
)
from guidebot.contacts.wecom_profile import from_epoch
from guidebot.db.base import constant
from guidebot.db.parking import isolating, unparked
from guidebot.wecom.client import Page, WeComClient, WeComError, WeComUncertain

log = logging.getLogger(__name__)

JOB = "poll-transfers"  # as guidebot.app names it; the transfers it parks are filed under it
MAX_CUSTOMERS = 100  # WeCom's limit per transfer call
# transfer_result's customer[].status
RESULT_ACCEPTED, RESULT_WAITING, RESULT_REFUSED, RESULT_LIMIT = 1, 2, 3, 4
# A pending row WeCom still does not list after this long was never received by WeCom.
UNKNOWN_AFTER = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class TransferOutcome:
    external_userid: str
    status: str  # a TransferStatus, or "skipped" when nothing was asked of WeCom
    transfer_id: int | None = None
    errcode: int | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "external_userid": self.external_userid,
            "status": self.status,
            "transfer_id": self.transfer_id,
            "errcode": self.errcode,
            "reason": self.reason,
        }


@dataclass(slots=True)
class PollReport:
    checked: int = 0
    accepted: list[int] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    still_pending: int = 0
    errors: list[str] = field(default_factory=list)
    parked: list[int] = field(default_factory=list)  # transfers it could not settle

    def add(self, other: PollReport) -> None:
        self.checked += other.checked
        self.accepted += other.accepted
        self.refused += other.refused
        self.failed += other.failed
        self.still_pending += other.still_pending


async def start_transfers(
    session: AsyncSession,
    wecom: WeComClient,
    now: datetime,
    *,
    kind: str,
    handover_userid: str,
    takeover_userid: str,
    external_userids: Sequence[str],
    message: str | None = None,
) -> list[TransferOutcome]:
    """Ask WeCom to hand these customers to the takeover guide; one outcome per customer.

    Commits the pending rows before calling WeCom and again after. A customer who is not the
    handover's, or already has a transfer pending, is skipped without asking WeCom.
    """
    customers = list(dict.fromkeys(external_userids))
    await _check_request(session, kind, handover_userid, takeover_userid, customers, message)
    outcomes: dict[str, TransferOutcome] = {}
    rows = await _new_rows(
        session, kind, handover_userid, takeover_userid, customers, now, outcomes
    )
    session.add_all(rows.values())
    try:
        await session.commit()  # the record exists before WeCom is asked
    except IntegrityError:
        await session.rollback()
        raise Conflict(
            "another transfer for these customers was requested at the same time"
        ) from None

    if rows:
        await _ask_wecom(wecom, kind, handover_userid, takeover_userid, rows, message, now)
        await session.commit()
    for ext, row in rows.items():
        outcomes[ext] = TransferOutcome(ext, row.status, row.id, row.errcode, row.fail_reason)
    return [outcomes[ext] for ext in customers]


async def _check_request(
    session: AsyncSession,
    kind: str,
    handover_userid: str,
    takeover_userid: str,
    customers: list[str],
    message: str | None,
) -> None:
    """Refuse a request that cannot be a transfer (Invalid, NotFound)."""
    if kind not in TransferKind.ALL:
        raise Invalid(f"kind must be one of {', '.join(TransferKind.ALL)}, got {kind!r}")
    if not customers or len(customers) > MAX_CUSTOMERS:
        raise Invalid(f"external_userids must name 1 to {MAX_CUSTOMERS} customers")
    if handover_userid == takeover_userid:
        raise Invalid("handover and takeover are the same guide")
    if message is not None and len(message) > 200:
        raise Invalid("the transfer message is at most 200 characters")
    handover = await session.get(Guide, handover_userid)
    if handover is None:
        raise NotFound(f"no guide {handover_userid!r}")
    takeover = await session.get(Guide, takeover_userid)
    if takeover is None or takeover.status != GuideStatus.ACTIVE:
        raise NotFound(f"no active guide {takeover_userid!r}")
    if kind == TransferKind.RESIGNED and handover.status == GuideStatus.ACTIVE:
        raise Invalid(f"{handover_userid!r} has not left; use an in_service transfer")
    if kind == TransferKind.IN_SERVICE and handover.status == GuideStatus.LEFT:
        raise Invalid(f"{handover_userid!r} has left; use a resigned transfer")


async def _new_rows(
    session: AsyncSession,
    kind: str,
    handover_userid: str,
    takeover_userid: str,
    customers: list[str],
    now: datetime,
    outcomes: dict[str, TransferOutcome],
) -> dict[str, Transfer]:
    """A pending transfer row per customer who can move; the others' outcomes (skipped)."""
    relations = {
        r.external_userid: r
        for r in await session.scalars(
            select(Relation).where(
                Relation.guide_userid == handover_userid,
                Relation.external_userid.in_(customers),
            )
        )
    }
    pending = {
        t.external_userid: t
        for t in await session.scalars(
            select(Transfer).where(
                Transfer.handover_userid == handover_userid,
                Transfer.external_userid.in_(customers),
                Transfer.status == constant(TransferStatus.PENDING),
            )
        )
    }
    rows: dict[str, Transfer] = {}
    for ext in customers:
        relation = relations.get(ext)
        if relation is None or relation.status not in (RelationStatus.ACTIVE, RelationStatus.LOST):
            outcomes[ext] = TransferOutcome(
                ext, "skipped", reason=f"not a current customer of {handover_userid}"
            )
        elif ext in pending:
            outcomes[ext] = TransferOutcome(
                ext, "skipped", pending[ext].id, reason="a transfer is already pending"
            )
        else:
            rows[ext] = Transfer(
                kind=kind,
                handover_userid=handover_userid,
                takeover_userid=takeover_userid,
                external_userid=ext,
                status=TransferStatus.PENDING,
                requested_at=now,
                updated_at=now,
            )
    return rows


async def _ask_wecom(
    wecom: WeComClient,
    kind: str,
    handover: str,
    takeover: str,
    rows: dict[str, Transfer],
    message: str | None,
    now: datetime,
) -> None:
    customers = list(rows)
    try:
        if kind == TransferKind.IN_SERVICE:
            answers = await wecom.transfer_customer(handover, takeover, customers, message)
        else:
            answers = await wecom.resigned_transfer_customer(handover, takeover, customers)
    except WeComUncertain as exc:
        # WeCom may have started them: the rows stay pending and the poll settles them.
        log.warning(
            "transfer %s -> %s: outcome unknown (%s); polling will tell", handover, takeover, exc
        )
        for row in rows.values():
            row.fail_reason = "WeCom did not answer; waiting for transfer_result"
        return
    except WeComError as exc:
        for row in rows.values():
            _fail(row, exc.errcode, exc.errmsg, now)
        return
    for ext, row in rows.items():
        errcode = answers.get(ext)
        if errcode is None:
            row.fail_reason = "not in WeCom's answer; waiting for transfer_result"
        elif errcode != 0:
            _fail(row, errcode, f"WeCom refused this customer: errcode {errcode}", now)


def _fail(row: Transfer, errcode: int, reason: str, now: datetime) -> None:
    row.status = TransferStatus.FAILED
    row.errcode = errcode
    row.fail_reason = reason[:255]
    row.completed_at = now
    row.updated_at = now


async def _results(
    wecom: WeComClient, kind: str, handover: str, takeover: str
) -> dict[str, dict[str, Any]]:
    fetch = (
        wecom.transfer_result if kind == TransferKind.IN_SERVICE else wecom.resigned_transfer_result
    )
    found: dict[str, dict[str, Any]] = {}
    cursor, seen = "", set()
    while True:
        page: Page = await fetch(handover, takeover, cursor)
        for item in page.items:
            found[item["external_userid"]] = item
        if not page.next_cursor or page.next_cursor in seen:
            return found
        seen.add(page.next_cursor)
        cursor = page.next_cursor


async def poll_transfer_results(
    session: AsyncSession, wecom: WeComClient, now: datetime
) -> PollReport:
    """Settle pending transfers from WeCom's transfer_result. Commits (before calling WeCom,
    and after applying), so no database lock is held across the calls."""
    groups = list(
        await session.execute(
            select(Transfer.kind, Transfer.handover_userid, Transfer.takeover_userid)
            .where(
                Transfer.status == constant(TransferStatus.PENDING),
                unparked(JOB, Transfer.__tablename__, Transfer.id),
            )
            .distinct()
        )
    )
    await session.commit()
    report = PollReport()
    answers: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
    for kind, handover, takeover in groups:
        try:
            answers[(kind, handover, takeover)] = await _results(wecom, kind, handover, takeover)
        except WeComError as exc:
            report.errors.append(f"{kind} {handover}->{takeover}: {exc}")
            log.warning("transfer_result %s -> %s failed: %s", handover, takeover, exc)

    for (kind, handover, takeover), results in answers.items():
        pending = dict(
            (
                await session.execute(
                    select(Transfer.id, Transfer.external_userid).where(
                        Transfer.kind == kind,
                        Transfer.handover_userid == handover,
                        Transfer.takeover_userid == takeover,
                        Transfer.status == constant(TransferStatus.PENDING),
                        unparked(JOB, Transfer.__tablename__, Transfer.id),
                    )
                )
            ).all()
        )
        # A transfer WeCom's answer cannot settle (a takeover_time no instant holds) is parked
        # with its reason and skipped by later polls; the others are settled all the same.
        done, parked = await isolating(
            session,
            sorted(pending),
            partial(_settle, session, results, now),
            job=JOB,
            table=Transfer.__tablename__,
            key=int,
            now=now,
            detail=lambda i, k=kind, h=handover, t=takeover, p=pending: f"{k} {h} -> {t} of {p[i]}",
        )
        for part in done:
            report.add(part)
        report.parked += parked
    await session.commit()
    log.info(
        "transfer poll: %d checked, %d accepted, %d refused, %d failed, %d pending, %d errors"
        ", %d parked",
        report.checked,
        len(report.accepted),
        len(report.refused),
        len(report.failed),
        report.still_pending,
        len(report.errors),
        len(report.parked),
    )
    return report


async def _settle(
    session: AsyncSession,
    results: dict[str, dict[str, Any]],
    now: datetime,
    ids: Sequence[int],
) -> PollReport:
    """Apply WeCom's transfer_result to these pending transfers, in the caller's transaction."""
    report = PollReport()
    rows = await session.scalars(
        select(Transfer)
        .where(Transfer.id.in_(list(ids)), Transfer.status == constant(TransferStatus.PENDING))
        .order_by(Transfer.id)
        .with_for_update()
        .execution_options(populate_existing=True)  # a rolled-back savepoint expired them
    )
    for row in rows:
        report.checked += 1
        result = results.get(row.external_userid)
        status = int(result.get("status", 0)) if result else None
        if status == RESULT_ACCEPTED:
            at = from_epoch(result.get("takeover_time")) or now
            await complete_transfer(session, row, at=at, now=now, source=EventSource.RECONCILE)
            report.accepted.append(row.id)
        elif status in (RESULT_REFUSED, RESULT_LIMIT):
            row.status = (
                TransferStatus.REFUSED
                if status == RESULT_REFUSED
                else TransferStatus.LIMIT_EXCEEDED
            )
            row.fail_reason = (
                "customer_refused" if status == RESULT_REFUSED else "customer_limit_exceed"
            )
            row.completed_at = now
            row.updated_at = now
            report.refused.append(row.id)
        elif status is None and row.requested_at < now - UNKNOWN_AFTER:
            _fail(row, -1, "WeCom has no record of this transfer", now)
            report.failed.append(row.id)
        else:
            report.still_pending += 1
    await session.flush()
    return report


async def list_transfers(
    session: AsyncSession,
    *,
    status: str | None = None,
    guide: str | None = None,
    external_userid: str | None = None,
    limit: int = 200,
) -> list[Transfer]:
    if status is not None and status not in TransferStatus.ALL:
        raise Invalid(f"status must be one of {', '.join(TransferStatus.ALL)}, got {status!r}")
    query = select(Transfer).order_by(Transfer.requested_at.desc(), Transfer.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Transfer.status == status)
    if guide is not None:
        query = query.where(
            (Transfer.handover_userid == guide) | (Transfer.takeover_userid == guide)
        )
    if external_userid is not None:
        query = query.where(Transfer.external_userid == external_userid)
    return list(await session.scalars(query))
