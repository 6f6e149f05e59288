"""Transactions that check and then write the same thing take turns.

On SQLite every transaction begins IMMEDIATE, so one writer at a time already does this. On
PostgreSQL (READ COMMITTED) two transactions could both count 29 of a limit of 30 and both
go on: each first waits for a transaction-scoped advisory lock per name, held until it ends.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession


def lock_id(name: str) -> int:
    """A signed 64-bit advisory lock key for a name."""
    digest = hashlib.sha256(b"guidebot/" + name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def take_turns(session: AsyncSession, *names: str) -> None:
    """Wait until no other open transaction holds any of these names (PostgreSQL)."""
    if session.bind.dialect.name != "postgresql":
        return
    for name in sorted(set(names)):  # one order everywhere: no deadlocks
        await session.execute(select(func.pg_advisory_xact_lock(lock_id(name))))
