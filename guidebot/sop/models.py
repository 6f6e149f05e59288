"""The SOP engine's tables: enrollments, their task rows, and the date/cron trigger runs.

Per-customer work lives here, never in the scheduler (architecture rule 5):

* `sop_enrollments`: one row per run of a playbook for a guide's customer. The enrollment
  rules are database facts: `scope` is "*" for a once-per-customer playbook (across all the
  customer's guides) or the guide's userid for once-per-relation, and `cycle` counts runs:
  "0" the first, "1" the first re-entry after `reenter_after`, and so on. UNIQUE (playbook,
  scope, customer, cycle) makes two racing enrollers of the same run collide, and a partial
  unique index allows one *active* run per (playbook, scope, customer) at a time. Date and
  cron playbooks key their runs by occurrence (the birthday's date, the cron instant).
* `sop_tasks`: one row per (enrollment, step) with a UTC `due_at`. The tick claims due rows;
  a row is `sending` (committed) before any WeCom call, so a crash never sends twice.
* `sop_trigger_runs`: one row per finished date/cron occurrence, so a periodic job scans the
  relations once per occurrence.
* `sop_missed`: a pair that matched a playbook's trigger while the playbook was broken
  (disabled by an error); enrolled when it is fixed within its `catch_up` horizon
  (guidebot.sop.catch_up).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from guidebot.db.base import Base, BigId, UTCDateTime


class EnrollmentStatus:
    ACTIVE = "active"
    COMPLETED = "completed"  # every step ran (or was settled)
    STOPPED = "stopped"  # a stop condition ended it; stop_reason says which

    ALL = (ACTIVE, COMPLETED, STOPPED)


class TaskStatus:
    PENDING = "pending"  # waiting for due_at
    CLAIMED = "claimed"  # a tick holds it under a lease; no WeCom call made yet
    SENDING = "sending"  # committed before the WeCom call: never resent blindly
    SENT = "sent"  # WeCom took it (welcome delivered; mass-send task created; reminder sent)
    DONE = "done"  # the customer got it (guide confirmed), or the guide marked it done
    SKIPPED = "skipped"  # a stop condition, or skipped by hand; `reason` says why
    EXPIRED = "expired"  # overdue past expire_after (after an outage), or the code expired
    FAILED = "failed"  # WeCom refused it for good; `reason` says why
    UNKNOWN = "unknown"  # may or may not have reached the customer: shown, never resent
    # The guide put it off: `due_at` is when it comes back (pending again if it was not sent,
    # or a reminder to send again; sent again if it was a guide task WeCom already holds).
    SNOOZED = "snoozed"

    ALL = (PENDING, CLAIMED, SENDING, SENT, DONE, SKIPPED, EXPIRED, FAILED, UNKNOWN, SNOOZED)
    OPEN = (PENDING, CLAIMED, SENDING)  # the engine still has work to do on it
    # Rows the guide still has to act on (their task list) besides the open ones.
    AWAITING_GUIDE = (SENT, SNOOZED)
    # What a guide can close (done, skip) or put off (snooze): not in flight, not settled.
    ACTIONABLE = (PENDING, CLAIMED, SENT, SNOOZED)
    # Not sent, and not in flight: what a stopped run skips.
    UNSENT = (PENDING, CLAIMED, SNOOZED)


class Action:
    """The step actions' names as sop_tasks.action stores them. What each does, and whether it
    reaches the customer or faces the guide, is its own module's (guidebot.sop.actions); these
    tuples are for queries in the domains below sop, which cannot ask that registry (a test
    keeps them equal to it)."""

    WELCOME = "welcome"
    GUIDE_TASK = "guide_task"
    REMIND = "remind"
    TAG = "tag"
    # Group steps: rows in sop_group_sends (guidebot.sop.group_models), never in sop_tasks.
    GROUP_MESSAGE = "group_message"
    MOMENT_TASK = "moment_task"

    ALL = (WELCOME, GUIDE_TASK, REMIND, TAG, GROUP_MESSAGE, MOMENT_TASK)
    TO_CUSTOMER = (WELCOME, GUIDE_TASK)  # count toward the customer's daily cap
    GUIDE_FACING = (GUIDE_TASK, REMIND)  # show in the guide's task list


def _listed(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


# The guide-facing tasks a guide can still act on: the predicate of ix_sop_tasks_guide_open.
OPEN_GUIDE_TASKS_INDEX = "ix_sop_tasks_guide_open"
OPEN_GUIDE_TASKS = (
    f"action IN ({_listed(Action.GUIDE_FACING)}) AND status IN ({_listed(TaskStatus.ACTIONABLE)})"
)


class CompletedBy:
    """How a task was settled (`completed_by`); who did it is `completed_by_user`."""

    POLL = "poll"  # get_groupmsg_send_result said the customer got it
    SIDEBAR = "sidebar"  # the guide confirmed it in the chat sidebar (or a forward did)
    BOT = "bot"  # the guide said so to the bot (完成 / 跳过 / 稍后)
    API = "api"  # the guide's or HQ's call to /api/v1/tasks/{id}/done|skip|snooze
    GUIDE = "guide"  # rows from before `bot` and `api` were told apart: the guide or HQ
    ENGINE = "engine"  # the engine settled it (welcome sent, tag marked, a relation ended)

    ALL = (POLL, SIDEBAR, BOT, API, GUIDE, ENGINE)
    BY_PERSON = (SIDEBAR, BOT, API, GUIDE)  # a person decided it


class SopEnrollment(Base):
    __tablename__ = "sop_enrollments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    playbook_id: Mapped[str] = mapped_column(String(64))
    playbook_version: Mapped[int] = mapped_column(Integer)
    # "*" (once per customer, whichever guide) or the enrolling guide's userid (per relation);
    # it stays put when a transfer moves the enrollment to another guide.
    scope: Mapped[str] = mapped_column(String(64))
    guide_userid: Mapped[str] = mapped_column(String(64))
    external_userid: Mapped[str] = mapped_column(String(64))
    store_id: Mapped[int | None] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64))  # the zone its due times were planned in
    trigger: Mapped[str] = mapped_column(String(32))  # customer.added, tag.added, date, cron
    cycle: Mapped[str] = mapped_column(String(64))  # see the module docstring
    status: Mapped[str] = mapped_column(String(16), default=EnrollmentStatus.ACTIVE)
    stop_reason: Mapped[str | None] = mapped_column(String(255))
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    goal_event: Mapped[str | None] = mapped_column(String(64))
    goal_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    goal_met_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # "treated" or "holdout" (sent nothing: guidebot.sop.holdout) when the playbook version it
    # began with held customers out; None when it did not (left out of the lift).
    treatment_group: Mapped[str | None] = mapped_column(String(16))
    # What executing its tasks needs from the playbook version it began with (send window,
    # daily cap, stop conditions, name), so old versions run after a restart or an edit.
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint(
            "playbook_id",
            "scope",
            "external_userid",
            "cycle",
            name="uq_sop_enrollments_cycle",
        ),
        # One active run per (playbook, scope, customer), whatever two enrollers race.
        Index(
            "uq_sop_enrollments_active",
            "playbook_id",
            "scope",
            "external_userid",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
        Index("ix_sop_enrollments_pair", "external_userid", "guide_userid", "status"),
        Index("ix_sop_enrollments_playbook", "playbook_id", "status"),
    )


class SopGoalCount(Base):
    """The holdout lift's rollup (guidebot.sop.holdout): per playbook, group (treated,
    holdout) and UTC day of the goal's deadline, the enrollments begun and those whose goal was
    met. Written with the enrollment and with the goal's credit, in their transactions."""

    __tablename__ = "sop_goal_counts"

    playbook_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    treatment_group: Mapped[str] = mapped_column(String(16), primary_key=True)
    deadline_day: Mapped[date] = mapped_column(Date, primary_key=True)
    enrolled: Mapped[int] = mapped_column(Integer, default=0)
    met: Mapped[int] = mapped_column(Integer, default=0)


