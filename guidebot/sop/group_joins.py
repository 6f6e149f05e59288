"""`group.joined` playbooks: which of them a customer's join of a customer group enrolls, and
with which guide.

A join enrolls the customer with the group's owner, through their relation, which must be
active (a playbook's steps are a guide's work with their own customer); a customer who is not
the owner's is not enrolled. Only a join WeCom announced (the change_external_chat callback)
and that is still the member's newest fact enrolls: a sync that finds members nobody announced,
or a join older than a departure we already know, does not (as `customer.added` ignores
reconciliation). A trigger's filter picks the group by name (glob patterns on its name now)
and the join way (channel or config_id); `first_join` enrolls only when no earlier join of the
customer into a group the filter picks is logged.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.models import Relation, RelationStatus
from guidebot.events import GroupMemberJoined
from guidebot.groups.models import (
    CustomerGroup,
    GroupMemberEvent,
    GroupSource,
    MemberEventKind,
    MemberType,
)
from guidebot.sop.playbook import Playbook

EVENT = "group.joined"


def announced(event: GroupMemberJoined) -> bool:
    """A customer's join WeCom told us of, still standing."""
    return (
        event.member_type == MemberType.CUSTOMER
        and event.current
        and event.source == GroupSource.CALLBACK
        and event.owner_userid is not None
    )


async def owner_relation(session: AsyncSession, event: GroupMemberJoined) -> Relation | None:
    """The group owner's active relation with the customer who joined, if any."""
    return await session.scalar(
        select(Relation)
        .where(
            Relation.guide_userid == event.owner_userid,
            Relation.external_userid == event.member_id,
            Relation.status == RelationStatus.ACTIVE,
        )
        .execution_options(populate_existing=True)
    )


async def picking(
    session: AsyncSession, playbooks: list[Playbook], event: GroupMemberJoined
) -> list[Playbook]:
    """The playbooks whose filter picks this join (and, for first_join, no earlier one)."""
    group = await session.get(CustomerGroup, event.chat_id)
    name = group.name if group is not None else None
    chosen = [
        p
        for p in playbooks
        if p.trigger.group is None or p.trigger.group.picks(name, event.channel, event.config_id)
    ]
    if not any(p.trigger.group is not None and p.trigger.group.first_join for p in chosen):
        return chosen
    earlier = await session.execute(
        select(CustomerGroup.name, GroupMemberEvent.channel, GroupMemberEvent.config_id)
        .join(CustomerGroup, CustomerGroup.chat_id == GroupMemberEvent.chat_id)
        .where(
            GroupMemberEvent.member_id == event.member_id,
            GroupMemberEvent.kind == MemberEventKind.JOINED,
            GroupMemberEvent.occurred_at <= event.at,
            ~(
                (GroupMemberEvent.chat_id == event.chat_id)
                & (GroupMemberEvent.occurred_at == event.at)
            ),
        )
    )
    before = earlier.all()
    return [
        p
        for p in chosen
        if p.trigger.group is None
        or not p.trigger.group.first_join
        or not any(p.trigger.group.picks(*row) for row in before)
    ]
