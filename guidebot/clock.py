"""Time as a dependency: code asks a Clock what time it is and sleeps on it, so tests and
`sop simulate` can move it. Every wait in guidebot that stands for time passing (a retry's
backoff, pacing, polling for another instance's token) goes through `Clock.sleep`; the few that
are real by nature (a socket, a file watcher, a background loop beside real I/O) say why."""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

# Dates outside these years are typos, and near year 1 or 9999 a UTC offset or the next day
# overflows Python's datetime: the API and the reports refuse them.
FIRST_YEAR, LAST_YEAR = 1970, 9998


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, tz-aware UTC."""

    def time(self) -> float:
        """The current instant as epoch seconds."""

    async def sleep(self, seconds: float) -> None:
        """Let `seconds` pass on this clock."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock:
    """A clock that moves only when told to, or slept on.

    `sleep(s)` records `s` in `slept`, yields for a sliver of real time (`real_share` of `s`,
    at most 20 ms: a caller polling for work done over real I/O, another instance's token
    refresh, lets it progress while fake time passes; 0 only lets other tasks run), and wakes
    with the clock at `s` after the moment the sleep began (rounded up to the microsecond: never
    early), unless something moved it further meanwhile: two tasks sleeping side by side do not
    add up, as on a real clock.
    """

    REAL_MAX = 0.02

    def __init__(self, start: datetime, *, real_share: float = 1 / 50) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs a tz-aware start")
        self._now = start.astimezone(UTC)
        self.real_share = real_share
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self._now

    def time(self) -> float:
        return self._now.timestamp()

    def advance(self, delta: timedelta | float) -> None:
        self._now += delta if isinstance(delta, timedelta) else timedelta(seconds=delta)

    def set(self, instant: datetime | float) -> None:
        """Put the clock at `instant` (a tz-aware datetime, or epoch seconds)."""
        if isinstance(instant, datetime):
            self._now = instant.astimezone(UTC)
        else:
            self._now = datetime.fromtimestamp(instant, UTC)

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, float(seconds))
        self.slept.append(seconds)
        until = self._now + timedelta(microseconds=math.ceil(seconds * 1_000_000))
        await asyncio.sleep(min(seconds * self.real_share, self.REAL_MAX))
        if until > self._now:
            self._now = until


def parse_instant(value: Any, name: str) -> datetime:
    """An ISO 8601 instant with a UTC offset ("Z" or "+08:00"), in UTC; else ValueError naming
    `name`. A naive time is refused: which zone it meant is a guess."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name!r} must be an ISO 8601 date-time with a UTC offset")
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text)  # since Python 3.11 it reads "Z" too
    except ValueError:
        raise ValueError(f"{name!r} {value!r} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{name!r} {value!r} has no UTC offset (add Z or +08:00)")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+14:00 is before the first representable UTC instant
        raise ValueError(f"{name!r} {value!r} is out of range") from None
