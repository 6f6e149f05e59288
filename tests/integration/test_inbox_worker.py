"""The inbox worker: ordering per customer, retries, parking, replay, crash recovery."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from guidebot.clock import FakeClock
from guidebot.db.engine import create_engine, create_session_factory
from guidebot.intake.backlog import replay
from guidebot.intake.inbox import InboxEntry, InboxWriter
from guidebot.intake.models import InboxEvent, InboxStatus
from guidebot.intake.router import Dispatcher, Router
from guidebot.intake.worker import InboxWorker, WorkerPolicy
from guidebot.wecom.events import DelFollowUser, ExternalContactEvent, parse_event
from tests.support import event_xml

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


class Recorder:
    """Test handlers: record what ran, fail on demand."""

    def __init__(self) -> None:
        self.handled: list[tuple[str, str, int]] = []
        self.failures: dict[str, int] = {}  # external_userid + kind -> failures left

    def router(self) -> Router:
        router = Router("test")

        @router.on(ExternalContactEvent)
        async def record(event: ExternalContactEvent, inbox_id: int, session) -> None:
            key = f"{event.external_userid}:{event.kind}"
            if self.failures.get(key, 0) > 0:
                self.failures[key] -= 1
                raise RuntimeError(f"boom for {key}")
            assert session.in_transaction()
            self.handled.append((event.external_userid, event.kind, inbox_id))

        return router


@pytest.fixture
async def db(database_url):
    engine = create_engine(database_url)
    yield engine, create_session_factory(engine)
    await engine.dispose()


def make_worker(db, recorder: Recorder, clock: FakeClock, **policy) -> InboxWorker:
    dispatcher = Dispatcher(injectables={"session", "inbox_id", "attempts"})
    dispatcher.include_router(recorder.router())
    return InboxWorker(db[1], dispatcher, clock, policy=WorkerPolicy(first_backoff=10, **policy))


async def store(db, clock, *events: tuple[str, str, str, int]) -> None:
    writer = InboxWriter(db[0], clock)
    writer.start()
    try:
        for change, guide, customer, at in events:
            xml = event_xml(change, guide, customer, at)
            await writer.store(InboxEntry.of(parse_event(xml), xml))
    finally:
        await writer.stop()


async def statuses(db) -> dict[int, str]:
    async with db[1]() as session:
        rows = await session.execute(select(InboxEvent.id, InboxEvent.status))
        return dict(rows.all())


async def test_one_customers_events_wait_for_the_earlier_ones(db):
    clock, recorder = FakeClock(START), Recorder()
    await store(
        db,
        clock,
        ("add_external_contact", "g1", "wmc1", 100),
        ("del_follow_user", "g1", "wmc1", 200),
        ("add_external_contact", "g1", "wmc2", 100),
    )
    recorder.failures["wmc1:add_external_contact"] = 1
    worker = make_worker(db, recorder, clock)
    await worker.drain()
    # wmc1's add failed once: its delete must not overtake it; wmc2 goes on regardless.
    assert recorder.handled == [("wmc2", "add_external_contact", 3)]
    clock.advance(timedelta(seconds=20))
    await worker.drain()
    assert [(c, k) for c, k, _ in recorder.handled] == [
        ("wmc2", "add_external_contact"),
        ("wmc1", "add_external_contact"),
        ("wmc1", "del_follow_user"),
    ]
    assert set((await statuses(db)).values()) == {InboxStatus.DONE}


async def test_failures_back_off_on_the_clock_and_record_the_error(db):
    clock, recorder = FakeClock(START), Recorder()
    await store(db, clock, ("add_external_contact", "g1", "wmc1", 100))
    recorder.failures["wmc1:add_external_contact"] = 2
    worker = make_worker(db, recorder, clock)
    await worker.drain()
    async with db[1]() as session:
        row = await session.scalar(select(InboxEvent))
    assert row.status == InboxStatus.PENDING and row.attempts == 1
    assert "boom for wmc1:add_external_contact" in row.last_error
    assert row.next_attempt_at >= START + timedelta(seconds=8)
    assert await worker.drain() == 0  # not due yet
    clock.advance(timedelta(seconds=13))
    await worker.drain()
    assert recorder.handled == []  # second failure, backing off longer (20 s)
    clock.advance(timedelta(seconds=25))
    await worker.drain()
    assert recorder.handled == [("wmc1", "add_external_contact", 1)]


async def test_an_event_that_keeps_failing_is_parked_and_does_not_block(db):
    clock, recorder = FakeClock(START), Recorder()
    await store(
        db,
        clock,
        ("add_external_contact", "g1", "wmc1", 100),
        ("del_follow_user", "g1", "wmc1", 200),
    )
    recorder.failures["wmc1:add_external_contact"] = 99
    worker = make_worker(db, recorder, clock, max_attempts=3)
    for _ in range(4):
        await worker.drain()
        clock.advance(timedelta(minutes=10))
    assert await statuses(db) == {1: InboxStatus.FAILED, 2: InboxStatus.DONE}
    assert recorder.handled == [("wmc1", "del_follow_user", 2)]

    recorder.failures.clear()
    assert await replay(db[1], clock, failed=True) == 1
    await worker.drain()
    assert await statuses(db) == {1: InboxStatus.DONE, 2: InboxStatus.DONE}


async def test_work_claimed_by_a_process_that_died_is_processed_after_restart(db):
    clock, recorder = FakeClock(START), Recorder()
    await store(db, clock, ("add_external_contact", "g1", "wmc1", 100))
    dead = make_worker(db, recorder, clock)
    assert len(await dead._claim()) == 1  # claimed, then the process is killed
    assert await statuses(db) == {1: InboxStatus.PROCESSING}

    restarted = make_worker(db, recorder, clock)
    assert await restarted.drain() == 0  # another instance's lease is respected...
    clock.advance(WorkerPolicy().lease + timedelta(seconds=1))
    assert await restarted.drain() == 1  # ...until it expires
    assert recorder.handled == [("wmc1", "add_external_contact", 1)]

    await store(db, clock, ("del_follow_user", "g1", "wmc1", 200))
    assert len(await dead._claim()) == 1
    await restarted.recover_after_crash()  # SQLite: the one process restarting owns it all
    assert await restarted.drain() == 1


async def test_a_done_event_is_not_handled_again(db):
    clock, recorder = FakeClock(START), Recorder()
    await store(db, clock, ("del_follow_user", "g1", "wmc1", 100))
    worker = make_worker(db, recorder, clock)
    await worker.drain()
    event = parse_event(event_xml("del_follow_user", "g1", "wmc1", 100))
    assert isinstance(event, DelFollowUser)
    await worker._pipeline(event, {"inbox_id": 1, "attempts": 1})  # e.g. a stale duplicate run
    assert len(recorder.handled) == 1


async def test_events_nobody_handles_are_marked_done(db):
    clock, recorder = FakeClock(START), Recorder()
    writer = InboxWriter(db[0], clock)
    writer.start()
    xml = (
        "<xml><ToUserName>c</ToUserName><FromUserName>sys</FromUserName>"
        "<CreateTime>1</CreateTime><MsgType>event</MsgType><Event>brand_new_event</Event></xml>"
    )
    await writer.store(InboxEntry.of(parse_event(xml), xml))
    await writer.stop()
    await make_worker(db, recorder, clock).drain()
    assert await statuses(db) == {1: InboxStatus.DONE}


async def test_a_batchs_events_are_done_without_a_savepoint(db):
    """A batch that goes well is one transaction with no savepoint: the events no domain takes
    get their done-marks and nothing else, the handled event beside them its changes, and the
    five done-marks are one statement."""
    clock, recorder = FakeClock(START), Recorder()
    writer = InboxWriter(db[0], clock)
    writer.start()
    for i in range(4):
        xml = (
            "<xml><ToUserName>c</ToUserName><FromUserName>sys</FromUserName>"
            f"<CreateTime>{i + 1}</CreateTime><MsgType>event</MsgType>"
            f"<Event>brand_new_event</Event><Nonce>{i}</Nonce></xml>"
        )
        await writer.store(InboxEntry.of(parse_event(xml), xml))
    xml = event_xml("del_follow_user", "g1", "wmc1", 100)
    await writer.store(InboxEntry.of(parse_event(xml), xml))
    await writer.stop()
    worker = make_worker(db, recorder, clock, concurrency=1, batch_events=10, batch_seconds=60)
    seen: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    from sqlalchemy import event as sa_event

    engine = db[0].sync_engine
    sa_event.listen(engine, "before_cursor_execute", count)
    try:
        await worker.drain()
    finally:
        sa_event.remove(engine, "before_cursor_execute", count)
    assert await statuses(db) == dict.fromkeys(range(1, 6), InboxStatus.DONE)
    assert [c for c, _, _ in recorder.handled] == ["wmc1"]
    assert not [s for s in seen if "SAVEPOINT" in s], seen
    marks = [s for s in seen if "processed_at" in s]
    assert len(marks) == 1, marks
    ids = re.search(r"inbox_events\.id IN \(([^)]*)\)", marks[0])
    assert ids is not None and len(ids.group(1).split(",")) == 5, marks


async def test_two_workers_never_handle_one_event_twice(db):
    clock, recorder = FakeClock(START), Recorder()
    await store(
        db,
        clock,
        *[("add_external_contact", "g1", f"wmc{i % 40}", 100 + i) for i in range(200)],
    )
    first = make_worker(db, recorder, clock, batch_size=15)
    second = make_worker(db, recorder, clock, batch_size=15)
    await asyncio.gather(first.drain(), second.drain())
    await first.drain()
    ids = [inbox_id for _, _, inbox_id in recorder.handled]
    assert sorted(ids) == list(range(1, 201))
    per_customer: dict[str, list[int]] = {}
    for customer, _, inbox_id in recorder.handled:
        per_customer.setdefault(customer, []).append(inbox_id)
    assert all(ids == sorted(ids) for ids in per_customer.values())


async def test_a_handler_asking_for_an_unknown_name_fails_at_start_up(db):
    router = Router("typo")

    @router.on(DelFollowUser)
    async def handler(event, sesion) -> None: ...

    dispatcher = Dispatcher(injectables={"session"})
    dispatcher.include_router(router)
    with pytest.raises(Exception, match="asks for sesion"):
        InboxWorker(db[1], dispatcher, FakeClock(START))


async def test_a_slow_worker_whose_lease_ran_out_does_not_handle_a_taken_event(db):
    clock, recorder = FakeClock(START), Recorder()
    await store(db, clock, ("add_external_contact", "g1", "wmc1", 100))
    slow, fast = make_worker(db, recorder, clock), make_worker(db, recorder, clock)
    [claimed] = await slow._claim()
    clock.advance(WorkerPolicy().lease + timedelta(seconds=1))  # slow stalls past its lease
    assert await fast.drain() == 1  # another instance takes the event over and finishes it
    await slow._process(claimed)  # the stalled worker wakes up
    assert [inbox_id for _, _, inbox_id in recorder.handled] == [1]


async def test_an_event_whose_failure_could_not_be_recorded_is_handed_back_at_once(db):
    """The database went away mid-event: not even the failure could be written. The pass
    survives, and once the database answers the event is due again; it does not sit out its
    lease (minutes) in `processing`."""
    clock, recorder = FakeClock(START), Recorder()
    await store(db, clock, ("add_external_contact", "g1", "wmc1", 100))
    recorder.failures["wmc1:add_external_contact"] = 1
    worker = make_worker(db, recorder, clock)
    record_failure = worker._record_failure

    async def database_gone(*args, **kwargs) -> None:
        raise ConnectionRefusedError("database gone")

    worker._record_failure = database_gone  # type: ignore[method-assign]
    assert await worker.run_once() == 1
    assert await statuses(db) == {1: InboxStatus.PROCESSING}

    worker._record_failure = record_failure  # type: ignore[method-assign]
    assert await worker.drain() == 1  # the clock never moved: no lease had to run out
    assert recorder.handled == [("wmc1", "add_external_contact", 1)]
    async with db[1]() as session:
        row = await session.scalar(select(InboxEvent))
    assert row.status == InboxStatus.DONE and row.attempts == 2


class SlowRecorder(Recorder):
    """Handlers that take a while per event, as an add with its welcome does."""

    def router(self) -> Router:
        router = Router("slow")

        @router.on(ExternalContactEvent)
        async def record(event: ExternalContactEvent, inbox_id: int, session) -> None:
            await asyncio.sleep(0.02)
            self.handled.append((event.external_userid, event.kind, inbox_id))

        return router


async def watch_busy(worker: InboxWorker, db, count: int) -> list[bool]:
    """Sample worker.busy() every 10 ms while it works through `count` events, and once after."""
    seen: list[bool] = []
    worker.start()
    try:
        for _ in range(2000):
            seen.append(worker.busy())
            done = [s for s in (await statuses(db)).values() if s == InboxStatus.DONE]
            if len(done) == count:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the worker's next pass finds the inbox empty
        seen.append(worker.busy())
    finally:
        await worker.stop()
    return seen


async def test_a_burst_makes_the_worker_busy_and_an_empty_inbox_ends_it(db):
    clock, recorder = FakeClock(START), SlowRecorder()
    events = [("add_external_contact", "g1", f"wmb{i:02d}", 100) for i in range(30)]
    await store(db, clock, *events)
    worker = make_worker(db, recorder, clock, busy_after=0.1, concurrency=1)
    seen = await watch_busy(worker, db, len(events))
    assert len(recorder.handled) == 30
    # 30 events at 20 ms each, one at a time, keep it working for over 0.1 s without a break:
    # a burst...
    assert any(seen[:-1]), seen
    # ...that ends when a pass finds nothing to do.
    assert seen[-1] is False


async def test_a_trickle_never_makes_the_worker_busy(db):
    clock, recorder = FakeClock(START), SlowRecorder()
    await store(db, clock, ("add_external_contact", "g1", "wmt01", 100))
    worker = make_worker(db, recorder, clock, busy_after=0.5)
    seen = await watch_busy(worker, db, 1)
    assert recorder.handled and not any(seen), seen


class AfterCommitRecorder(Recorder):
    """Handlers that hand work to after_commit, as the welcome does."""

    def __init__(self) -> None:
        super().__init__()
        self.after: list[str] = []

    def router(self) -> Router:
        router = Router("after")

        @router.on(ExternalContactEvent)
        async def record(event: ExternalContactEvent, inbox_id: int, session) -> None:
            from guidebot.events import after_commit

            async def welcome() -> None:
                self.after.append(event.external_userid)

            after_commit(session, welcome)
            session.add(
                InboxEvent(
                    dedupe_key=f"side-effect:{event.external_userid}",
                    kind="side_effect",
                    payload="",
                    received_at=START,
                    next_attempt_at=START,
                    status=InboxStatus.DONE,
                )
            )
            await session.flush()
            if self.failures.get(event.external_userid, 0) > 0:
                self.failures[event.external_userid] -= 1
                raise RuntimeError(f"boom for {event.external_userid}")
            self.handled.append((event.external_userid, event.kind, inbox_id))

        return router


async def test_a_batch_shares_one_transaction_and_a_failing_event_rolls_back_alone(db):
    """A batch runs without savepoints; when one of its events fails, the batch rolls back and
    runs again with a savepoint each, so only the failing event's changes are undone, and what
    the others committed or left for after the commit happens once."""
    clock, recorder = FakeClock(START), AfterCommitRecorder()
    customers = [f"wmb{i:02d}" for i in range(12)]
    await store(db, clock, *[("add_external_contact", "g1", c, 100) for c in customers])
    # The third of the second batch (two went well before it): it fails in the batch's run
    # without savepoints and in the careful one, then works when retried.
    recorder.failures["wmb07"] = 2
    worker = make_worker(
        db, recorder, clock, concurrency=1, batch_events=5, batch_seconds=60, batch_hold_seconds=60
    )
    begins: list[str] = []
    engine = db[0].sync_engine

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("SAVEPOINT"):
            begins.append("SAVEPOINT")

    from sqlalchemy import event as sa_event

    sa_event.listen(engine, "before_cursor_execute", count)
    sa_event.listen(engine, "begin", lambda conn: begins.append("BEGIN"))
    try:
        await worker.drain()
        await worker.settle()
    finally:
        sa_event.remove(engine, "before_cursor_execute", count)
    # The eleven that worked are done, their after-commit work ran once the batch committed
    # (wmb05 and wmb06 were handled twice, the first time in the run that rolled back); the
    # one that failed left nothing behind (its savepoint rolled back) and waits to retry.
    worked = [c for c in customers if c != "wmb07"]
    assert sorted({c for c, _, _ in recorder.handled}) == worked
    assert sorted(c for c, _, _ in recorder.handled if c not in ("wmb05", "wmb06")) == [
        c for c in worked if c not in ("wmb05", "wmb06")
    ]
    assert sorted(recorder.after) == worked
    async with db[1]() as session:
        side = set(
            await session.scalars(
                select(InboxEvent.dedupe_key).where(InboxEvent.kind == "side_effect")
            )
        )
        failed = await session.scalar(
            select(InboxEvent).where(
                InboxEvent.kind == "add_external_contact", InboxEvent.status != InboxStatus.DONE
            )
        )
    assert side == {f"side-effect:{c}" for c in worked}
    assert failed.status == InboxStatus.PENDING and "boom for wmb07" in failed.last_error
    # Twelve events in batches of five: three transactions without savepoints, and the second
    # batch once more, a savepoint per event.
    savepoints = [t.count("SAVEPOINT") for t in " ".join(begins).split("BEGIN")[1:]]
    assert [n for n in savepoints if n] == [5], begins
    clock.advance(timedelta(seconds=30))
    await worker.drain()
    assert "wmb07" in [c for c, _, _ in recorder.handled]


async def test_lanes_of_batches_keep_each_customers_order_and_their_own_failures(db):
    """With batches and concurrency N the worker runs N lanes of batches at once, each over its
    own customers (PostgreSQL: one lane's round trips overlap another's work). Each customer's
    events stay in order, each event is done once, and an event failing in one lane's batch
    without savepoints spoils that batch alone: the batch each lane is in is its own."""
    from guidebot.events import after_commit

    clock, committed, failures = FakeClock(START), [], {"wml03": 1}
    postgresql = db[0].dialect.name == "postgresql"
    lanes_in, all_lanes_in = set(), asyncio.Event()
    router = Router("lanes")

    @router.on(ExternalContactEvent)
    async def record(event: ExternalContactEvent, session) -> None:
        async def done() -> None:
            committed.append((event.external_userid, event.kind))

        after_commit(session, done)
        await session.execute(select(InboxEvent.id).limit(1))  # a round trip on PostgreSQL
        if postgresql:  # each lane's first event waits until all three are in a transaction
            lanes_in.add(id(session))
            if len(lanes_in) == 3:
                all_lanes_in.set()
            async with asyncio.timeout(10):
                await all_lanes_in.wait()
        if failures.get(event.external_userid, 0) > 0 and event.kind == "del_follow_user":
            failures[event.external_userid] -= 1
            raise RuntimeError(f"boom for {event.external_userid}")

    dispatcher = Dispatcher(injectables={"session", "inbox_id", "attempts"})
    dispatcher.include_router(router)
    policy = WorkerPolicy(
        concurrency=3, batch_events=4, batch_seconds=60, batch_hold_seconds=60, first_backoff=10
    )
    worker = InboxWorker(db[1], dispatcher, clock, policy=policy)
    customers = [f"wml{i:02d}" for i in range(9)]
    await store(
        db,
        clock,
        *[("add_external_contact", "g1", c, 100) for c in customers],
        *[("del_follow_user", "g1", c, 200) for c in customers],
    )
    open_now, peak, begun = [0], [0], [0]
    engine = db[0].sync_engine

    def began(conn) -> None:
        begun[0] += 1
        open_now[0] += 1
        peak[0] = max(peak[0], open_now[0])

    def ended(conn) -> None:
        open_now[0] -= 1

    from sqlalchemy import event as sa_event

    hooks = [("begin", began), ("commit", ended), ("rollback", ended)]
    for name, hook in hooks:
        sa_event.listen(engine, name, hook)
    try:
        await worker.drain()
        await worker.settle()
    finally:
        for name, hook in hooks:
            sa_event.remove(engine, name, hook)
    assert set((await statuses(db)).values()) == {InboxStatus.DONE}
    assert sorted(committed) == sorted(
        [(c, "add_external_contact") for c in customers]
        + [(c, "del_follow_user") for c in customers]
    )
    for c in customers:  # each customer's add committed before their delete
        kinds = [kind for ext, kind in committed if ext == c]
        assert kinds == ["add_external_contact", "del_follow_user"], (c, committed)
    # Three lanes of three customers (six events): batches of four and two each, the spoiled
    # one once more, and the claims; a transaction per event would be eighteen and more.
    assert begun[0] <= 11, begun
    if postgresql:  # (SQLite's one connection: one lane at a time)
        assert peak[0] == 3


async def test_an_event_finished_elsewhere_during_a_batch_leaves_no_change_of_its_own(db):
    """Another worker finished an event while this one's batch was running (it found the
    event done when writing its done-mark): the batch runs again, a savepoint each, and that
    event's changes roll back alone; without it, they would be committed a second time."""
    clock, recorder = FakeClock(START), AfterCommitRecorder()
    router = Router("elsewhere")

    @router.on(ExternalContactEvent)
    async def finish_the_next_one(event: ExternalContactEvent, inbox_id: int, session) -> None:
        if event.external_userid == "wme1":  # the next event, as another worker would have
            await session.execute(
                update(InboxEvent)
                .where(InboxEvent.id == inbox_id + 1)
                .values(status=InboxStatus.DONE, processed_at=START)
            )

    dispatcher = Dispatcher(injectables={"session", "inbox_id", "attempts"})
    dispatcher.include_router(router)
    dispatcher.include_router(recorder.router())
    worker = InboxWorker(
        db[1],
        dispatcher,
        clock,
        policy=WorkerPolicy(concurrency=1, batch_events=5, batch_seconds=60, batch_hold_seconds=60),
    )
    customers = [f"wme{i}" for i in range(4)]
    await store(db, clock, *[("add_external_contact", "g1", c, 100) for c in customers])
    await worker.drain()
    await worker.settle()
    async with db[1]() as session:
        side = set(
            await session.scalars(
                select(InboxEvent.dedupe_key).where(InboxEvent.kind == "side_effect")
            )
        )
    assert side == {"side-effect:wme0", "side-effect:wme1", "side-effect:wme3"}
    assert sorted(recorder.after) == ["wme0", "wme1", "wme3"]
    assert set((await statuses(db)).values()) == {InboxStatus.DONE}