class SopTask(Base):
    __tablename__ = "sop_tasks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("sop_enrollments.id"))
    step_id: Mapped[str] = mapped_column(String(64))
    playbook_id: Mapped[str] = mapped_column(String(64))
    playbook_version: Mapped[int] = mapped_column(Integer)
    guide_userid: Mapped[str] = mapped_column(String(64))
    external_userid: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    template: Mapped[str | None] = mapped_column(String(255))
    tag: Mapped[str | None] = mapped_column(String(255))
    content: Mapped[str | None] = mapped_column(String(255))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default=TaskStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    # The add event's WelcomeCode (lives 20 s, works once); cleared once the welcome settles.
    welcome_code: Mapped[str | None] = mapped_column(String(255))
    message: Mapped[str | None] = mapped_column(Text)  # the text as rendered when sent
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # when marked `sending`
    wecom_msgid: Mapped[str | None] = mapped_column(String(128))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    reason: Mapped[str | None] = mapped_column(Text)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_by: Mapped[str | None] = mapped_column(String(16))  # how (CompletedBy)
    # Who: the guide's userid, "hq:<account>" for HQ, None for the engine and WeCom's poll.
    completed_by_user: Mapped[str | None] = mapped_column(String(100))
    # When an open task overdue this long is reported to the store's manager (the playbook's
    # `escalate_after`; None: never); `escalated_at` once it was in a manager's digest.
    escalate_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("enrollment_id", "step_id"),
        Index("ix_sop_tasks_status_due", "status", "due_at"),
        Index("ix_sop_tasks_guide", "guide_userid", "status", "due_at"),
        Index("ix_sop_tasks_customer_sent", "external_userid", "sent_at"),
        Index("ix_sop_tasks_msgid", "wecom_msgid"),
        Index("ix_sop_tasks_escalate", "escalate_at"),
        # The guide-facing tasks still open, for every guide's counts (sop/queries.py, which
        # writes this predicate inline so that both databases see the index applies).
        Index(
            OPEN_GUIDE_TASKS_INDEX,
            "guide_userid",
            "due_at",
            "external_userid",
            sqlite_where=text(OPEN_GUIDE_TASKS),
            postgresql_where=text(OPEN_GUIDE_TASKS),
        ),
    )


