"""The inbox: every acknowledged callback, stored before WeCom hears 200."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from guidebot.db.base import Base, BigId, UTCDateTime


class InboxStatus:
    PENDING = "pending"  # waiting for the worker (or for its next retry at next_attempt_at)
    PROCESSING = "processing"  # claimed by a worker until lease_until
    DONE = "done"
    FAILED = "failed"  # parked after too many attempts; `guidebot inbox replay --failed`


class InboxEvent(Base):
    __tablename__ = "inbox_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    dedupe_key: Mapped[str] = mapped_column(String(80), unique=True)
    kind: Mapped[str] = mapped_column(String(80))
    customer_key: Mapped[str | None] = mapped_column(String(80))
    payload: Mapped[str] = mapped_column(Text)  # the decrypted plaintext XML
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default=InboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_inbox_events_due", "status", "next_attempt_at", "id"),
        Index("ix_inbox_events_customer", "customer_key", "id"),
    )
