"""guidebot.events: facts reach their subscribers inside the emitter's transaction, or loudly not
at all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from guidebot.db.engine import create_engine, create_session_factory
from guidebot.events import (
    CustomerReplied,
    DomainEvent,
    EventsNotWired,
    OrderPaid,
    OrderRefunded,
    RelationAdded,
    RelationEnded,
    Subscribers,
    after_commit,
    collect_after_commit,
    publish,
    wire,
)
from guidebot.metrics.orders import attribution_window, parse_order, post_order, refund_order
from guidebot.sop.enrollment import record_reply

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


# ---- the domains announce their facts ---------------------------------------------------------


@pytest.fixture
async def domain(database_url):
    """Sessions on a migrated database (SQLite, then PostgreSQL)."""
    engine = create_engine(database_url)
    yield create_session_factory(engine)
    await engine.dispose()


def hear(sessions, *kinds: type[DomainEvent]) -> list[DomainEvent]:
    """Wire `sessions` to a subscriber that keeps every fact of `kinds`, in order."""
    facts: list[DomainEvent] = []

    async def keep(session, event: DomainEvent) -> None:
        facts.append(event)

    subscribers = Subscribers()
    for kind in kinds:
        subscribers.subscribe(kind, keep)
    wire(sessions, subscribers)
    return facts


async def test_a_recorded_reply_is_announced_with_who_reported_it(domain):
    facts = hear(domain, CustomerReplied)
    replied_at = NOW - timedelta(hours=1)
    async with domain() as session, session.begin():
        await record_reply(
            session, external_userid="wmc1", guide_userid="g1", at=replied_at, now=NOW, source="api"
        )
    assert facts == [
        CustomerReplied(
            guide_userid="g1", external_userid="wmc1", at=replied_at, source="api", now=NOW
        )
    ]


async def test_a_refund_is_announced_once_whichever_way_it_arrives(domain):
    facts = hear(domain, OrderPaid, OrderRefunded)
    window = attribution_window()
    paid_at = NOW - timedelta(days=1)
    refunded_at = NOW - timedelta(hours=2)

    def order(order_id: str, **fields) -> dict:
        return {
            "order_id": order_id,
            "external_userid": "wmc1",
            "amount": "199.00",
            "paid_at": paid_at.isoformat(),
            **fields,
        }

    refunded = {"status": "refunded", "refunded_at": refunded_at.isoformat()}
    async with domain() as session, session.begin():
        # By the refund call; refunding it again changes nothing and says nothing.
        await post_order(session, parse_order(order("o1")), now=NOW, window=window)
        await refund_order(session, "o1", at=None, now=NOW)
        await refund_order(session, "o1", at=None, now=NOW)
        # By a repeat post saying refunded; the same post again is a repeat.
        await post_order(session, parse_order(order("o2")), now=NOW, window=window)
        await post_order(session, parse_order(order("o2", **refunded)), now=NOW, window=window)
        await post_order(session, parse_order(order("o2", **refunded)), now=NOW, window=window)
        # By a first post of an order already refunded: no OrderPaid before it.
        await post_order(session, parse_order(order("o3", **refunded)), now=NOW, window=window)

    said = [(type(f).__name__, f.order_id) for f in facts]
    assert said == [
        ("OrderPaid", "o1"),
        ("OrderRefunded", "o1"),
        ("OrderPaid", "o2"),
        ("OrderRefunded", "o2"),
        ("OrderRefunded", "o3"),
    ]
    refunds = [f for f in facts if isinstance(f, OrderRefunded)]
    assert [f.refunded_at for f in refunds] == [NOW, refunded_at, refunded_at]
    assert all(f.paid_at == paid_at and f.external_userid == "wmc1" for f in refunds)
    assert all(f.guide_userid is None for f in refunds)  # nobody's: wmc1 has no guide here
