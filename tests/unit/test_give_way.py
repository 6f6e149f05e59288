"""Bookkeeping jobs give way to a burst of adds (guidebot.scheduler.GiveWay), for a bounded time."""

from __future__ import annotations

from guidebot.intake.policy import Burst, WorkerPolicy
from guidebot.periodic import FixedJob, PeriodicJob
from guidebot.scheduler import GiveWay, _logged


class Flag:
    def __init__(self) -> None:
        self.value = False

    def __call__(self) -> bool:
        return self.value


class Ticks:
    def __init__(self) -> None:
        self.value = 0.0

    def __call__(self) -> float:
        return self.value


def test_a_job_is_put_off_while_busy_for_at_most_the_longest_deferral():
    busy, now = Flag(), Ticks()
    give_way = GiveWay(busy, longest=60.0, now=now)
    assert give_way.lets("metrics-rollup")  # nothing going on: runs
    busy.value = True
    assert not give_way.lets("metrics-rollup")  # first put off at 0
    now.value = 59.0
    assert not give_way.lets("metrics-rollup")
    now.value = 60.0
    assert give_way.lets("metrics-rollup")  # put off long enough: runs though still busy
    now.value = 61.0
    assert not give_way.lets("metrics-rollup")  # and the count starts again
    busy.value = False
    assert give_way.lets("metrics-rollup")


def test_each_job_is_put_off_on_its_own_clock():
    busy, now = Flag(), Ticks()
    give_way = GiveWay(busy, longest=10.0, now=now)
    busy.value = True
    assert not give_way.lets("metrics-rollup")
    now.value = 8.0
    assert not give_way.lets("retention")
    now.value = 10.0
    assert give_way.lets("metrics-rollup") and not give_way.lets("retention")


async def test_only_jobs_that_give_way_skip_their_tick():
    runs: list[str] = []

    async def rollup() -> None:
        runs.append("rollup")

    async def tick() -> None:
        runs.append("tick")

    busy = Flag()
    busy.value = True
    give_way = GiveWay(busy)
    await _logged(FixedJob("metrics-rollup", rollup, every_seconds=5, gives_way=True), give_way)()
    await _logged(FixedJob("sop-tick", tick, every_seconds=5), give_way)()
    assert runs == ["tick"]
    busy.value = False
    await _logged(FixedJob("metrics-rollup", rollup, every_seconds=5, gives_way=True), give_way)()
    assert runs == ["tick", "rollup"]


def test_binding_keeps_whether_a_job_gives_way():
    async def job(clock) -> None:
        return None

    fixed = PeriodicJob("x", job, every_seconds=5, gives_way=True).bind({"clock": object()})
    assert fixed.gives_way


def test_the_bookkeeping_jobs_give_way_and_the_senders_do_not():
    from guidebot.runtime import DECLARED_JOBS

    giving_way = {job.id for job in DECLARED_JOBS if job.gives_way}
    assert giving_way == {"metrics-rollup", "cohorts-refresh", "retention", "refetch-profiles"}


def test_a_stream_the_worker_keeps_up_with_is_a_burst_and_a_trickle_is_not():
    policy, now = WorkerPolicy(busy_after=1.0, busy_rate=50.0), Ticks()
    burst = Burst(policy, now=now)
    # A trickle: an event, then an empty inbox, ten times a second.
    for _ in range(30):
        burst.note(1)
        burst.note(0)
        now.value += 0.1
    assert not burst
    # A livestream's adds: each claim finds a few, and the next pass finds the inbox empty;
    # never a second without a break, but 60 events in the last second.
    for _ in range(20):
        burst.note(3)
        burst.note(0)
        now.value += 0.05
    assert burst
    # It ends once a second has passed with too few.
    now.value += 1.01
    burst.note(1)
    assert not burst


def test_working_without_a_break_is_a_burst_whatever_the_rate():
    policy, now = WorkerPolicy(busy_after=1.0, busy_rate=50.0), Ticks()
    burst = Burst(policy, now=now)
    burst.note(1)
    now.value += 0.5
    burst.note(1)
    assert not burst
    now.value += 0.6
    burst.note(1)
    assert burst  # 1.1 s of claims that each found something
    burst.note(0)
    assert not burst
