"""The tables of the community steps (`group_message`, `moment_task`), which are not per
customer: a cron playbook's occurrence plans one row per (step, owner or guide), never one per
customer.

* `sop_group_sends`: one row per (playbook, step, occurrence, userid), UNIQUE, so a replayed
  occurrence or a second instance plans nothing twice. `userid` is the groups' owner for a
  `group_message` (one add_msg_template with chat_type group per owner, to the groups the
  filter picked) or the guide for a `moment_task` (one add_moment_task per guide, so its link
  carries the post). The row is `sending` and committed before the WeCom call (architecture
  rule 6); a row found `sending` after a crash is looked up in WeCom or marked `unknown`,
  never resent. `sent`: WeCom has the task and the guide has to confirm (or publish) it in the
  client; `done` when WeCom says they did.
* `sop_group_send_chats`: one row per (send, group): the groups picked, and what
  get_groupmsg_send_result said of each (status 1 sent, 3 over the group's cap; WeCom lists
  only sent groups, so a group it never lists stays 0).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from guidebot.db.base import Base, BigId, UTCDateTime


class GroupSendStatus:
    PENDING = "pending"  # waiting for due_at
    SENDING = "sending"  # committed before the WeCom call: never resent blindly
    SENT = "sent"  # WeCom has the task; the guide confirms (group) or publishes (Moments)
    DONE = "done"  # WeCom says the owner sent it / the guide published it
    EXPIRED = "expired"  # not sent before its expire_after (an outage)
    FAILED = "failed"  # WeCom refused it for good; `reason` says why
    UNKNOWN = "unknown"  # interrupted mid-call and not found in WeCom: shown, never resent
    # HQ stopped the playbook (paused, retired, replaced) before the task ended: a pending row
    # never sent, or a Moments task cancelled in WeCom before the guide published
    # (guidebot.sop.group_cancel); not missed, and out of the guide's figures.
    CANCELLED = "cancelled"

    OPEN = (PENDING, SENDING, SENT)
    ALL = (PENDING, SENDING, SENT, DONE, EXPIRED, FAILED, UNKNOWN, CANCELLED)
    # Reached WeCom: counted as sent (assigned) in the figures.
    REACHED = (SENT, DONE)


class SopGroupSend(Base):
    __tablename__ = "sop_group_sends"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    playbook_id: Mapped[str] = mapped_column(String(64))
    playbook_version: Mapped[int] = mapped_column(Integer)
    step_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))  # group_message | moment_task
    occurrence: Mapped[str] = mapped_column(String(64))
    userid: Mapped[str] = mapped_column(String(64))  # the owner (group) or the guide (Moments)
    store_id: Mapped[int | None] = mapped_column(Integer)
    content: Mapped[str | None] = mapped_column(String(255))  # the library item's key or id
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default=GroupSendStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str | None] = mapped_column(Text)  # the text as sent
    link_url: Mapped[str | None] = mapped_column(Text)  # its tracked link: unique to the row
    wecom_msgid: Mapped[str | None] = mapped_column(String(128))  # msgid, or the Moments jobid
    moment_id: Mapped[str | None] = mapped_column(String(128))
    reach: Mapped[int | None] = mapped_column(Integer)  # customers a published post was shown to
    reason: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # when marked `sending`
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("playbook_id", "step_id", "occurrence", "userid"),
        Index("ix_sop_group_sends_status_due", "status", "due_at"),
        Index("ix_sop_group_sends_user", "userid", "due_at"),
    )


class SopGroupSendChat(Base):
    __tablename__ = "sop_group_send_chats"

    send_id: Mapped[int] = mapped_column(ForeignKey("sop_group_sends.id"), primary_key=True)
    chat_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[int] = mapped_column(Integer, default=0)  # WeCom's: 0 not sent, 1 sent, 3 cap
    send_time: Mapped[datetime | None] = mapped_column(UTCDateTime)


__all__ = ["GroupSendStatus", "SopGroupSend", "SopGroupSendChat"]
