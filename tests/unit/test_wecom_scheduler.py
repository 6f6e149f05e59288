"""The call scheduler's waiting rooms on their own: the gate's places and a lane's pump."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from guidebot.clock import FakeClock
from guidebot.wecom.scheduler import Admission, Gate, Lane, Priority, rank


async def test_the_gate_keeps_its_last_places_for_urgent_calls_and_serves_by_rank():
    gate = Gate(4)
    assert gate.reserve == 1
    for arrival in range(3):
        await gate.enter(rank(Priority.BACKGROUND, None, arrival))
    order: list[str] = []

    async def call(name: str, priority: Priority, arrival: int) -> None:
        await gate.enter(rank(priority, None, arrival))
        order.append(name)

    background = asyncio.create_task(call("background", Priority.BACKGROUND, 3))
    normal = asyncio.create_task(call("normal", Priority.NORMAL, 4))
    await asyncio.sleep(0)
    assert order == [] and gate.in_flight == 3  # the fourth place is not theirs
    await call("urgent", Priority.URGENT, 5)  # it is an urgent call's, at once
    assert order == ["urgent"] and gate.in_flight == 4
    for _ in range(3):  # three calls end: one place each for NORMAL, then BACKGROUND
        gate.leave()
    await asyncio.gather(background, normal)
    assert order == ["urgent", "normal", "background"]


async def test_a_call_admitted_to_the_gate_then_cancelled_gives_its_place_back():
    gate = Gate(2)
    await gate.enter(rank(Priority.URGENT, None, 0))
    await gate.enter(rank(Priority.URGENT, None, 1))
    waiter = asyncio.create_task(gate.enter(rank(Priority.URGENT, None, 2)))
    gone = asyncio.create_task(gate.enter(rank(Priority.URGENT, None, 3)))
    await asyncio.sleep(0)
    gone.cancel()  # cancelled while waiting: simply forgotten
    gate.leave()  # the place goes to `waiter`...
    waiter.cancel()  # ...which is cancelled before it runs: the place comes back
    for task in (waiter, gone):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert gate.in_flight == 1
    await gate.enter(rank(Priority.URGENT, None, 4))  # so the next call goes at once
    assert gate.in_flight == 2


async def test_a_lane_whose_pump_fails_fails_its_waiters_instead_of_leaving_them_waiting():
    class BrokenClock(FakeClock):
        async def sleep(self, seconds: float) -> None:
            raise RuntimeError("no sleep here")

    lane = Lane(60, clock=BrokenClock(datetime.fromtimestamp(0, UTC)))
    assert await lane.acquire(rank(Priority.URGENT, None, 0)) is Admission.GRANTED
    with pytest.raises(RuntimeError, match="no sleep here"):
        await lane.acquire(rank(Priority.URGENT, None, 1))
