"""The bot's answers, one row per message a guide wrote (keyed by WeCom's MsgId).

The row is the lock that makes every message answered at most once: the callback's passive
reply and the worker's message/send both start by inserting it, and whoever inserts first owns
the answer. Its `status` then records how the answer went out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from guidebot.db.base import Base, UTCDateTime


class ReplyStatus:
    CLAIMED = "claimed"  # the callback is computing a passive reply (or died doing so)
    PASSIVE = "passive"  # answered in the callback's HTTP response
    PENDING = "pending"  # queued for message/send (also: over the member's minute limit)
    SENDING = "sending"  # committed before message/send
    SENT = "sent"
    UNKNOWN = "unknown"  # message/send may or may not have gone out; not resent
    FAILED = "failed"  # WeCom refused it
    DROPPED = "dropped"  # queued too long (the member's limit); a log line says so

    # message/send calls that count toward WeCom's 30-a-minute limit per member.
    COUNTED = (SENDING, SENT, UNKNOWN)


class BotReply(Base):
    __tablename__ = "bot_replies"

    msg_id: Mapped[str] = mapped_column(String(32), primary_key=True)  # WeCom MsgId (64-bit)
    guide_userid: Mapped[str] = mapped_column(String(64))
    request: Mapped[str] = mapped_column(Text)  # what the guide wrote
    reply: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # replies.Reply.as_json()
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_bot_replies_guide_sent", "guide_userid", "sent_at"),
        Index("ix_bot_replies_status", "status", "created_at"),
    )
