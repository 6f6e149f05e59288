"""Write and read the audit trail."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.audit.models import AuditEntry


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it: `name` as the trail shows it, their role, and the address they came from."""

    name: str
    role: str
    ip: str | None = None

    @classmethod
    def command_line(cls) -> Actor:
        """An operator at the `guidebot` command (the OS account that ran it)."""
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry in a bare container
            user = "unknown"
        return cls(f"cli:{user}"[:100], "cli")


def plain(value: Any) -> Any:
    """A value as JSON can hold it (instants as ISO text, sets as sorted lists)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(plain(v) for v in value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return value


def row_values(row: Any, *names: str) -> dict[str, Any] | None:
    """The named columns of an ORM row (every column when none are named), JSON-ready."""
    if row is None:
        return None
    columns = names or tuple(c.key for c in row.__table__.columns)
    return {name: plain(getattr(row, name)) for name in columns}


def record(
    session: AsyncSession,
    actor: Actor,
    action: str,
    *,
    target: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    now: datetime,
) -> AuditEntry:
    """Add the entry to `session`: it commits with the change it describes."""
    entry = AuditEntry(
        at=now,
        actor=actor.name[:100],
        role=actor.role[:16],
        ip=(actor.ip or None) and actor.ip[:64],
        action=action[:64],
        target=None if target is None else str(target)[:255],
        before=plain(before),
        after=plain(after),
    )
    session.add(entry)
    return entry


def audit_query(
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    actor: str | None = None,
    action: str | None = None,
) -> Select[tuple[AuditEntry]]:
    """Entries newest first: at in [start, end), by `actor`, of `action` (or its prefix
    ending in a dot: "content." is every content action)."""
    query = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
    if start is not None:
        query = query.where(AuditEntry.at >= start)
    if end is not None:
        query = query.where(AuditEntry.at < end)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if action:
        if action.endswith("."):
            query = query.where(AuditEntry.action.startswith(action, autoescape=True))
        else:
            query = query.where(AuditEntry.action == action)
    return query


async def record_in(
    sessions: async_sessionmaker[AsyncSession],
    actor: Actor,
    action: str,
    *,
    target: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    now: datetime,
) -> None:
    """The entry in a transaction of its own: for a change its domain committed itself."""
    async with sessions() as session, session.begin():
        record(session, actor, action, target=target, before=before, after=after, now=now)
