"""The demo's customer groups (`guidebot demo`): each store's VIP group, owned by the store's
first guide, with a 「加入群聊」 store join code; the store's customers scan it and join, a few
leave again, and while the demo runs more come and go.

Every change goes through the real paths: the people act in the simulated WeCom client
(`post`, the simulator's control API, handed in by the demo so this domain speaks no HTTP),
which delivers WeCom's change_external_chat callbacks to guidebot, encrypted; the join code is
made through WeCom's add_join_way. The groups are named "<store>VIP群": a playbook's
`group_message` step (a weekly group message) picks them by that name pattern, and a
`moment_task` step reaches their owners; `VipGroups.chat_ids` lists them for any demo step that
wants them directly.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.clock import Clock
from guidebot.contacts.models import Department, Relation, RelationStatus
from guidebot.groups.joinways import create_join_way
from guidebot.groups.models import (
    CustomerGroup,
    GroupMember,
    GroupStatus,
    MemberStatus,
    MemberType,
)
from guidebot.wecom.client import WeComClient

log = logging.getLogger(__name__)

Post = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
Sessions = async_sessionmaker[AsyncSession]

JOIN_SHARE = 0.6  # of a store's customers, those who scan the store's code at start-up
LEAVE_SHARE = 0.15  # of those, those who leave again
BATCH = 6  # customers scanning at about the same moment: one callback, like WeCom's


@dataclass
class VipGroups:
    chat_ids: dict[int, str] = field(default_factory=dict)  # store id → its VIP group
    join_ways: dict[int, str] = field(default_factory=dict)  # store id → config_id
    joined: int = 0
    left: int = 0


async def start_vip_groups(
    sessions: Sessions,
    wecom: WeComClient,
    clock: Clock,
    post: Post,
    stores: dict[int, str],
    *,
    campaign: str,
    rng: random.Random | None = None,
) -> VipGroups:
    """`stores`: store id → its first guide, the VIP group's owner. The stores go side by side
    (each store's people act in their own group), so the demo is ready in a few seconds."""
    rng = rng or random.Random()
    made = VipGroups()
    for store_id, owner in stores.items():
        async with sessions() as session:
            store = await session.get(Department, store_id)
        name = f"{store.name if store else store_id}VIP群"
        answer = await post("groups", {"owner": owner, "name": name, "members": []})
        made.chat_ids[store_id] = answer["chat_id"]
    # Their create callbacks are handled by the inbox worker; a join code needs them known.
    await asyncio.gather(*(_known(sessions, chat_id) for chat_id in made.chat_ids.values()))
    for store_id, chat_id in made.chat_ids.items():
        async with sessions() as session:
            way = await create_join_way(
                session,
                wecom,
                clock.now(),
                store=store_id,
                channel="vip_qr",
                campaign=campaign,
                chat_ids=[chat_id],
                remark="VIP群入群码",
            )
        made.join_ways[store_id] = way.config_id
    await asyncio.gather(*(_scan(sessions, post, made, s, rng) for s in made.chat_ids))
    return made


async def _scan(
    sessions: Sessions, post: Post, made: VipGroups, store_id: int, rng: random.Random
) -> None:
    """Some of the store's customers scan its code, a few at a time; some of them leave."""
    chat_id, config_id = made.chat_ids[store_id], made.join_ways[store_id]
    customers = await _store_customers(sessions, store_id)
    rng.shuffle(customers)
    joining = customers[: int(len(customers) * JOIN_SHARE)]
    for i in range(0, len(joining), BATCH):
        batch = joining[i : i + BATCH]
        await post("groups/join", {"chat_id": chat_id, "members": batch, "config_id": config_id})
        made.joined += len(batch)
    leaving = joining[: int(len(joining) * LEAVE_SHARE)]
    if leaving:
        # Later, as people do: once guidebot has read their joins (a member who is gone
        # before groupchat/get is read shows no join code any more, WeCom gives current
        # members only).
        for _ in range(300):
            if set(leaving) <= set(await members_now(sessions, chat_id)):
                break
            await asyncio.sleep(0.05)
        await post("groups/leave", {"chat_id": chat_id, "members": leaving})
        made.left += len(leaving)


async def group_step(sessions: Sessions, post: Post, groups: VipGroups, rng: random.Random) -> None:
    """One step of the live demo: a customer of a store scans its VIP code, or one leaves."""
    if not groups.chat_ids:
        return
    store_id = rng.choice(sorted(groups.chat_ids))
    chat_id = groups.chat_ids[store_id]
    inside = await members_now(sessions, chat_id)
    if inside and rng.random() < 0.3:
        await post("groups/leave", {"chat_id": chat_id, "members": [rng.choice(inside)]})
        groups.left += 1
        return
    outside = [c for c in await _store_customers(sessions, store_id) if c not in set(inside)]
    if outside:
        body = {"chat_id": chat_id, "members": [rng.choice(outside)]}
        await post("groups/join", {**body, "config_id": groups.join_ways[store_id]})
        groups.joined += 1


async def _known(sessions: Sessions, chat_id: str, wait: float = 15.0) -> None:
    for _ in range(int(wait / 0.05)):
        async with sessions() as session:
            if await session.get(CustomerGroup, chat_id) is not None:
                return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"guidebot never heard of the demo's group {chat_id}")


async def _store_customers(sessions: Sessions, store_id: int) -> list[str]:
    async with sessions() as session:
        return sorted(
            set(
                await session.scalars(
                    select(Relation.external_userid).where(
                        Relation.store_id == store_id, Relation.status == RelationStatus.ACTIVE
                    )
                )
            )
        )


async def members_now(sessions: Sessions, chat_id: str) -> list[str]:
    """The customers in the group now, as guidebot knows them."""
    async with sessions() as session:
        return list(
            await session.scalars(
                select(GroupMember.member_id)
                .join(CustomerGroup, CustomerGroup.chat_id == GroupMember.chat_id)
                .where(
                    GroupMember.chat_id == chat_id,
                    GroupMember.status == MemberStatus.MEMBER,
                    GroupMember.member_type == MemberType.CUSTOMER,
                    CustomerGroup.status == GroupStatus.ACTIVE,
                )
                .order_by(GroupMember.member_id)
            )
        )
