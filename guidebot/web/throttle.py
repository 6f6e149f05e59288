"""Sign-in attempts limited per account name and per client address.

A password guesser gets a few tries, then waits: after `per_user` failures within `window` for
one username, or `per_address` from one client address (higher: a store's office shares one),
further attempts are refused until the oldest failure ages out, whether or not their password
is right. A successful sign-in clears its username. Failures are rows in the database, so
every instance behind the load balancer counts the same tries and a restart forgets nothing;
rows older than the window are deleted as new ones are written.

Behind a load balancer every peer is the balancer, so the address counted is the client's as
the trusted proxies report it (`client_address`); otherwise twenty wrong passwords from anyone
would lock everyone out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import Index, String, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from guidebot.db.base import Base, BigId, UTCDateTime


class LoginFailure(Base):
    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key_failed_at", "key", "failed_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200))  # "user:<name>" or "addr:<address>"
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
    ) -> None:
        self.limits = {"user": per_user, "addr": per_address}
        self.window = window

    @staticmethod
    def keys(username: str, address: str | None) -> list[str]:
        # Bounded to the column: an address or a name longer than that is no one's.
        return [f"user:{username.strip().lower()}"[:200], f"addr:{address or '?'}"[:200]]

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

    async def failed(self, session: AsyncSession, keys: list[str], now: datetime) -> None:
        aged_out = LoginFailure.failed_at <= now - self.window
        await session.execute(delete(LoginFailure).where(aged_out))
        await session.execute(insert(LoginFailure), [{"key": k, "failed_at": now} for k in keys])

    async def succeeded(self, session: AsyncSession, username: str) -> None:
        await session.execute(
            delete(LoginFailure).where(LoginFailure.key == self.keys(username, None)[0])
        )
