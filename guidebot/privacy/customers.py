"""Every table that holds something about a customer: how to find their rows, and how to erase
the person from them while the anonymous counts stay.

`HOLDINGS` names each table once. tests/privacy checks that every table of the models with an
`external_userid` column (or any column naming a customer) is here, so a new table is either
covered or fails the build.

Erasure keeps WeCom's external_userid where rows count something (relations, their history,
forwards, opens, tasks, orders): it is WeCom's opaque, per-corp key of a relation that may
still exist in WeCom, and the figures (retention cohorts, first forwards, unique visitors) are
keyed on it. What a person wrote or is (name, avatar, unionid, remark, description, mobiles,
tags, rendered messages, browser visitor ids, callbacks' plaintext) is cleared or replaced by
an irreversible, salted hash.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.audit.recorder import row_values
from guidebot.bot.models import BotReply
from guidebot.contacts.models import (
    Customer,
    CustomerReadHours,
    CustomerStage,
    CustomerStageChange,
    CustomerStageOrder,
    Relation,
    RelationEvent,
    Transfer,
)
from guidebot.content.models import (
    ContentForward,
    ContentOpen,
    ContentOpenVisitor,
    ContentVisitorCustomer,
    MassSendResult,
)
from guidebot.db.base import constant
from guidebot.groups.models import GroupMember, GroupMemberEvent
from guidebot.intake.models import InboxEvent, InboxStatus
from guidebot.metrics.models import CohortMember, LostAlert, MetricsDirty, Order
from guidebot.sop.models import (
    CompletedBy,
    EnrollmentStatus,
    MissedStatus,
    SopEnrollment,
    SopMissed,
    SopTask,
    TaskStatus,
)

ERASED = "erased"  # the reason written on what an erasure stopped
# Tasks an erasure closes: those the engine has not started; a claimed or sending one is
# checked again at send time (its enrollment is stopped), and one the guide already holds in
# WeCom stays theirs (it counted as due; closing it would move the figures).
CLOSED_TASKS = (TaskStatus.PENDING, TaskStatus.SNOOZED)


@dataclass(frozen=True, slots=True)
class Subject:
    """The customer being exported or erased, and what else names them (for free text)."""

    external_userid: str
    secret_key: str
    now: datetime
    words: tuple[str, ...] = ()  # their name, remarks and mobiles as stored before erasure

    def hashed(self, value: str = "") -> str:
        """A salted, irreversible stand-in: the same for the same input, unreadable."""
        message = f"{self.external_userid}\x00{value}".encode()
        digest = hmac.new(self.secret_key.encode(), b"erasure\x00" + message, hashlib.sha256)
        return digest.hexdigest()


Eraser = Callable[[AsyncSession, Subject], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class Holding:
    """One table's rows about a customer: `where` finds them; `erase` removes the person."""

    model: Any
    where: Callable[[Subject], ColumnElement[bool]]
    erase: Eraser | None  # None: the rows hold only ids and counts; nothing personal to clear
    note: str

    @property
    def table(self) -> str:
        return self.model.__tablename__