class SopTriggerRun(Base):
    """A date or cron occurrence whose relations were all scanned and enrolled."""

    __tablename__ = "sop_trigger_runs"

    playbook_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    occurrence: Mapped[str] = mapped_column(String(64), primary_key=True)
    enrolled: Mapped[int] = mapped_column(Integer, default=0)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MissedStatus:
    WAITING = "waiting"  # the playbook is still broken
    ENROLLED = "enrolled"  # caught up once it was fixed
    TOO_LATE = "too_late"  # fixed after the playbook's catch_up horizon
    SKIPPED = "skipped"  # no longer matches (relation ended, tag gone, audience, enroll rules)


class SopMissed(Base):
    """A pair that matched a broken playbook's trigger at `at` (a callback's add, a tag)."""

    __tablename__ = "sop_missed"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    playbook_id: Mapped[str] = mapped_column(String(64))
    guide_userid: Mapped[str] = mapped_column(String(64))
    external_userid: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(64))  # customer.added, tag.added:<tag>
    at: Mapped[datetime] = mapped_column(UTCDateTime)  # when the trigger's fact happened
    status: Mapped[str] = mapped_column(String(16), default=MissedStatus.WAITING)
    reason: Mapped[str | None] = mapped_column(String(255))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint(
            "playbook_id",
            "guide_userid",
            "external_userid",
            "trigger",
            "at",
            name="uq_sop_missed_fact",
        ),
        Index("ix_sop_missed_playbook_status", "playbook_id", "status", "at"),
    )


class SopPlaybookVersion(Base):
    """One saved text of a playbook: what the studio wrote (guidebot.sop.versions), who saved
    it and when, and its unified diff from the version before. The text found in the file
    before the studio's first save is kept too, with no `saved_by`."""

    __tablename__ = "sop_playbook_versions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    playbook_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(String(64))  # sha256 of the text
    diff: Mapped[str] = mapped_column(Text, default="")  # from the version before ("" first)
    saved_by: Mapped[str | None] = mapped_column(String(100))  # None: found in the file
    saved_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("playbook_id", "version", name="uq_sop_playbook_versions"),)