@pytest.mark.parametrize("reads_ahead", [1, 8])
async def test_a_batch_fetches_from_outside_before_its_transaction_opens(db, reads_ahead):
    """What handlers need from WeCom is read before the batch's BEGIN, never while it holds
    the connection (on SQLite the callbacks wait for that connection to be acknowledged).
    Reads ahead: the next batch's reads may come before this one's, never the other way."""
    clock, order = FakeClock(START), []
    router = Router("contacts")

    @router.before(ExternalContactEvent)
    async def profile(event: ExternalContactEvent) -> str:
        order.append(f"fetch {event.external_userid}")
        return f"profile of {event.external_userid}"

    @router.on(ExternalContactEvent)
    async def record(event: ExternalContactEvent, profile: str, session) -> None:
        assert profile == f"profile of {event.external_userid}"
        await session.execute(select(InboxEvent.id).limit(1))  # the transaction is open now
        order.append(f"handle {event.external_userid}")

    dispatcher = Dispatcher(injectables={"session", "inbox_id", "attempts"})
    dispatcher.include_router(router)
    worker = InboxWorker(
        db[1],
        dispatcher,
        clock,
        policy=WorkerPolicy(
            concurrency=1,
            batch_events=3,
            batch_seconds=60,
            batch_hold_seconds=60,
            reads_ahead=reads_ahead,
        ),
    )
    await store(db, clock, *[("add_external_contact", "g1", f"wmf{i}", 100) for i in range(5)])
    from sqlalchemy import event as sa_event

    def begin(conn):
        order.append("begin")

    sa_event.listen(db[0].sync_engine, "begin", begin)
    try:
        await worker.drain()
    finally:
        sa_event.remove(db[0].sync_engine, "begin", begin)
    steps = [s.split()[0] for s in order]
    # Two batches (3 + 2): all of a batch's fetches come before its transaction begins (the
    # transactions before the first fetch and after the last event claim the events).
    last = len(steps) - steps[::-1].index("handle")
    batch_steps = steps[steps.index("fetch") : last]
    if reads_ahead == 1:
        assert batch_steps == (
            ["fetch"] * 3 + ["begin"] + ["handle"] * 3 + ["fetch"] * 2 + ["begin"] + ["handle"] * 2
        ), order
    else:  # all five in flight at once: each done before the first batch begins
        assert (
            batch_steps == ["fetch"] * 5 + ["begin"] + ["handle"] * 3 + ["begin"] + ["handle"] * 2
        )


