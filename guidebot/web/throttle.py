"""Sign-in attempts limited per account name and per client address, and sign-in kept off the
event loop.

A password guesser gets a few tries, then waits: after `per_user` failures within `window` for
one username, or `per_address` from one client address (higher: a store's office shares one),
further attempts are refused until the oldest failure ages out, whether or not their password
is right. A successful sign-in clears its username. Failures are rows in the database, so
every instance behind the load balancer counts the same tries and a restart forgets nothing;
rows older than the window are deleted as new ones are written.

An attempt is counted before its password is checked (`reserve`): one transaction locks the
attempt's keys, counts them and, if there is room, writes the attempt as a failure, which a
successful check later takes back. Concurrent attempts therefore cannot all slip under the
limit, on one instance or several: on PostgreSQL a transaction-scoped advisory lock per key
serialises them, on SQLite the write lock taken at BEGIN does. The same rows limit other
sign-in steps that cost something, such as the sidebar's WeCom OAuth (`oauth:` keys).

Behind a load balancer every peer is the balancer, so the address counted is the client's as
the trusted proxies report it (`client_address`); otherwise twenty wrong passwords from anyone
would lock everyone out.

scrypt costs tens of milliseconds of CPU, so it runs in a thread
(guidebot.web.accounts.password_matches), and `SignInGate` lets only a few sign-ins work at a
time: neither the hashes nor the sign-ins' database work can then hold up the callbacks WeCom
waits on (on SQLite they share one connection).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Index, String, delete, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from guidebot.db.base import Base, BigId, UTCDateTime
from guidebot.db.turns import take_turns

WINDOW = timedelta(minutes=15)


class LoginFailure(Base):
    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key_failed_at", "key", "failed_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # "user:<name>", "addr:<address>" (sign-in) or "oauth:<address>" (the sidebar's OAuth)
    key: Mapped[str] = mapped_column(String(200))
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


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


def request_address(request, trusted: Iterable[str]) -> str:
    """`client_address` of an aiohttp request."""
    return client_address(request.remote, request.headers.getall("X-Forwarded-For", []), trusted)


def _within(address: str, networks: list) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


@dataclass(frozen=True, slots=True)
class Reservation:
    """An attempt counted in advance (`ids` of its rows), or refused for `wait`."""

    ids: tuple[int, ...] = ()
    wait: timedelta | None = None


class AttemptLimit:
    """At most `limits[prefix]` attempts per key ("<prefix>:<value>") within `window`."""

    def __init__(self, limits: Mapping[str, int], window: timedelta = WINDOW) -> None:
        self.limits = dict(limits)
        self.window = window

    async def retry_after(
        self, session: AsyncSession, keys: list[str], now: datetime
    ) -> timedelta | None:
        """How long these keys must wait before another attempt, or None if they may try."""
        rows = await session.execute(
            select(LoginFailure.key, func.count(), func.min(LoginFailure.failed_at))
            .where(LoginFailure.key.in_(keys), LoginFailure.failed_at > now - self.window)
            .group_by(LoginFailure.key)
        )
        waits = [
            oldest + self.window - now
            for key, failures, oldest in rows
            if failures >= self.limits[key.partition(":")[0]]
        ]
        return max(waits) if waits else None

    async def reserve(self, session: AsyncSession, keys: list[str], now: datetime) -> Reservation:
        """Count one attempt against every key, or refuse it if any key is at its limit.

        Run it in a transaction of its own and commit before the slow part (the password
        check, the WeCom call): the lock is held until then. The rows stay as failures
        unless `release` takes them back.
        """
        await take_turns(session, *(f"attempts/{key}" for key in keys))
        wait = await self.retry_after(session, keys, now)
        if wait is not None:
            return Reservation(wait=wait)
        ours = or_(*(LoginFailure.key.startswith(f"{prefix}:") for prefix in self.limits))
        await session.execute(
            delete(LoginFailure).where(ours, LoginFailure.failed_at <= now - self.window)
        )
        ids = await session.scalars(
            insert(LoginFailure).returning(LoginFailure.id),
            [{"key": key, "failed_at": now} for key in keys],
        )
        return Reservation(ids=tuple(ids))

    async def release(self, session: AsyncSession, reservation: Reservation) -> None:
        """The attempt did not fail after all: it no longer counts."""
        if reservation.ids:
            await session.execute(delete(LoginFailure).where(LoginFailure.id.in_(reservation.ids)))


class LoginThrottle(AttemptLimit):
    def __init__(
        self,
        *,
        per_user: int = 5,
        per_address: int = 20,
        window: timedelta = WINDOW,
    ) -> None:
        super().__init__({"user": per_user, "addr": per_address}, window)

    @staticmethod
    def keys(username: str, address: str | None) -> list[str]:
        # Bounded to the column: an address or a name longer than that is no one's.
        return [f"user:{username.strip().lower()}"[:200], f"addr:{address or '?'}"[:200]]

    async def succeeded(
        self, session: AsyncSession, username: str, reservation: Reservation
    ) -> None:
        """A good password: the name's failures are forgotten and this attempt is no failure."""
        await self.release(session, reservation)
        await session.execute(
            delete(LoginFailure).where(LoginFailure.key == self.keys(username, None)[0])
        )


class Busy(Exception):
    """Too many sign-ins already wait for a turn: answer 503 now rather than queue more."""


class SignInGate:
    """At most `slots` sign-ins work at a time (their database work and scrypt, which runs in a
    thread); up to `max_waiting` more wait their turn, first come first served, and further
    ones raise Busy. Callbacks then never wait behind more than `slots` sign-ins, whether for
    the CPU or for the database connection."""

    def __init__(self, slots: int = 2, max_waiting: int = 256) -> None:
        self._slots = asyncio.Semaphore(slots)
        self.max_waiting = max_waiting
        self.waiting = 0

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        if self.waiting >= self.max_waiting:
            raise Busy()
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self._slots.release()
