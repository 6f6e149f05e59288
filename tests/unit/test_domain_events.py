"""guidebot.events: facts reach their subscribers inside the emitter's transaction, or loudly not
at all."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from guidebot.db.engine import create_engine, create_session_factory
from guidebot.events import (
    EventsNotWired,
    RelationAdded,
    RelationEnded,
    Subscribers,
    after_commit,
    collect_after_commit,
    publish,
    wire,
)

NOW = datetime(2026, 3, 10, 4, 0, tzinfo=UTC)


def _added(guide: str = "g1") -> RelationAdded:
    return RelationAdded(
        guide_userid=guide, external_userid="c1", at=NOW, now=NOW, source="callback"
    )


@pytest.fixture
async def sessions(tmp_path):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'events.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE heard (guide TEXT)"))
    yield create_session_factory(engine)
    await engine.dispose()


async def _heard(sessions) -> list[str]:
    async with sessions() as session:
        return list(await session.scalars(text("SELECT guide FROM heard ORDER BY rowid")))


async def test_subscribers_hear_in_order_within_the_emitters_transaction(sessions):
    subscribers = Subscribers()
    calls: list[str] = []

    async def first(session, event: RelationAdded) -> None:
        assert session.in_transaction()
        calls.append("first")
        await session.execute(text("INSERT INTO heard VALUES (:g)"), {"g": event.guide_userid})

    async def second(session, event: RelationAdded) -> None:
        calls.append("second")

    subscribers.subscribe(RelationAdded, first)
    subscribers.subscribe(RelationAdded, second)
    wire(sessions, subscribers)

    async with sessions() as session, session.begin():
        await publish(session, _added("g1"))
        await publish(  # nobody subscribed to this kind: nothing happens
            session,
            RelationEnded(
                guide_userid="g1",
                external_userid="c1",
                status="lost",
                at=NOW,
                now=NOW,
                source="callback",
            ),
        )
    assert calls == ["first", "second"]
    assert await _heard(sessions) == ["g1"]

    # A rolled-back emitter takes its subscribers' writes with it.
    with pytest.raises(RuntimeError):
        async with sessions() as session, session.begin():
            await publish(session, _added("g2"))
            raise RuntimeError("the emitter failed after announcing")
    assert await _heard(sessions) == ["g1"]


async def test_a_failing_subscriber_fails_the_emitter(sessions):
    subscribers = Subscribers()

    async def broken(session, event) -> None:
        raise ValueError("subscriber bug")

    subscribers.subscribe(RelationAdded, broken)
    wire(sessions, subscribers)
    async with sessions() as session:
        with pytest.raises(ValueError, match="subscriber bug"):
            await publish(session, _added())


async def test_an_unwired_session_refuses_to_publish(sessions):
    async with sessions() as session:
        with pytest.raises(EventsNotWired):
            await publish(session, _added())
        with pytest.raises(EventsNotWired):
            after_commit(session, lambda: None)


async def test_wiring_keeps_the_factorys_other_info(sessions):
    sessions.configure(info={"other": 1})
    wire(sessions, Subscribers())
    async with sessions() as session:
        assert session.info["other"] == 1
        await publish(session, _added())  # wired, nobody listening: fine


async def test_after_commit_work_goes_to_the_transactions_owner(sessions):
    wire(sessions, Subscribers())
    pending: list = []
    async with sessions() as session:
        collect_after_commit(session, pending)

        async def work() -> None:
            return None

        after_commit(session, work)
    assert pending == [work]


def test_only_domain_events_can_be_subscribed_to():
    with pytest.raises(TypeError):
        Subscribers().subscribe(dict, lambda session, event: None)  # type: ignore[arg-type]