async def test_slow_reads_from_wecom_are_in_flight_together_and_each_reaches_its_event(db):
    """One after another, eight profile reads slowed to 3 s held a burst's events for 24 s:
    the events' reads are started ahead of their batches, reads_ahead at once, and each one's
    answer still reaches its own event, in the customers' order."""
    clock, in_flight, peak, handled = FakeClock(START), [0], [0], []
    router = Router("contacts")

    @router.before(ExternalContactEvent)
    async def profile(event: ExternalContactEvent) -> str:
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        for _ in range(3):  # WeCom's answer takes a while: the loop runs the others meanwhile
            await asyncio.sleep(0)
        in_flight[0] -= 1
        return f"profile of {event.external_userid}"

    @router.on(ExternalContactEvent)
    async def record(event: ExternalContactEvent, profile: str) -> None:
        handled.append((event.external_userid, profile))

    dispatcher = Dispatcher(injectables={"session", "inbox_id", "attempts"})
    dispatcher.include_router(router)
    policy = WorkerPolicy(concurrency=1, batch_events=20, batch_seconds=60, reads_ahead=4)
    worker = InboxWorker(db[1], dispatcher, clock, policy=policy)
    await store(db, clock, *[("add_external_contact", "g1", f"wms{i}", 100 + i) for i in range(9)])
    await worker.drain()
    assert handled == [(f"wms{i}", f"profile of wms{i}") for i in range(9)]
    assert peak[0] == 4


