"""The groups tests' harness (tests/harness.py) with the customer groups' helpers.

The corp of tests/harness.py (g1, g3 in 张江店 11; g2 in 徐汇店 12; customers wmc1..wmc3),
synced into guidebot at start-up. People act in the simulated client through /_sim/groups…;
the callbacks arrive encrypted at /wecom/callback and a test drains the inbox to handle them.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from guidebot.clock import FakeClock
from guidebot.groups.jobs import nightly_group_sync
from guidebot.groups.models import CustomerGroup, GroupMember, GroupMemberEvent
from guidebot.web.keys import CLOCK, WECOM
from tests.harness import START, Harness, deploy_dir, start_harness


class GroupsHarness(Harness):
    settle_after_drain = False

    async def sync_groups(self):
        return await nightly_group_sync(self.sessions, self.app[WECOM], self.app[CLOCK])

    async def create_group(self, owner: str, name: str, members=(), **extra: Any) -> str:
        answer = await self.act(
            "groups", {"owner": owner, "name": name, "members": list(members), **extra}
        )
        return answer["chat_id"]

    async def join(self, chat_id: str, *members: str, **extra: Any) -> dict:
        return await self.act(
            "groups/join", {"chat_id": chat_id, "members": list(members), **extra}
        )

    async def leave(self, chat_id: str, *members: str, **extra: Any) -> dict:
        return await self.act(
            "groups/leave", {"chat_id": chat_id, "members": list(members), **extra}
        )

    async def group(self, chat_id: str) -> CustomerGroup | None:
        async with self.sessions() as session:
            return await session.get(CustomerGroup, chat_id)

    async def members(self, chat_id: str) -> dict[str, str]:
        """member id → status."""
        async with self.sessions() as session:
            rows = await session.scalars(select(GroupMember).where(GroupMember.chat_id == chat_id))
            return {m.member_id: m.status for m in rows}

    async def member(self, chat_id: str, member_id: str) -> GroupMember | None:
        async with self.sessions() as session:
            return await session.scalar(
                select(GroupMember).where(
                    GroupMember.chat_id == chat_id, GroupMember.member_id == member_id
                )
            )

    async def group_log(self, chat_id: str | None = None) -> list[tuple[str, str]]:
        """(member id, kind) in time order."""
        query = select(GroupMemberEvent).order_by(GroupMemberEvent.occurred_at, GroupMemberEvent.id)
        if chat_id is not None:
            query = query.where(GroupMemberEvent.chat_id == chat_id)
        async with self.sessions() as session:
            return [(e.member_id, e.kind) for e in await session.scalars(query)]

    async def log_rows(self) -> list[GroupMemberEvent]:
        async with self.sessions() as session:
            return list(
                await session.scalars(select(GroupMemberEvent).order_by(GroupMemberEvent.id))
            )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def h(aiohttp_client, database_url, clock, tmp_path) -> GroupsHarness:
    """No playbooks; the repository's message templates in a deployment's templates/."""
    sop_dir = deploy_dir(tmp_path / "deploy")
    return await start_harness(
        aiohttp_client, database_url, clock, kind=GroupsHarness, sop_dir=sop_dir
    )
