"""audit_log: one row per change an HQ operator, a manager or a command made."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from guidebot.db.base import Base, BigId, UTCDateTime


class AuditEntry(Base):
    """Append-only. Pruned only past GUIDEBOT_RETENTION_AUDIT_DAYS (guidebot.privacy)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    # "hq:<account>", "manager:<account>", "hq:admin token", "cli:<os user>"
    actor: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))  # hq | manager | guide | cli
    ip: Mapped[str | None] = mapped_column(String(64))  # None: not over HTTP
    action: Mapped[str] = mapped_column(String(64))  # e.g. "content.update", "privacy.erase"
    target: Mapped[str | None] = mapped_column(String(255))  # what it acted on
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_actor", "actor", "at"),
        Index("ix_audit_log_action", "action", "at"),
    )