@pytest.mark.parametrize("batch_events", [1, 5])
async def test_an_unparseable_event_is_parked_alone_and_the_others_are_done(db, batch_events):
    clock, recorder = FakeClock(START), Recorder()
    await store(db, clock, ("add_external_contact", "g1", "wmu1", 100))
    async with db[1]() as session, session.begin():
        session.add(
            InboxEvent(
                dedupe_key="stored-by-an-older-version",
                kind="add_external_contact",
                customer_key="wmu9",
                payload="<xml><MsgType>event</MsgType>",  # cut short: no event in it
                received_at=START,
                next_attempt_at=START,
                status=InboxStatus.PENDING,
            )
        )
    await store(db, clock, ("add_external_contact", "g1", "wmu2", 100))
    worker = make_worker(db, recorder, clock, concurrency=1, batch_events=batch_events)
    await worker.drain()
    assert sorted(c for c, _, _ in recorder.handled) == ["wmu1", "wmu2"]
    async with db[1]() as session:
        rows = {e.dedupe_key: e for e in await session.scalars(select(InboxEvent))}
    parked = rows.pop("stored-by-an-older-version")
    assert parked.status == InboxStatus.FAILED and parked.last_error.startswith("unparseable")
    assert {e.status for e in rows.values()} == {InboxStatus.DONE}


