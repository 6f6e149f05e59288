"""What the faces show of customer groups: a customer's groups (customer detail, the bot's
客户, the sidebar), the groups of a store or owner, one group with its members and history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.directory import require_store
from guidebot.contacts.errors import NotFound
from guidebot.contacts.models import Customer, Guide, Relation, RelationStatus
from guidebot.groups.labels import groups_labelled, labels_of
from guidebot.groups.models import (
    CustomerGroup,
    GroupMember,
    GroupMemberEvent,
    GroupStatus,
    MemberEventKind,
    MemberStatus,
    MemberType,
)

HISTORY = 200  # the newest membership facts a group's view shows


@dataclass(frozen=True, slots=True)
class CustomerGroupView:
    """A group the customer is in now, and how they came."""

    group: CustomerGroup
    member: GroupMember


async def customer_groups(session: AsyncSession, external_userid: str) -> list[CustomerGroupView]:
    """The live groups the customer is in now, the newest join first."""
    rows = await session.execute(
        select(CustomerGroup, GroupMember)
        .join(GroupMember, GroupMember.chat_id == CustomerGroup.chat_id)
        .where(
            GroupMember.member_id == external_userid,
            GroupMember.status == MemberStatus.MEMBER,
            CustomerGroup.status == GroupStatus.ACTIVE,
        )
        .order_by(GroupMember.joined_at.desc(), CustomerGroup.chat_id)
    )
    return [CustomerGroupView(group, member) for group, member in rows]


@dataclass(frozen=True, slots=True)
class GroupSummary:
    group: CustomerGroup
    customers: int  # customers in it now
    members: int  # everyone in it now
    labels: tuple[str, ...] = ()  # HQ's labels (guidebot.groups.labels)


async def list_groups(
    session: AsyncSession,
    *,
    store: str | None = None,
    owner: str | None = None,
    status: str | None = GroupStatus.ACTIVE,
    label: str | None = None,
) -> list[GroupSummary]:
    query = select(CustomerGroup).order_by(CustomerGroup.created_at, CustomerGroup.chat_id)
    if label is not None:
        query = query.where(CustomerGroup.chat_id.in_(await groups_labelled(session, [label])))
    if store is not None:
        found = await require_store(session, store)
        query = query.where(CustomerGroup.store_id == found.id)
    if owner is not None:
        query = query.where(CustomerGroup.owner_userid == owner)
    if status is not None:
        query = query.where(CustomerGroup.status == status)
    groups = list(await session.scalars(query))
    counts = await _counts(session, [g.chat_id for g in groups])
    labels = await labels_of(session, [g.chat_id for g in groups])
    return [
        GroupSummary(g, *counts.get(g.chat_id, (0, 0)), labels.get(g.chat_id, ())) for g in groups
    ]


async def _counts(session: AsyncSession, chat_ids: list[str]) -> dict[str, tuple[int, int]]:
    if not chat_ids:
        return {}
    is_customer = func.sum(case((GroupMember.member_type == MemberType.CUSTOMER, 1), else_=0))
    rows = await session.execute(
        select(GroupMember.chat_id, is_customer, func.count())
        .where(GroupMember.chat_id.in_(chat_ids), GroupMember.status == MemberStatus.MEMBER)
        .group_by(GroupMember.chat_id)
    )
    return {chat_id: (int(customers or 0), int(total)) for chat_id, customers, total in rows}


@dataclass(frozen=True, slots=True)
class GroupDetail:
    summary: GroupSummary
    members: list[GroupMember]  # in the group now
    history: list[GroupMemberEvent]  # the newest facts first


async def group_detail(session: AsyncSession, chat_id: str) -> GroupDetail:
    group = await session.get(CustomerGroup, chat_id)
    if group is None:
        raise NotFound(f"没有这个客户群 / no customer group {chat_id!r}")
    members = list(
        await session.scalars(
            select(GroupMember)
            .where(GroupMember.chat_id == chat_id, GroupMember.status == MemberStatus.MEMBER)
            .order_by(GroupMember.joined_at, GroupMember.member_id)
        )
    )
    history = list(
        await session.scalars(
            select(GroupMemberEvent)
            .where(GroupMemberEvent.chat_id == chat_id)
            .order_by(GroupMemberEvent.occurred_at.desc(), GroupMemberEvent.id.desc())
            .limit(HISTORY)
        )
    )
    customers = sum(1 for m in members if m.member_type == MemberType.CUSTOMER)
    labels = (await labels_of(session, [chat_id])).get(chat_id, ())
    return GroupDetail(GroupSummary(group, customers, len(members), labels), members, history)


@dataclass(frozen=True, slots=True)
class GroupActivity:
    joined: int  # customers who joined in the window
    left: int  # customers who left or were removed in the window
    last: datetime | None  # the newest membership fact, whenever it was

    @property
    def net(self) -> int:
        return self.joined - self.left


async def group_activity(
    session: AsyncSession, chat_ids: list[str], since: datetime, until: datetime
) -> dict[str, GroupActivity]:
    """Each group's customers joined and gone in [since, until), as group_new_members and
    group_members_left count them (the log, customers only), and its last membership fact."""
    if not chat_ids:
        return {}
    inside = (GroupMemberEvent.occurred_at >= since) & (GroupMemberEvent.occurred_at < until)
    customer = GroupMemberEvent.member_type == MemberType.CUSTOMER
    joined = func.sum(
        case((inside & customer & (GroupMemberEvent.kind == MemberEventKind.JOINED), 1), else_=0)
    )
    gone = func.sum(
        case((inside & customer & (GroupMemberEvent.kind != MemberEventKind.JOINED), 1), else_=0)
    )
    rows = await session.execute(
        select(GroupMemberEvent.chat_id, joined, gone, func.max(GroupMemberEvent.occurred_at))
        .where(GroupMemberEvent.chat_id.in_(chat_ids))
        .group_by(GroupMemberEvent.chat_id)
    )
    return {
        chat_id: GroupActivity(int(j or 0), int(g or 0), _utc(last)) for chat_id, j, g, last in rows
    }


def _utc(value: datetime | None) -> datetime | None:
    """max() of a UTC column comes back naive on SQLite: the same instant, marked UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@dataclass(frozen=True, slots=True)
