"""Which WeCom call goes first when the budget is short: priorities, deadlines, per-API lanes.

Every call has a :class:`Priority`. URGENT calls are the ones a customer is waiting on with a
clock running (a welcome's WelcomeCode lives 20 s) and the access token every call needs;
NORMAL calls are interactive or API-driven; BACKGROUND calls can wait (profile fetches, tags,
reminders, reconciliation, directory sync). A call may also carry a deadline: past it the
call is not made.

A call can wait in two places, and both serve waiters by priority, then by deadline (earliest
first, none last), then in arrival order:

* its API's :class:`Lane`: WeCom's budget of one corp for one API (doc 90454: 10 000 calls a
  minute per API) kept as a token bucket, so a profile fetch never spends a welcome's budget.
  A waiter leaves with a token, or without one once its deadline has passed, or, below
  URGENT, when WeCom has just refused the API (45009) and the lane is cooling down.
* the client's :class:`Gate`: a bound on calls in flight. Below URGENT, calls may not take the
  last ``reserve`` places, so a welcome never queues behind slow profile fetches.

Waiting is on asyncio futures; a lane runs one pump task while it has waiters, sleeping until
its next token (on the injected clock, so tests run on a fake one). No polling.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from enum import Enum, IntEnum

from guidebot.clock import Clock
from guidebot.wecom.ratelimit import TokenBucket

__all__ = ["Admission", "Gate", "Lane", "Priority", "Rank"]


class Priority(IntEnum):
    """Lower goes first."""

    URGENT = 0
    NORMAL = 1
    BACKGROUND = 2


# (priority, deadline or +inf, arrival number): the order waiters are served in.
Rank = tuple[int, float, int]


def rank(priority: Priority, deadline: float | None, arrival: int) -> Rank:
    return (int(priority), math.inf if deadline is None else deadline, arrival)


class Admission(Enum):
    GRANTED = "granted"
    EXPIRED = "expired"  # the deadline passed while waiting; no token was taken
    COOLING = "cooling"  # the API is cooling down after a 45009 and the call is not URGENT


class Lane:
    """One API's budget: a token bucket whose waiters are served by rank, and its cooldown."""

    __slots__ = ("_clock", "_pump", "_waiting", "bucket", "cooling_until", "probe")

    def __init__(self, per_minute: int, *, clock: Clock) -> None:
        self.bucket = TokenBucket(per_minute, clock=clock)
        self.cooling_until = 0.0
        # While cooling, URGENT calls still try, one at a time: the first that WeCom accepts
        # ends the cooldown, and a real ban costs one refused call at a time, not a burst.
        self.probe = asyncio.Lock()
        self._clock = clock
        self._waiting: list[tuple[Rank, asyncio.Future[Admission]]] = []
        self._pump: asyncio.Task[None] | None = None

    def cooling(self, now: float) -> float:
        """Seconds of cooldown left (0 when none)."""
        return max(0.0, self.cooling_until - now)

    def cool(self, until: float) -> None:
        """Hold back everything below URGENT until ``until``; waiters below URGENT leave now."""
        self.cooling_until = until
        for queued, future in self._waiting:
            if queued[0] != Priority.URGENT and not future.done():
                future.set_result(Admission.COOLING)

    def warm(self) -> None:
        """WeCom accepted a call again: the cooldown is over."""
        self.cooling_until = 0.0

    async def acquire(self, rank: Rank) -> Admission:
        """Wait for a token: GRANTED, or EXPIRED / COOLING without one."""
        while self._waiting and self._waiting[0][1].done():
            heapq.heappop(self._waiting)
        if not self._waiting and self.bucket.delay() <= 0:
            self.bucket.take()
            return Admission.GRANTED
        future: asyncio.Future[Admission] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (rank, future))
        if self._pump is None:
            self._pump = asyncio.create_task(self._run())
        return await future  # cancelled: the pump skips it

    async def _run(self) -> None:
        try:
            while True:
                while self._waiting and self._waiting[0][1].done():
                    heapq.heappop(self._waiting)
                if not self._waiting:
                    return
                delay = self.bucket.delay()
                if delay > 0:
                    # One sleep per token, then grant: like TokenBucket.acquire, this trusts
                    # the sleep rather than re-reading the clock in a loop.
                    await self._clock.sleep(delay)
                self._grant_one()
        except BaseException as exc:
            # Nobody is left waiting on a pump that died (cancelled at shutdown, say).
            for _, future in self._waiting:
                if future.done():
                    continue
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                else:
                    future.cancel()
            self._waiting.clear()
            if not isinstance(exc, Exception):
                raise
        finally:
            self._pump = None

    def _grant_one(self) -> None:
        now = self._clock.time()
        while self._waiting:
            queued, future = heapq.heappop(self._waiting)
            if future.done():
                continue
            if queued[1] <= now:
                future.set_result(Admission.EXPIRED)
                continue
            if queued[0] != Priority.URGENT and self.cooling_until > now:
                future.set_result(Admission.COOLING)
                continue
            self.bucket.take()
            future.set_result(Admission.GRANTED)
            return


class Gate:
    """At most ``capacity`` calls in flight; the last ``reserve`` places are for URGENT calls."""

    __slots__ = ("_waiting", "capacity", "in_flight", "reserve")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.capacity = capacity
        self.reserve = min(capacity - 1, max(1, capacity // 4))
        self.in_flight = 0
        self._waiting: list[tuple[Rank, asyncio.Future[None]]] = []

    def _room(self, priority: int) -> bool:
        limit = self.capacity if priority == Priority.URGENT else self.capacity - self.reserve
        return self.in_flight < limit

    async def enter(self, rank: Rank) -> None:
        while self._waiting and self._waiting[0][1].done():
            heapq.heappop(self._waiting)
        # Ahead of every waiter (the first waiter is the best one, and it found no room).
        if (not self._waiting or rank < self._waiting[0][0]) and self._room(rank[0]):
            self.in_flight += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (rank, future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # admitted, then cancelled
                self.leave()
            raise

    def leave(self) -> None:
        self.in_flight -= 1
        while self._waiting:
            queued, future = self._waiting[0]
            if future.done():
                heapq.heappop(self._waiting)
                continue
            if not self._room(queued[0]):
                return
            heapq.heappop(self._waiting)
            self.in_flight += 1
            future.set_result(None)