async def test_a_callback_stored_while_the_worker_finds_nothing_is_not_left_for_the_poll(db):
    """The intake wakes the worker after each commit. A wake-up that lands while the worker is
    between finding the inbox empty and going to sleep must not be lost: the event would wait
    for the next poll (a second by default; a welcome's 20 s budget at a steady trickle showed
    it as a p99 of one second)."""
    clock, recorder = FakeClock(START), Recorder()
    worker = make_worker(db, recorder, clock, poll_interval=60)
    found_nothing = worker._claim
    interleaved = False

    async def claim_then_an_add_arrives():
        nonlocal interleaved
        claimed = await found_nothing()
        if not claimed and not interleaved:
            # The add commits just after the worker's look, and the intake wakes the worker.
            interleaved = True
            await store(db, clock, ("add_external_contact", "g1", "wm1", 1))
            worker.wake()
        return claimed

    worker._claim = claim_then_an_add_arrives
    worker.start()
    try:
        async with asyncio.timeout(10):  # the poll is 60 s away
            while not recorder.handled:  # noqa: ASYNC110 (the recorder has no event to wait on)
                await asyncio.sleep(0.01)
    finally:
        await worker.stop()
    assert interleaved
    assert [(ext, kind) for ext, kind, _ in recorder.handled] == [("wm1", "add_external_contact")]


