"""WeCom faults under a stream of adds: retried or cooled down, nothing lost, nothing twice.

The SOP engine's harness (tests/sop_engine/conftest.py: the simulated WeCom and guidebot over
real HTTP, one fake clock, the first_contact and follow_up_7d playbooks), with the inbox worker
running on its own and a background SOP tick, as `guidebot serve` runs them. The simulator
injects faults (timeouts, errcode -1, HTTP 5xx, 42001, 45009, 45033) on every API guidebot calls
on the way: externalcontact/get and gettoken while adds are handled, send_welcome_msg on the
welcome fast path, message/send for the day-1 reminders and add_msg_template for the day-3
guide tasks. Which call meets which fault depends on scheduling, so expectations are read back
from the simulator's call log (every call, in order, with the fault it met and its answer).
45009 is injected only where a 60 s cooldown can end in time (message/send, add_msg_template):
on externalcontact/get or send_welcome_msg it would outlast the 20 s welcome code by design.

The app's WeComClient gets a 1 s timeout (a "timeout" fault hangs past it) and tells time by
the harness's clock, but its backoff sleeps are recorded and take no time: the faults are under
test here, not the deadlines (with 24 adds handled one at a time on SQLite, backoffs that moved
the clock would run most profile reads out of their 10 s); everything else is as shipped.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

import guidebot.runtime
from guidebot.clock import FakeClock
from guidebot.contacts import jobs as contacts_jobs
from guidebot.contacts.models import Customer, EventKind, RelationEvent
from guidebot.db.credentials import WeComCredential
from guidebot.intake.models import InboxEvent, InboxStatus
from guidebot.sop.models import SopEnrollment, SopTask
from guidebot.web.keys import INBOX_WORKER, WECOM
from guidebot.wecom.client import WeComClient
from tests.sop_engine import conftest as sop_harness
from tests.sop_engine.conftest import SHANGHAI, make_harness
from tests.support import TEST_IDENTITY

# The SOP engine's fixtures: the clock (Friday 20:55 in Shanghai) and the temporary sop/.
clock = sop_harness.clock
sop_dir = sop_harness.sop_dir

GUIDES = ("g1", "g2", "g3")
CUSTOMERS = [f"wmc{i}" for i in range(1, 25)]
TIMEOUT = 1.0  # the app's WeCom client timeout in this test
MAX_RETRIES = 3  # the client's default
TOKEN_NAME = f"access_token:{TEST_IDENTITY.corp_id}:{TEST_IDENTITY.agent_id}"
RETRYABLE = {-1, 45033}  # WeCom refused: every API retries these in the client

GET = "externalcontact/get"
WELCOME = "externalcontact/send_welcome_msg"
TEMPLATE = "externalcontact/add_msg_template"
SEND = "message/send"


def guide_of(ext: str) -> str:
    return GUIDES[CUSTOMERS.index(ext) % len(GUIDES)]


class Backoff:
    """The harness's clock as the app's WeCom client sees it: the same time, but each of the
    client's sleeps (its backoff delays) is recorded and takes none."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.delays: list[float] = []

    def now(self) -> datetime:
        return self.clock.now()

    def time(self) -> float:
        return self.clock.time()

    async def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def backoff(monkeypatch, clock) -> Backoff:
    recorder = Backoff(clock)

    def client(*args: Any, clock: FakeClock, **options: Any) -> WeComClient:
        assert clock is recorder.clock  # the harness's one clock, seen through the recorder
        return WeComClient(*args, clock=recorder, timeout=TIMEOUT, **options)

    monkeypatch.setattr(guidebot.runtime, "WeComClient", client)
    return recorder


@pytest.fixture
async def h(aiohttp_client, database_url, clock, sop_dir, backoff):
    harness = await make_harness(
        aiohttp_client,
        database_url,
        clock,
        sop_dir,
        [sop_harness.FIRST_CONTACT, sop_harness.FOLLOW_UP],
    )
    for ext in CUSTOMERS[3:]:  # wmc1..wmc3 are seeded by the harness
        await harness.control("customers", {"external_userid": ext, "name": f"顾客{ext[3:]}"})
    return harness


