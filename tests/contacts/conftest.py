"""The contacts tests' harness (tests/harness.py) with the address book's helpers.

The corp of tests/harness.py, synced into guidebot at start-up; the shipped playbooks. A test
drains the inbox when it wants the events handled, and looks at the moment right after the
commit (the welcome fast path is not waited for).
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from guidebot.clock import FakeClock
from guidebot.contacts.jobs import nightly_directory_sync, nightly_reconcile, poll_transfers
from guidebot.contacts.models import Customer, Relation, RelationEvent, StoreMembership
from guidebot.web.keys import CLOCK, WECOM
from tests.harness import (
    ADMIN,
    START,
    Harness,
    change_contact_xml,
    contact_xml,
    seed_corp,
    start_harness,
)

# Defined here before tests/harness.py existed: tests written then import them from here still.
__all__ = ["ADMIN", "START", "ContactsHarness", "change_contact_xml", "contact_xml", "seed_corp"]


class ContactsHarness(Harness):
    settle_after_drain = False

    async def sync(self):
        return await nightly_directory_sync(self.sessions, self.app[WECOM], self.app[CLOCK])

    async def reconcile(self):
        return await nightly_reconcile(self.sessions, self.app[WECOM], self.app[CLOCK])

    async def poll(self):
        return await poll_transfers(self.sessions, self.app[WECOM], self.app[CLOCK])

    async def relation(self, userid: str, ext: str) -> Relation | None:
        async with self.sessions() as session:
            return await session.scalar(
                select(Relation).where(
                    Relation.guide_userid == userid, Relation.external_userid == ext
                )
            )

    async def relations(self) -> list[Relation]:
        async with self.sessions() as session:
            return list(await session.scalars(select(Relation).order_by(Relation.id)))

    async def customer(self, ext: str) -> Customer | None:
        async with self.sessions() as session:
            return await session.get(Customer, ext)

    async def log(self, ext: str | None = None) -> list[RelationEvent]:
        query = select(RelationEvent).order_by(RelationEvent.occurred_at, RelationEvent.id)
        if ext is not None:
            query = query.where(RelationEvent.external_userid == ext)
        async with self.sessions() as session:
            return list(await session.scalars(query))

    async def memberships(self, userid: str) -> list[StoreMembership]:
        async with self.sessions() as session:
            return list(
                await session.scalars(
                    select(StoreMembership)
                    .where(StoreMembership.guide_userid == userid)
                    .order_by(StoreMembership.valid_from, StoreMembership.id)
                )
            )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def h(aiohttp_client, database_url, clock) -> ContactsHarness:
    return await start_harness(aiohttp_client, database_url, clock, kind=ContactsHarness)