async def test_quiet_waits_for_the_event_in_hand_and_no_longer(db):
    """Bookkeeping that gives way waits on `quiet` between its transactions: it must return
    once the worker has nothing in hand, and at once when the worker is idle."""
    clock = FakeClock(START)
    gate, entered = asyncio.Event(), asyncio.Event()
    handled: list[str] = []
    router = Router("test")

    @router.on(ExternalContactEvent)
    async def slow(event: ExternalContactEvent, session) -> None:
        entered.set()
        await gate.wait()
        handled.append(event.external_userid)

    dispatcher = Dispatcher(injectables={"session", "inbox_id", "attempts"})
    dispatcher.include_router(router)
    worker = InboxWorker(db[1], dispatcher, clock, policy=WorkerPolicy(poll_interval=0.05))
    async with asyncio.timeout(5):
        await worker.quiet(10)  # idle: no wait
    await store(db, clock, ("add_external_contact", "g1", "wm1", 1))
    worker.start()
    try:
        async with asyncio.timeout(5):
            await entered.wait()
        waiting = asyncio.create_task(worker.quiet(10))
        await asyncio.sleep(0.1)
        assert not waiting.done()  # the add is in hand
        gate.set()
        async with asyncio.timeout(5):
            await waiting
        assert handled == ["wm1"]
        gate.clear()
        entered.clear()
        await store(db, clock, ("add_external_contact", "g1", "wm2", 2))
        worker.wake()
        async with asyncio.timeout(5):
            await entered.wait()
        started = asyncio.get_running_loop().time()
        await worker.quiet(0.2)  # never longer than its patience
        assert asyncio.get_running_loop().time() - started < 1
        gate.set()
    finally:
        await worker.stop()