# ---- reading the simulator's call log ---------------------------------------------------------


def fault_of(call: dict[str, Any]) -> str | int | None:
    """What the simulator did to this call: an errcode, "timeout", "latency", "http" or None."""
    fault = call.get("fault")
    if fault is None:
        return None
    if fault["timeout"]:
        return "timeout"
    if fault["errcode"] is not None:
        return fault["errcode"]
    if fault["http_status"] is not None:
        return "http"
    return "latency"


def errcode_of(call: dict[str, Any]) -> int | None:
    return (call.get("answer") or {}).get("errcode")


def uncertain(call: dict[str, Any]) -> bool:
    """A fault after which an unsafe call's outcome is unknown to the client."""
    return fault_of(call) in ("timeout", "http", "latency")


async def faults_left(h) -> list[dict]:
    return (await (await h.sim.get("/_sim/faults")).json())["faults"]


async def inject(h, api: str, *faults: dict[str, Any]) -> None:
    for fault in faults:
        await h.control("faults", {"api": api, **fault})


async def all_calls(h) -> list[dict]:
    return (await (await h.sim.get("/_sim/calls")).json())["calls"]


def give_ups(calls: list[dict]) -> int:
    """Safe calls the client gave up on: MAX_RETRIES + 1 faulted attempts in a row (per key)."""
    runs: dict[str, int] = defaultdict(int)
    total = 0
    for call in calls:
        key = call["query"].get("external_userid", "")
        if fault_of(call) is None:
            runs[key] = 0
            continue
        runs[key] += 1
        if runs[key] == MAX_RETRIES + 1:
            total += 1
            runs[key] = 0
    return total


async def rows(h, model, *where) -> list:
    async with h.sessions() as session:
        return list(await session.scalars(select(model).where(*where).order_by(model.id)))


