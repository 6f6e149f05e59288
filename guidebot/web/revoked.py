"""Sessions ended before their expiry: signing out revokes the cookie on every instance.

Session cookies (the admin's `gb_admin`, the guide's `gb_guide`) are signed and carry a random
nonce. Signing out writes "<kind>:<nonce>" here with the cookie's own expiry; every request
that presents a session looks its nonce up (one primary-key read), so a copy of the cookie
is refused everywhere from then on. A row is useless once its cookie would have expired, and
rows that old are deleted whenever another session is revoked.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from guidebot.db.base import Base, UTCDateTime
from guidebot.db.engine import upsert_insert


class RevokedSession(Base):
    __tablename__ = "revoked_sessions"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)  # "admin:<nonce>", "guide:…"
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


async def revoke(session: AsyncSession, key: str, expires_at: datetime, now: datetime) -> None:
    await session.execute(delete(RevokedSession).where(RevokedSession.expires_at <= now))
    insert = upsert_insert(session.bind.dialect.name)
    await session.execute(
        insert(RevokedSession)
        .values(key=key, expires_at=expires_at)
        .on_conflict_do_nothing(index_elements=["key"])
    )


async def is_revoked(session: AsyncSession, key: str) -> bool:
    found = await session.scalar(select(RevokedSession.key).where(RevokedSession.key == key))
    return found is not None