def _set(model: Any, where: Callable[[Subject], ColumnElement[bool]], **values: Any) -> Eraser:
    async def erase(session: AsyncSession, subject: Subject) -> int:
        result = await session.execute(
            update(model)
            .where(where(subject))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return max(result.rowcount, 0)

    return erase


def _by_customer(model: Any) -> Callable[[Subject], ColumnElement[bool]]:
    return lambda s: model.external_userid == s.external_userid


async def _erase_customer(session: AsyncSession, subject: Subject) -> int:
    return await _set(
        Customer,
        _by_customer(Customer),
        name=None,
        avatar=None,
        unionid=None,
        corp_name=None,
        gender=None,
        # Read (and erased): the refetch-profiles job, which asks WeCom for profiles never
        # read, leaves them be; a new callback about them reads WeCom anew.
        profile_fetched_at=subject.now,
        updated_at=subject.now,
    )(session, subject)


async def _erase_relations(session: AsyncSession, subject: Subject) -> int:
    return await _set(
        Relation,
        _by_customer(Relation),
        remark=None,
        description=None,
        remark_mobiles=[],
        tags=[],
        updated_at=subject.now,
    )(session, subject)


async def _erase_visitors(model: Any, session: AsyncSession, subject: Subject) -> int:
    """Browser visitor ids ("v:...") of their opens become a salted hash of the old key: the
    same key maps to the same stand-in, so unique-visitor counts stay."""
    rows = await session.execute(
        select(model.id, model.visitor_key).where(
            model.external_userid == subject.external_userid,
            model.visitor_key.startswith("v:"),
        )
    )
    touched = 0
    for row_id, key in rows.all():
        extra = {"user_agent_hash": None} if model is ContentOpen else {"client_tag": None}
        await session.execute(
            update(model)
            .where(model.id == row_id)
            .values(visitor_key="x:" + subject.hashed(key)[:64], **extra)
            .execution_options(synchronize_session=False)
        )
        touched += 1
    if model is ContentOpen:
        touched += await _set(
            ContentOpen,
            lambda s: (
                (ContentOpen.external_userid == s.external_userid)
                & ContentOpen.user_agent_hash.is_not(None)
            ),
            user_agent_hash=None,
        )(session, subject)
    return touched


async def _erase_opens(session: AsyncSession, subject: Subject) -> int:
    return await _erase_visitors(ContentOpen, session, subject)


async def _erase_open_visitors(session: AsyncSession, subject: Subject) -> int:
    return await _erase_visitors(ContentOpenVisitor, session, subject)


async def _untie_browsers(session: AsyncSession, subject: Subject) -> int:
    """The browsers tied to them are tied no more: their later opens of group and Moments
    links can no longer count for the customer (guidebot.metrics.community)."""
    result = await session.execute(
        delete(ContentVisitorCustomer).where(
            ContentVisitorCustomer.external_userid == subject.external_userid
        )
    )
    return max(result.rowcount, 0)


async def _erase_enrollments(session: AsyncSession, subject: Subject) -> int:
    return await _set(
        SopEnrollment,
        lambda s: (
            (SopEnrollment.external_userid == s.external_userid)
            & (SopEnrollment.status == constant(EnrollmentStatus.ACTIVE))
        ),
        status=EnrollmentStatus.STOPPED,
        stop_reason=ERASED,
        ended_at=subject.now,
        updated_at=subject.now,
    )(session, subject)


async def _erase_tasks(session: AsyncSession, subject: Subject) -> int:
    closed = await _set(
        SopTask,
        lambda s: (SopTask.external_userid == s.external_userid) & SopTask.status.in_(CLOSED_TASKS),
        status=TaskStatus.SKIPPED,
        reason=ERASED,
        completed_at=subject.now,
        completed_by=CompletedBy.ENGINE,
        lease_owner=None,
        lease_until=None,
        updated_at=subject.now,
    )(session, subject)
    cleared = await _set(
        SopTask,
        lambda s: (
            (SopTask.external_userid == s.external_userid)
            & or_(SopTask.message.is_not(None), SopTask.welcome_code.is_not(None))
        ),
        message=None,
        welcome_code=None,
    )(session, subject)
    return closed + cleared


async def _erase_missed(session: AsyncSession, subject: Subject) -> int:
    return await _set(
        SopMissed,
        lambda s: (
            (SopMissed.external_userid == s.external_userid)
            & (SopMissed.status == MissedStatus.WAITING)
        ),
        status=MissedStatus.SKIPPED,
        reason=ERASED,
        resolved_at=subject.now,
    )(session, subject)


def _inbox_where(subject: Subject) -> ColumnElement[bool]:
    return InboxEvent.customer_key == subject.external_userid


async def _erase_inbox(session: AsyncSession, subject: Subject) -> int:
    """Their callbacks' plaintext goes. One still waiting (or failed) is settled unprocessed:
    what it said is gone; the nightly reconciliation reads WeCom anew. One a worker holds
    right now is left to it (it reads WeCom, not the erased rows)."""
    settled = await _set(
        InboxEvent,
        lambda s: (
            _inbox_where(s) & InboxEvent.status.in_((InboxStatus.PENDING, InboxStatus.FAILED))
        ),
        status=InboxStatus.DONE,
        processed_at=subject.now,
        payload="",
        last_error=ERASED,
    )(session, subject)
    cleared = await _set(
        InboxEvent,
        lambda s: (
            _inbox_where(s) & (InboxEvent.status == InboxStatus.DONE) & (InboxEvent.payload != "")
        ),
        payload="",
    )(session, subject)
    return settled + cleared


def _replies_where(subject: Subject) -> ColumnElement[bool]:
    """A guide's message to the bot that names the customer (their remark, name or mobile)."""
    words = [w for w in subject.words if len(w) >= 2]
    if not words:
        return BotReply.msg_id.is_(None)  # nothing to look for: no rows
    return or_(*(BotReply.request.contains(w, autoescape=True) for w in words))


def _group_member(subject: Subject) -> ColumnElement[bool]:
    return GroupMember.member_id == subject.external_userid


HOLDINGS: tuple[Holding, ...] = (
    Holding(Customer, _by_customer(Customer), _erase_customer, "profile: cleared"),
    Holding(Relation, _by_customer(Relation), _erase_relations, "remark, mobiles, tags: cleared"),
    Holding(RelationEvent, _by_customer(RelationEvent), None, "history: ids and times"),
    Holding(Transfer, _by_customer(Transfer), None, "transfers: ids and outcomes"),
    Holding(ContentForward, _by_customer(ContentForward), None, "forwards: ids and times"),
    Holding(ContentOpen, _by_customer(ContentOpen), _erase_opens, "visitor ids: hashed"),
    Holding(
        ContentOpenVisitor,
        _by_customer(ContentOpenVisitor),
        _erase_open_visitors,
        "visitor ids: hashed",
    ),
    Holding(
        ContentVisitorCustomer,
        _by_customer(ContentVisitorCustomer),
        _untie_browsers,
        "browsers tied to them: deleted",
    ),
    Holding(MassSendResult, _by_customer(MassSendResult), None, "mass-send results: ids"),
    Holding(SopEnrollment, _by_customer(SopEnrollment), _erase_enrollments, "stopped"),
    Holding(SopTask, _by_customer(SopTask), _erase_tasks, "open ones closed, messages cleared"),
    Holding(SopMissed, _by_customer(SopMissed), _erase_missed, "waiting ones dropped"),
    Holding(MetricsDirty, _by_customer(MetricsDirty), None, "rollup work: ids"),
    Holding(CohortMember, _by_customer(CohortMember), None, "cohort place: ids and counts"),
    Holding(CustomerStage, _by_customer(CustomerStage), None, "lifecycle stage: ids and counts"),
    Holding(
        CustomerReadHours,
        _by_customer(CustomerReadHours),
        _set(
            CustomerReadHours,
            _by_customer(CustomerReadHours),
            counts=[0] * 24,
            observations=0,
            best_hour=None,
        ),
        "reading hours: cleared",
    ),
    Holding(CustomerStageChange, _by_customer(CustomerStageChange), None, "stage log: ids"),
    Holding(CustomerStageOrder, _by_customer(CustomerStageOrder), None, "stage orders: ids"),
    Holding(
        Order,
        lambda s: or_(
            Order.external_userid == s.external_userid,
            Order.posted_external_userid == s.external_userid,
        ),
        _set(
            Order,
            lambda s: or_(
                Order.external_userid == s.external_userid,
                Order.posted_external_userid == s.external_userid,
            ),
            posted_mobile=None,
        ),
        "posted mobile: cleared; amounts stay",
    ),
    Holding(
        LostAlert,
        _by_customer(LostAlert),
        _set(LostAlert, _by_customer(LostAlert), customer_name=None, last_sent=None),
        "name and last message: cleared",
    ),
    Holding(
        GroupMember,
        _group_member,
        _set(GroupMember, _group_member, name=None, group_nickname=None, unionid=None),
        "customer groups: names and unionid cleared; memberships stay",
    ),
    Holding(
        GroupMemberEvent,
        lambda s: GroupMemberEvent.member_id == s.external_userid,
        None,
        "group joins and departures: ids and times",
    ),
    Holding(InboxEvent, _inbox_where, _erase_inbox, "callbacks' plaintext: cleared"),
    Holding(
        BotReply,
        _replies_where,
        _set(BotReply, _replies_where, request="", reply=None),
        "guides' messages naming them: cleared",
    ),
)

# Columns that name a customer, besides `external_userid`, per table (the coverage test).
CUSTOMER_COLUMNS = {
    "external_userid",
    "posted_external_userid",
    "customer_key",
    "member_id",  # customer groups' members: a customer's external_userid, or a guide's userid
}


async def words_of(session: AsyncSession, external_userid: str) -> tuple[str, ...]:
    """What names the customer in free text: their WeCom name, remarks and remark mobiles."""
    words: set[str] = set()
    name = await session.scalar(
        select(Customer.name).where(Customer.external_userid == external_userid)
    )
    if name:
        words.add(name)
    for remark, mobiles in await session.execute(
        select(Relation.remark, Relation.remark_mobiles).where(
            Relation.external_userid == external_userid
        )
    ):
        if remark:
            words.add(remark)
        words.update(m for m in mobiles or () if m)
    return tuple(sorted(words))


async def rows_of(session: AsyncSession, holding: Holding, subject: Subject) -> list[dict]:
    found = await session.scalars(select(holding.model).where(holding.where(subject)))
    return [row_values(row) or {} for row in found]