async def wait_for(check, what: str, *, seconds: float = 15.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# ---- driving guidebot --------------------------------------------------------------------------


async def settle_inbox(h, *, step: float = 3.0, most: float = 12.0) -> None:
    """Let the running worker finish every stored event, moving the clock over its backoffs."""
    worker = h.app[INBOX_WORKER]
    moved = 0.0
    deadline = asyncio.get_running_loop().time() + 15.0
    while asyncio.get_running_loop().time() < deadline:
        worker.wake()
        await asyncio.sleep(0.05)
        open_rows = await rows(
            h, InboxEvent, InboxEvent.status.in_((InboxStatus.PENDING, InboxStatus.PROCESSING))
        )
        if not open_rows:
            await worker.settle()
            return
        if all(
            r.status == InboxStatus.PENDING and r.next_attempt_at > h.clock.now() for r in open_rows
        ):
            assert moved < most, "events still failing after the welcome window"
            h.advance(timedelta(seconds=step))  # the worker's retry backoff, on the fake clock
            moved += step
    raise AssertionError("the inbox did not drain")


async def ticks_until_settled(h, step: str, *, every: timedelta, most: int = 8) -> list:
    """Tick the SOP engine, moving the clock `every` between ticks, until `step` is settled."""
    reports = []
    for _ in range(most):
        reports.append(await h.tick())
        open_tasks = await rows(
            h, SopTask, SopTask.step_id == step, SopTask.status.in_(("pending", "claimed"))
        )
        if not open_tasks:
            return reports
        h.advance(every)
    raise AssertionError(f"{step} tasks still open after {most} ticks")


# ---- the test ------------------------------------------------------------------------------------


async def test_faults_under_a_stream_of_adds_lose_nothing_and_send_nothing_twice(h, backoff):
    sim_state = h.sim_state
    [first_token] = list(sim_state.tokens)  # fetched by the start-up directory sync
    start_seq = max(c["seq"] for c in await all_calls(h))

    # ---- phase 1: 24 adds streamed in while every API on the way misbehaves ----------------
    # externalcontact/get (safe): a fault more in a row than every add's read can absorb in
    # its retries (3 each), so however many reads are in flight at once (the worker reads
    # ahead of its batches, in lanes on PostgreSQL) some run out of retries; those adds are
    # recorded without a profile, read later.
    in_a_row = MAX_RETRIES * len(CUSTOMERS) + 1
    await inject(
        h,
        GET,
        {"timeout": True},
        {"http_status": 502},
        {"errcode": 45033, "times": 2},
        {"errcode": -1, "times": in_a_row - 4},
    )
    # send_welcome_msg (unsafe): busy answers are retried; 42001 refreshes the token (whose
    # own fetch meets a 500 and a -1) and retries; a late answer (the welcome went out), a
    # timeout and a 502 leave the outcome unknown: not resent.
    await inject(
        h,
        WELCOME,
        {"errcode": -1},
        {"errcode": 45033},
        {"errcode": 42001},
        {"latency": TIMEOUT + 0.5, "times": 2},
        {"http_status": 502},
        {"timeout": True},
    )
    await inject(h, "gettoken", {"http_status": 500}, {"errcode": -1})

    h.app[INBOX_WORKER].start()  # as `guidebot serve` runs it (the harness does not)
    stop = asyncio.Event()
    tick_reports: list = []

    async def sop_ticker() -> None:  # the scheduler's sop-tick, racing the welcome fast path
        while not stop.is_set():
            tick_reports.append(await h.tick())
            await asyncio.sleep(0.1)

    ticker = asyncio.create_task(sop_ticker())
    gate = asyncio.Semaphore(6)

    async def add(ext: str) -> dict:
        async with gate:
            return await h.control(
                "contact/add",
                {"userid": guide_of(ext), "external_userid": ext, "welcome_code": True},
            )

    try:
        answers = await asyncio.gather(*(add(ext) for ext in CUSTOMERS))
        assert all(a["delivered"] for a in answers), answers  # every add acknowledged
        codes = {a["welcome_code"]: ext for a, ext in zip(answers, CUSTOMERS, strict=True)}
        # WeCom delivers some callbacks again (a lost 200, say): they must fold into the inbox.
        deliveries = (await (await h.sim.get("/_sim/deliveries")).json())["deliveries"]
        for delivery in deliveries[:5]:
            await h.deliver(delivery["plaintext"])
        await settle_inbox(h)

        async def welcomes_settled() -> bool:
            tasks = await rows(h, SopTask, SopTask.step_id == "welcome")
            late = [c for c in sim_state.calls if fault_of(c) == "latency" and not c["answer"]]
            return (
                len(tasks) == len(CUSTOMERS)
                and not late
                and all(t.status not in ("pending", "claimed", "sending") for t in tasks)
            )

        await wait_for(welcomes_settled, "the welcomes to settle")
    finally:
        stop.set()
        await ticker
    print(
        [
            (c["seq"], c["api"], fault_of(c), errcode_of(c))
            for c in sim_state.calls
            if c["api"] in (WELCOME, "gettoken")
        ]
    )
    assert await faults_left(h) == []  # every injected fault was met

    calls = [c for c in await all_calls(h) if c["seq"] > start_seq]

    # Every acknowledged event processed exactly once: one inbox row per add (redeliveries
    # folded), all done; one `added` in the log and one enrollment per playbook per pair.
    inbox = await rows(h, InboxEvent)
    assert len(inbox) == len(CUSTOMERS)
    assert {r.status for r in inbox} == {InboxStatus.DONE}
    added = await rows(h, RelationEvent, RelationEvent.kind == EventKind.ADDED)
    assert sorted((e.guide_userid, e.external_userid) for e in added) == sorted(
        (guide_of(ext), ext) for ext in CUSTOMERS
    )
    enrollments = Counter((e.playbook_id, e.external_userid) for e in await rows(h, SopEnrollment))
    assert set(enrollments.values()) == {1} and len(enrollments) == 2 * len(CUSTOMERS)

    # externalcontact/get: every fault retried by the client. An add whose read ran out of
    # retries still carries a WelcomeCode that lives 20 s, so it was recorded from the event
    # alone at its first attempt (the welcome goes now) and its profile is read later.
    get_calls = [c for c in calls if c["api"] == GET]
    gave_up = give_ups(get_calls)
    assert gave_up >= 1
    assert sum(r.attempts for r in inbox) == len(CUSTOMERS)
    assert sum(1 for c in get_calls if fault_of(c) is None) == len(CUSTOMERS) - gave_up
    async with h.sessions() as session:
        unread = await session.scalar(
            select(func.count()).select_from(Customer).where(Customer.profile_fetched_at.is_(None))
        )
    assert unread == gave_up
    report = await contacts_jobs.refetch_profiles(h.sessions, h.app[WECOM], h.clock)
    async with h.sessions() as session:
        unread = await session.scalar(
            select(func.count()).select_from(Customer).where(Customer.profile_fetched_at.is_(None))
        )
    assert unread == 0, report

    # send_welcome_msg, per welcome code: a refused call is followed by another, an uncertain
    # one is the last; WeCom accepted each code at most once and never saw a spent one again.
    by_code: dict[str, list[dict]] = defaultdict(list)
    for call in calls:
        if call["api"] == WELCOME:
            by_code[call["body"]["welcome_code"]].append(call)
    assert set(by_code) == set(codes)
    unknown_expected, undelivered = set(), set()
    for code, attempts in by_code.items():
        for call in attempts[:-1]:
            assert fault_of(call) in RETRYABLE | {42001}, attempts
        last = attempts[-1]
        assert fault_of(last) in (None, "latency", "timeout", "http"), attempts
        if uncertain(last):
            unknown_expected.add(codes[code])
            if fault_of(last) != "latency":
                undelivered.add(codes[code])
        assert sum(1 for c in attempts if errcode_of(c) == 0) == (codes[code] not in undelivered)
    assert 41051 not in {errcode_of(c) for c in calls}
    assert len(unknown_expected) == 4 and len(undelivered) == 2

    welcome_tasks = {
        t.external_userid: t for t in await rows(h, SopTask, SopTask.step_id == "welcome")
    }
    for ext, task in welcome_tasks.items():
        if ext in unknown_expected:
            assert task.status == "unknown" and "not resent" in task.reason, (ext, task.reason)
        else:
            assert task.status == "sent", (ext, task.status, task.reason)
    # The simulator's own record: one welcome per customer, none for the two whose only
    # call was answered by a 502 or hung (unknown, not resent).
    welcomed = Counter(w["external_userid"] for w in sim_state.welcomes)
    assert welcomed == Counter({ext: 1 for ext in CUSTOMERS if ext not in undelivered})

    # 42001: the token was dropped and fetched again (through a 500 and a -1), once; the
    # refused welcome was retried after the new token arrived, and guidebot stores it.
    [expired] = [c for c in calls if c["api"] == WELCOME and fault_of(c) == 42001]
    tokens = [c for c in calls if c["api"] == "gettoken"]
    assert [fault_of(c) for c in tokens] == ["http", -1, None]
    assert all(c["seq"] > expired["seq"] for c in tokens)
    retried = next(c for c in by_code[expired["body"]["welcome_code"]] if c["seq"] > expired["seq"])
    assert retried["seq"] > tokens[-1]["seq"]
    [second_token] = [t for t in sim_state.tokens if t != first_token]
    async with h.sessions() as session:
        stored = await session.get(WeComCredential, TOKEN_NAME)
    assert stored is not None and stored.value == second_token

    # Client-level retries happened with backoff: one sleep per refused or timed-out safe
    # attempt that was tried again, per busy welcome answer and per failed token fetch.
    retried_gets = sum(1 for c in get_calls if fault_of(c) is not None) - gave_up
    busy_welcomes = sum(1 for c in calls if c["api"] == WELCOME and fault_of(c) in RETRYABLE)
    assert len(backoff.delays) == retried_gets + busy_welcomes + 2

    # ---- phase 2: day-1 reminders to the guides (message/send, at least once) ---------------
    h.clock.set(datetime(2026, 3, 14, 20, 56, tzinfo=SHANGHAI))
    mark = max(c["seq"] for c in await all_calls(h))
    await inject(
        h,
        SEND,
        {"timeout": True},
        {"http_status": 502},
        {"errcode": -1},
        {"errcode": 45009},
    )
    reports = await ticks_until_settled(h, "day1_intro", every=timedelta(seconds=30))
    assert await faults_left(h) == []
    sends = [c for c in await all_calls(h) if c["seq"] > mark and c["api"] == SEND]
    reminders = await rows(h, SopTask, SopTask.step_id == "day1_intro")
    assert len(reminders) == len(CUSTOMERS)
    assert {t.status for t in reminders} == {"sent"}
    # Exactly one delivered reminder per task (a hung or refused attempt delivered nothing).
    delivered = Counter(c["body"]["textcard"]["url"] for c in sends if errcode_of(c) == 0)
    assert delivered == Counter({h.runtime.task_url(t.id): 1 for t in reminders})
    # 45009: this client sent nothing more to message/send until the 60 s cooldown ended; the
    # reminders it held back were due again on a later tick, not dropped.
    [limited] = [c for c in sends if errcode_of(c) == 45009]
    assert not [c for c in sends if limited["time"] < c["time"] < limited["time"] + 60]
    assert sum(r.retried for r in reports) >= 1
    assert max(t.attempts for t in reminders) >= 2

    # ---- phase 3: day-3 guide tasks (add_msg_template, at most once) ------------------------
    h.clock.set(datetime(2026, 3, 16, 20, 55, 30, tzinfo=SHANGHAI))
    mark = max(c["seq"] for c in await all_calls(h))
    await inject(
        h,
        TEMPLATE,
        {"errcode": -1},
        {"errcode": 45033},
        {"errcode": 42001},
        {"timeout": True},
        {"http_status": 502},
        {"errcode": 45009},
    )
    reports = await ticks_until_settled(h, "day3", every=timedelta(seconds=30))
    assert await faults_left(h) == []
    templates = [c for c in await all_calls(h) if c["seq"] > mark and c["api"] == TEMPLATE]
    day3 = {t.external_userid: t for t in await rows(h, SopTask, SopTask.step_id == "day3")}
    assert len(day3) == len(CUSTOMERS)
    per_customer: dict[str, list[dict]] = defaultdict(list)
    for call in templates:
        [ext] = call["body"]["external_userid"]  # one text per customer: one call each
        per_customer[ext].append(call)
    unknown = set()
    for ext, attempts in per_customer.items():
        assert sum(1 for c in attempts if errcode_of(c) == 0) <= 1, attempts
        last = attempts[-1]
        if uncertain(last):
            unknown.add(ext)
            assert day3[ext].status == "unknown" and "not resent" in day3[ext].reason
        else:
            assert errcode_of(last) == 0, attempts
            assert day3[ext].status == "sent" and day3[ext].wecom_msgid == last["answer"]["msgid"]
        # Before the last call, only answers that say WeCom did nothing.
        assert all(fault_of(c) in RETRYABLE | {42001, 45009} for c in attempts[:-1]), attempts
    assert set(per_customer) == set(CUSTOMERS)
    assert len(unknown) == 2
    groupmsgs = (await (await h.sim.get("/_sim/groupmsgs")).json())["tasks"]
    in_wecom = Counter(r["external_userid"] for t in groupmsgs for r in t["send_list"])
    assert in_wecom == Counter({ext: 1 for ext in CUSTOMERS if ext not in unknown})
    [limited] = [c for c in templates if errcode_of(c) == 45009]
    assert not [c for c in templates if limited["time"] < c["time"] < limited["time"] + 60]
    assert sum(r.retried for r in reports) >= 1
    # 42001: a new token was fetched before the refused mass-send task was asked for again.
    [expired] = [c for c in templates if fault_of(c) == 42001]
    [ext] = expired["body"]["external_userid"]
    again = next(c for c in per_customer[ext] if c["seq"] > expired["seq"])
    assert any(
        c["api"] == "gettoken" and expired["seq"] < c["seq"] < again["seq"] and errcode_of(c) == 0
        for c in await all_calls(h)
    )

    # Nothing executed twice, end to end: every task row settled once, no duplicates.
    async with h.sessions() as session:
        result = await session.execute(
            select(SopTask.step_id, func.count()).group_by(SopTask.step_id)
        )
        statuses = {step: count for step, count in result}
    assert statuses == {s: len(CUSTOMERS) for s in ("welcome", "day1_intro", "day3", "day7")}
