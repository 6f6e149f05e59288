"""How the inbox worker works through the inbox: its claims, retries, batches and lanes."""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True, slots=True)
class WorkerPolicy:
    batch_size: int = 200
    concurrency: int = 8
    lease: timedelta = timedelta(minutes=2)
    max_attempts: int = 8
    first_backoff: float = 2.0  # seconds; doubles per attempt
    max_backoff: float = 300.0
    poll_interval: float = 1.0
    # Lapsed leases (a worker that died mid-event) are looked for this often, not before every
    # batch: under a burst each batch is an event or two, and the look was a transaction each.
    reap_every: timedelta = timedelta(seconds=10)
    # Events handled in one transaction, a savepoint each (`_run_batched`): at most this many,
    # gathered for at most batch_seconds, held for at most batch_hold_seconds (the inbox writer
    # waits for the connection meanwhile on SQLite). 1: a transaction per event. With batches,
    # `concurrency` is how many lanes of them run at once, each over its own customers.
    batch_events: int = 1
    batch_seconds: float = 0.05  # reading what the batch's handlers need from outside
    reads_ahead: int = 8  # events whose WeCom reads are in flight at once (batches.Reads)
    batch_hold_seconds: float = 0.25  # holding the transaction (the rest waits for the next)
    # Working this long without once finding the inbox empty is a burst (`busy`): at a steady
    # trickle each event is done before the next arrives and the worker idles in between.
    busy_after: float = 1.0
    # ...and so is a stream of this many events a second (over the last second), which a
    # worker that keeps up finds the inbox empty between: a livestream's 166 adds a second.
    # The metrics rollup's runs were a tenth of the server's CPU at 166/s on PostgreSQL.
    busy_rate: float = 50.0
    # Events that came in (or fell due) this recently are claimed before older ones, so a
    # burst's adds are handled while their WelcomeCodes live (guidebot.intake.claims).
    fresh_first: timedelta = timedelta(seconds=15)

    def backoff(self, attempts: int) -> timedelta:
        seconds = min(self.max_backoff, self.first_backoff * 2 ** max(0, attempts - 1))
        return timedelta(seconds=seconds * random.uniform(0.8, 1.2))


class Burst:
    """Whether the worker is in a burst of adds (`WorkerPolicy.busy_after`, `busy_rate`), from
    what each of its claims found; real time, as the scheduler's own."""

    WINDOW = 1.0  # seconds of claims the rate is taken over

    def __init__(self, policy: WorkerPolicy, now=time.monotonic) -> None:
        self._policy, self._now = policy, now
        self._working_since: float | None = None  # None while the inbox is empty
        self._claims: deque[tuple[float, int]] = deque()  # (when, events) within WINDOW
        self._recent = 0  # the events of `_claims`

    def note(self, found: int) -> None:
        now = self._now()
        if not found:
            self._working_since = None
        elif self._working_since is None:
            self._working_since = now
        if found:
            self._claims.append((now, found))
            self._recent += found
        self._forget(now)

    def __bool__(self) -> bool:
        now = self._now()
        since = self._working_since
        if since is not None and now - since >= self._policy.busy_after:
            return True
        self._forget(now)
        return self._recent >= self._policy.busy_rate * self.WINDOW

    def _forget(self, now: float) -> None:
        while self._claims and now - self._claims[0][0] > self.WINDOW:
            self._recent -= self._claims.popleft()[1]
