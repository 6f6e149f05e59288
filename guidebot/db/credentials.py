"""WeCom access tokens and JS-SDK tickets shared by every instance through the database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text, or_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from guidebot.db.base import Base, UTCDateTime
from guidebot.db.engine import upsert_insert
from guidebot.wecom.credentials import Credential


class WeComCredential(Base):
    __tablename__ = "wecom_credentials"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DatabaseCredentialStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def get(self, name: str) -> Credential | None:
        async with self._sessions() as session:
            row = await session.get(WeComCredential, name)
            if row is None or row.value is None or row.expires_at is None:
                return None
            return Credential(row.value, row.expires_at)

    async def try_lease(self, name: str, owner: str, now: datetime, until: datetime) -> bool:
        async with self._sessions() as session, session.begin():
            await self._ensure_row(session, name)
            # One conditional UPDATE is the arbiter: it succeeds for exactly one contender.
            result = await session.execute(
                update(WeComCredential)
                .where(
                    WeComCredential.name == name,
                    or_(
                        WeComCredential.lease_owner.is_(None),
                        WeComCredential.lease_owner == owner,
                        WeComCredential.lease_until <= now,
                    ),
                )
                .values(lease_owner=owner, lease_until=until)
            )
            return result.rowcount == 1

    async def put(self, name: str, credential: Credential, owner: str) -> None:
        async with self._sessions() as session, session.begin():
            await self._ensure_row(session, name)
            await session.execute(
                update(WeComCredential)
                .where(WeComCredential.name == name)
                .values(value=credential.value, expires_at=credential.expires_at)
            )
            await self._release(session, name, owner)

    async def release(self, name: str, owner: str) -> None:
        async with self._sessions() as session, session.begin():
            await self._release(session, name, owner)

    async def release_all(self) -> int:
        """Every refresh lease, whoever holds it (SQLite at start-up: the one process that
        could hold one is dead, and a token must not wait out its lease). The leases freed."""
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(WeComCredential)
                .where(WeComCredential.lease_owner.is_not(None))
                .values(lease_owner=None, lease_until=None)
            )
            return result.rowcount

    async def discard(self, name: str, value: str) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(WeComCredential)
                .where(WeComCredential.name == name, WeComCredential.value == value)
                .values(value=None, expires_at=None)
            )

    @staticmethod
    async def _release(session: AsyncSession, name: str, owner: str) -> None:
        await session.execute(
            update(WeComCredential)
            .where(WeComCredential.name == name, WeComCredential.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
        )

    @staticmethod
    async def _ensure_row(session: AsyncSession, name: str) -> None:
        insert = upsert_insert(session.bind.dialect.name)
        await session.execute(insert(WeComCredential).values(name=name).on_conflict_do_nothing())
