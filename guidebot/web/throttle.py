"""Sign-in attempts limited per account name and per client address.

A password guesser gets a few tries, then waits: after `per_user` failures within `window` for
one username, or `per_address` from one client address (higher: a store's office shares one),
further attempts are refused until the oldest failure ages out, whether or not their password
is right. A successful sign-in clears its username. The record is per process and bounded in
size: an instance forgets on restart, and several instances each allow their own tries (still
a handful of guesses, not thousands).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from datetime import datetime, timedelta


class LoginThrottle:
    def __init__(
        self,
        *,
        per_user: int = 5,
        per_address: int = 20,
        window: timedelta = timedelta(minutes=15),
        max_keys: int = 10_000,
    ) -> None:
        self.limits = {"user": per_user, "addr": per_address}
        self.window = window
        self._max_keys = max_keys
        self._failures: OrderedDict[str, deque[datetime]] = OrderedDict()

    @staticmethod
    def keys(username: str, address: str | None) -> list[str]:
        return [f"user:{username.strip().lower()}", f"addr:{address or '?'}"]

    def retry_after(self, keys: list[str], now: datetime) -> timedelta | None:
        """How long these keys must wait before another attempt, or None if they may try."""
        waits = []
        for key in keys:
            failures = self._recent(key, now)
            if len(failures) >= self.limits[key.partition(":")[0]]:
                waits.append(failures[0] + self.window - now)
        return max(waits) if waits else None

    def failed(self, keys: list[str], now: datetime) -> None:
        for key in keys:
            failures = self._recent(key, now)
            failures.append(now)
            self._failures[key] = failures
            self._failures.move_to_end(key)
        while len(self._failures) > self._max_keys:  # forget the least recently failed
            self._failures.popitem(last=False)

    def succeeded(self, username: str) -> None:
        self._failures.pop(self.keys(username, None)[0], None)

    def _recent(self, key: str, now: datetime) -> deque[datetime]:
        failures = self._failures.get(key, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            self._failures.pop(key, None)
        return failures
