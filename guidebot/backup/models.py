"""backup_marks: when the backup this database came from was taken, and when it was restored."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from guidebot.db.base import Base, UTCDateTime

TAKEN = "taken"  # written just before the copy starts: the copy carries it
RESTORED = "restored"  # written after a restore was reconciled


class BackupMark(Base):
    __tablename__ = "backup_marks"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