class GuideGroupView:
    """A group as its guide sees it in the chat sidebar: the group, and which of its members
    are the guide's own active customers (with the guide's remark)."""

    summary: GroupSummary
    owner_name: str | None
    customers: list[tuple[GroupMember, str | None, str | None]]  # member, name, remark


async def can_see_group(session: AsyncSession, guide: str, chat_id: str) -> bool:
    """A guide sees a live group they own or are in now, and nothing else."""
    group = await session.get(CustomerGroup, chat_id)
    if group is None or group.status != GroupStatus.ACTIVE:
        return False
    if group.owner_userid == guide:
        return True
    inside = await session.scalar(
        select(GroupMember.id).where(
            GroupMember.chat_id == chat_id,
            GroupMember.member_id == guide,
            GroupMember.status == MemberStatus.MEMBER,
        )
    )
    return inside is not None


async def guide_group(session: AsyncSession, guide: str, chat_id: str) -> GuideGroupView | None:
    """The group for the guide's sidebar; None when the guide may not see it."""
    if not await can_see_group(session, guide, chat_id):
        return None
    detail = await group_detail(session, chat_id)
    owner = detail.summary.group.owner_userid
    owner_name = await session.scalar(select(Guide.name).where(Guide.userid == owner))
    rows = await session.execute(
        select(GroupMember, Customer.name, Relation.remark)
        .join(
            Relation,
            (Relation.external_userid == GroupMember.member_id)
            & (Relation.guide_userid == guide)
            & (Relation.status == RelationStatus.ACTIVE),
        )
        .outerjoin(Customer, Customer.external_userid == GroupMember.member_id)
        .where(
            GroupMember.chat_id == chat_id,
            GroupMember.status == MemberStatus.MEMBER,
            GroupMember.member_type == MemberType.CUSTOMER,
        )
        .order_by(GroupMember.joined_at, GroupMember.member_id)
    )
    customers = [(member, name, remark) for member, name, remark in rows]
    return GuideGroupView(detail.summary, owner_name, customers)


async def guide_groups(session: AsyncSession, guide: str) -> list[GroupSummary]:
    """The live groups a guide owns or is in now (the sidebar's picker outside a group)."""
    inside = select(GroupMember.chat_id).where(
        GroupMember.member_id == guide, GroupMember.status == MemberStatus.MEMBER
    )
    groups = list(
        await session.scalars(
            select(CustomerGroup)
            .where(
                CustomerGroup.status == GroupStatus.ACTIVE,
                (CustomerGroup.owner_userid == guide) | CustomerGroup.chat_id.in_(inside),
            )
            .order_by(CustomerGroup.name, CustomerGroup.chat_id)
            .limit(200)
        )
    )
    counts = await _counts(session, [g.chat_id for g in groups])
    return [GroupSummary(g, *counts.get(g.chat_id, (0, 0))) for g in groups]


# ---- a guide's group figures (the metrics rollups and the bot's 业绩 read the same rows) ------


async def owner_member_facts(
    session: AsyncSession, owner: str, since: datetime, until: datetime
) -> list[tuple[datetime, str]]:
    """(when, kind) of each customer joining or leaving a group `owner` owned at the time, in
    [since, until): what group_new_members and group_members_left count (guidebot.metrics.kpis).
    Employees are not counted."""
    rows = await session.execute(
        select(GroupMemberEvent.occurred_at, GroupMemberEvent.kind).where(
            GroupMemberEvent.owner_userid == owner,
            GroupMemberEvent.member_type == MemberType.CUSTOMER,
            GroupMemberEvent.occurred_at >= since,
            GroupMemberEvent.occurred_at < until,
        )
    )
    return [(at, kind) for at, kind in rows]


async def guide_group_counts(
    session: AsyncSession, guides: list[str]
) -> dict[str, tuple[int, int]]:
    """guide → (live groups owned, active customers in at least one live group, whoever owns
    it) now: the groups_owned and group_join_rate snapshots (guidebot.metrics.kpis)."""
    owned = dict(
        (guide, int(n))
        for guide, n in await session.execute(
            select(CustomerGroup.owner_userid, func.count())
            .where(
                CustomerGroup.owner_userid.in_(guides),
                CustomerGroup.status == GroupStatus.ACTIVE,
            )
            .group_by(CustomerGroup.owner_userid)
        )
    )
    in_a_group = (
        select(GroupMember.member_id)
        .join(CustomerGroup, CustomerGroup.chat_id == GroupMember.chat_id)
        .where(
            GroupMember.status == MemberStatus.MEMBER,
            CustomerGroup.status == GroupStatus.ACTIVE,
        )
    )
    joined = dict(
        (guide, int(n))
        for guide, n in await session.execute(
            select(Relation.guide_userid, func.count())
            .where(
                Relation.guide_userid.in_(guides),
                Relation.status == RelationStatus.ACTIVE,
                Relation.external_userid.in_(in_a_group),
            )
            .group_by(Relation.guide_userid)
        )
    )
    return {g: (owned.get(g, 0), joined.get(g, 0)) for g in guides}