async def test_a_backlog_older_than_a_welcome_code_waits_for_the_fresh_adds(db):
    """A burst beyond what the worker handles: taking the oldest first would handle every add
    after its WelcomeCode (20 s) is gone. Events that arrived within `fresh_first` are claimed
    first, in arrival order; the older ones follow once the fresh ones do not fill a batch, and
    one customer's events still go in order."""
    clock, recorder = FakeClock(START), Recorder()
    await store(
        db,
        clock,
        ("add_external_contact", "g1", "wmc1", 100),
        ("add_external_contact", "g1", "wmc2", 101),
        ("add_external_contact", "g1", "wmc3", 102),
    )
    clock.advance(timedelta(seconds=16))  # those three are past fresh_first (15 s)
    await store(
        db,
        clock,
        ("add_external_contact", "g2", "wmc4", 116),
        ("del_follow_user", "g1", "wmc1", 116),  # wmc1's earlier add is still waiting
        ("add_external_contact", "g2", "wmc5", 117),
    )
    worker = make_worker(db, recorder, clock, batch_size=2)
    assert await worker.run_once() == 2
    assert [c for c, _, _ in recorder.handled] == ["wmc4", "wmc5"]
    await worker.drain()
    assert [(c, k) for c, k, _ in recorder.handled] == [
        ("wmc4", "add_external_contact"),
        ("wmc5", "add_external_contact"),
        ("wmc1", "add_external_contact"),
        ("wmc2", "add_external_contact"),
        ("wmc3", "add_external_contact"),
        ("wmc1", "del_follow_user"),
    ]
