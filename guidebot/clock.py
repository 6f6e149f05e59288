"""Time as a dependency: domain code asks a Clock, so tests and `sop simulate` can move it."""

from __future__ import annotations

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


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def time(self) -> float:
        return time.time()


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs a tz-aware start")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def time(self) -> float:
        return self._now.timestamp()

    def advance(self, delta: timedelta | float) -> None:
        self._now += delta if isinstance(delta, timedelta) else timedelta(seconds=delta)

    def set(self, instant: datetime) -> None:
        self._now = instant.astimezone(UTC)


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
