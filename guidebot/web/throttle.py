"""Sign-in attempts limited per account name and per client address.

A password guesser gets a few tries, then waits: after `per_user` failures within `window` for
one username, or `per_address` from one client address (higher: a store's office shares one),
further attempts are refused until the oldest failure ages out, whether or not their password
is right. A successful sign-in clears its username. The record is per process and bounded in
size: an instance forgets on restart, and several instances each allow their own tries (still
a handful of guesses, not thousands).

Behind a load balancer every peer is the balancer, so the address counted is the client's as
the trusted proxies report it (`client_address`); otherwise twenty wrong passwords from anyone
would lock everyone out.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from collections.abc import Iterable
from datetime import datetime, timedelta


def client_address(peer: str | None, forwarded_for: Iterable[str], trusted: Iterable[str]) -> str:
    """Who sent the request: the peer, unless it is a trusted proxy; then the nearest
    X-Forwarded-For hop (read from the right) that is not one. Hops further left than that
    were written by the client and prove nothing."""
    networks = [ipaddress.ip_network(network) for network in trusted]
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",")]
    address = peer or "?"
    while hops and _within(address, networks):
        address = hops.pop() or "?"
    return address


def _within(address: str, networks: list) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


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
