"""Client-side pacing for WeCom API calls: a token bucket on an injected clock.

WeCom limits each corp to 10 000 calls per minute per API (and bans the API for the rest of the
window with errcode 45009 when that is exceeded). The client paces itself below that instead of
finding the limit by hitting it.

The bucket is kept in its GCRA form (a "theoretical arrival time"), so each caller reserves its
slot synchronously and then sleeps until it; concurrent callers queue in arrival order with no
thundering herd and no lock. The bucket holds ``burst`` tokens and refills so that any 60-second
window admits at most ``per_minute`` calls.
"""

from __future__ import annotations

from guidebot.clock import Clock, SystemClock

__all__ = ["TokenBucket"]


class TokenBucket:
    """At most ``per_minute`` acquisitions in any 60 s window, ``burst`` of them back to back.

    ``clock`` tells the time and sleeps (tests pass a fake one).
    """

    def __init__(
        self,
        per_minute: int,
        *,
        burst: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.per_minute = per_minute
        # About one second's worth of calls may go out at once; never more than the limit.
        self.burst = min(per_minute, burst if burst is not None else max(1, per_minute // 60))
        if self.burst < 1:
            raise ValueError("burst must be at least 1")
        # A full burst, then one call per interval: any [t, t + 60 s) holds at most per_minute.
        self.interval = 60.0 / (per_minute - self.burst + 1)
        self._tolerance = (self.burst - 1) * self.interval
        self._clock = clock or SystemClock()
        self._tat: float | None = None  # theoretical arrival time of the next call

    def delay(self) -> float:
        """Seconds the next acquisition would wait (0 when a token is available now)."""
        now = self._clock.time()
        tat = now if self._tat is None else max(self._tat, now)
        return max(0.0, tat - self._tolerance - now)

    def take(self) -> float:
        """Reserve the next token now; the seconds until it may be used (0 when at once)."""
        now = self._clock.time()
        tat = now if self._tat is None else max(self._tat, now)
        self._tat = tat + self.interval
        return max(0.0, tat - self._tolerance - now)

    async def acquire(self) -> None:
        """Take one token, sleeping until it is available. The slot is reserved on entry."""
        wait = self.take()
        if wait > 0:
            await self._clock.sleep(wait)
