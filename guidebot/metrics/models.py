"""The metrics tables: daily rollups, profile snapshots, orders, dirty days, reports sent.

* `guide_daily`: one row per (guide, local day, store) with every counter the KPIs sum
  (guidebot.metrics.kpis says which). The day is the store's local day, the store is the one the
  guide belonged to when the event happened. Rows are only ever rebuilt whole: recomputing a
  (guide, day) deletes its rows and inserts them again from the source logs, in one transaction,
  so a re-run gives the same numbers and never adds to them.
* `guide_profile_daily`: the share of a guide's active customers with profile data is a stock,
  not a flow; a snapshot per (guide, local day), rewritten while the day lasts. A day with no
  snapshot carries the previous one forward.
* `metrics_dirty`: what changed since the rollup job last ran. Database triggers on the source
  tables (relation_events, sop_tasks, content_forwards, content_open_visitors; relations for the
  profile snapshots; store_memberships and departments' time zones, which move events between
  stores and days; see migration 0006) insert a row in the same transaction as the change, so a
  change is visible to the job exactly when it commits, on SQLite and PostgreSQL, with any
  number of writers. Orders write theirs in code (guidebot.metrics.orders).
* `metrics_state`: small named values (when day-1/day-7 cohorts last matured; the backfill).
* `orders`: the order webhook's orders, amounts in integer fen, with the guide they were
  attributed to (and by which rule) decided once, when the order arrived.
* `metrics_reports`: one row per report sent (daily per guide, weekly per manager, an hour's
  lost-customer alert per guide, a day's losses per manager), so each goes out at most once.
* `lost_alerts`: one row per customer who deleted a guide (guidebot.metrics.losses), with what
  the alert and the manager's digest say about them, and the hour's batch that carried it.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from guidebot.db.base import Base, BigId, UTCDateTime

# guide_daily.store_id for events of a guide who belonged to no store at the time.
NO_STORE = 0

# The counters of guide_daily, in table order. kpis.py builds every KPI from these sums.
COUNTERS = (
    "added",
    "reactivated",
    "lost",
    "removed",
    "transferred_in",
    "transferred_out",
    "d1_cohort",
    "d1_kept",
    "d7_cohort",
    "d7_kept",
    "welcome_attempts",
    "welcome_sent",
    "tasks_due",
    "tasks_done",
    "tasks_on_time",
    "forwards",
    "unique_opens",
    "orders_paid",
    "orders_refunded",
    "gmv_paid_fen",
    "gmv_refunded_fen",
    "chats",
    "messages",
    "negative_feedback",
    "reply_days",
    "reply_pct_x100",
    "reply_time_days",
    "reply_minutes",
    "group_joined",
    "group_left",
    "group_opens",
    "group_orders",
    "group_sends",
    "group_sends_done",
    "moments_assigned",
    "moments_published",
    "group_link_opens",
    "moment_link_opens",
    "moment_orders",
)


class DirtySource:
    RELATION = "relation"  # relation_events (trigger)
    TASK = "task"  # sop_tasks (trigger)
    FORWARD = "forward"  # content_forwards (trigger)
    OPEN = "open"  # content_open_visitors (trigger)
    PROFILE = "profile"  # relations: status, remark mobiles, description (trigger)
    ORDER = "order"  # orders (written by guidebot.metrics.orders)
    MEMBERSHIP = "membership"  # store_memberships (trigger): days from `at` on may move
    ZONE = "zone"  # departments.timezone (trigger): guide "*", kind = the store id
    BEHAVIOR = "behavior"  # guide_behavior_daily (trigger): kind = the China day, ISO
    GROUP = "group"  # group_member_events of customers (trigger): guide = the group's owner


class OrderStatus:
    PAID = "paid"
    REFUNDED = "refunded"

    ALL = (PAID, REFUNDED)


class Attribution:
    FORWARD = "forward"  # the last forward of content to the customer within the window
    OPEN = "open"  # the last open of the guide's content by the customer within the window
    # A forward into a group they were in then, or a group send's link opened in their browser.
    GROUP = "group"
    MOMENTS = "moments"  # their browser opened the guide's Moments link (metrics.community)
    STORE_GUIDE = "store_guide"  # the customer's active guide at the order's store
    RECENT_GUIDE = "recent_guide"  # the customer's most recently added active guide
    NONE = "none"  # nobody: the order counts for no guide

    ALL = (FORWARD, OPEN, GROUP, MOMENTS, STORE_GUIDE, RECENT_GUIDE, NONE)


class GuideDaily(Base):
    __tablename__ = "guide_daily"

    guide_userid: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    store_id: Mapped[int] = mapped_column(Integer, primary_key=True)  # NO_STORE: none
    # Relation changes (relation_events), credited to the local day they happened.
    added: Mapped[int] = mapped_column(Integer, default=0)
    reactivated: Mapped[int] = mapped_column(Integer, default=0)
    lost: Mapped[int] = mapped_column(Integer, default=0)
    removed: Mapped[int] = mapped_column(Integer, default=0)
    transferred_in: Mapped[int] = mapped_column(Integer, default=0)
    transferred_out: Mapped[int] = mapped_column(Integer, default=0)
    # New customers of the day whose 1-day / 7-day window has closed, and those kept through it.
    d1_cohort: Mapped[int] = mapped_column(Integer, default=0)
    d1_kept: Mapped[int] = mapped_column(Integer, default=0)
    d7_cohort: Mapped[int] = mapped_column(Integer, default=0)
    d7_kept: Mapped[int] = mapped_column(Integer, default=0)
    # Welcome tasks (sop_tasks), credited to the day of the add.
    welcome_attempts: Mapped[int] = mapped_column(Integer, default=0)
    welcome_sent: Mapped[int] = mapped_column(Integer, default=0)
    # Guide-facing SOP tasks, credited to the day they were due.
    tasks_due: Mapped[int] = mapped_column(Integer, default=0)
    tasks_done: Mapped[int] = mapped_column(Integer, default=0)
    tasks_on_time: Mapped[int] = mapped_column(Integer, default=0)
    # Content (content_forwards, content_open_visitors).
    forwards: Mapped[int] = mapped_column(Integer, default=0)
    unique_opens: Mapped[int] = mapped_column(Integer, default=0)
    # Attributed orders: paid on the day paid, refunded on the day refunded.
    orders_paid: Mapped[int] = mapped_column(Integer, default=0)
    orders_refunded: Mapped[int] = mapped_column(Integer, default=0)
    gmv_paid_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    gmv_refunded_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    # WeCom's contact statistics (guide_behavior_daily), credited to its China day: chats,
    # messages, negative feedback; the days WeCom gave a reply rate and their rates summed in
    # hundredths of a percent; the days it gave a first-reply time and their minutes summed.
    chats: Mapped[int] = mapped_column(Integer, default=0)
    messages: Mapped[int] = mapped_column(Integer, default=0)
    negative_feedback: Mapped[int] = mapped_column(Integer, default=0)
    reply_days: Mapped[int] = mapped_column(Integer, default=0)
    reply_pct_x100: Mapped[int] = mapped_column(Integer, default=0)
    reply_time_days: Mapped[int] = mapped_column(Integer, default=0)
    reply_minutes: Mapped[int] = mapped_column(Integer, default=0)
    # Customers who joined or left (or were removed from) the groups the guide owned then
    # (group_member_events), credited to the local day it happened.
    group_joined: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    group_left: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Unique opens whose visitor came first by a link forwarded into a group, and orders
    # attributed to a forward into a group the customer was in.
    group_opens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    group_orders: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The community steps (sop_group_sends), credited to the owner's or guide's day the row
    # was due: group sends that reached WeCom and those the owner sent; Moments tasks that
    # reached WeCom and those the guide published. Opens of links minted for them
    # (content_opens.via), credited to the day of the open.
    group_sends: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    group_sends_done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    moments_assigned: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    moments_published: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    group_link_opens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    moment_link_opens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Orders attributed to an open of the guide's Moments link by a browser tied to the
    # customer (attribution moments); those through a group send's link are group_orders.
    moment_orders: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_guide_daily_store_day", "store_id", "day"),
        Index("ix_guide_daily_day", "day"),
    )


class GuideProfileDaily(Base):
    """The guide's active customers, those with profile data and those in a customer group, and
    the groups the guide owns, as of the end of `day`."""

    __tablename__ = "guide_profile_daily"

    guide_userid: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    store_id: Mapped[int] = mapped_column(Integer)  # the guide's store when taken; NO_STORE
    active: Mapped[int] = mapped_column(Integer, default=0)
    filled: Mapped[int] = mapped_column(Integer, default=0)
    # The live customer groups the guide owns; of `active`, those in at least one of them
    # or any other of the brand's live groups (guidebot.groups).
    groups_owned: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    in_group: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_guide_profile_daily_day", "day", "store_id"),)


class MetricsDirty(Base):
    """Something changed for `guide_userid` at `at`: its local day needs recomputing."""

    __tablename__ = "metrics_dirty"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(16))
    guide_userid: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    external_userid: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str | None] = mapped_column(String(32))


class MetricsState(Base):
    __tablename__ = "metrics_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(String(128), unique=True)
    # As posted: the customer by external_userid or by mobile (matched to remark mobiles).
    posted_external_userid: Mapped[str | None] = mapped_column(String(64))
    posted_mobile: Mapped[str | None] = mapped_column(String(32))
    posted_store: Mapped[str | None] = mapped_column(String(64))
    external_userid: Mapped[str | None] = mapped_column(String(64))  # resolved; None: unknown
    store_id: Mapped[int | None] = mapped_column(Integer)  # the order's store, when given
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    paid_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    guide_userid: Mapped[str | None] = mapped_column(String(64))  # attributed; None: nobody
    attribution: Mapped[str] = mapped_column(String(16))
    attribution_ref: Mapped[str | None] = mapped_column(String(64))  # e.g. "forward:12"
    attribution_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the touch's time
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_orders_guide_paid", "guide_userid", "paid_at"),
        Index("ix_orders_guide_refunded", "guide_userid", "refunded_at"),
        Index("ix_orders_customer", "external_userid", "paid_at"),
        Index("ix_orders_updated", "updated_at"),  # what the cohorts job reads next
    )


class MetricsReport(Base):
    """A report sent (or being sent): daily per guide per local day, weekly per manager."""

    __tablename__ = "metrics_reports"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # daily | weekly
    userid: Mapped[str] = mapped_column(String(64), primary_key=True)
    period: Mapped[str] = mapped_column(String(32), primary_key=True)  # "2026-03-14"
    status: Mapped[str] = mapped_column(String(16))  # sending | sent | failed
    message: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LostAlert(Base):
    """A customer deleted the guide (the relation ended as lost): what the guide's alert and
    the store manager's digest say. `batch` is the metrics_reports period of the guide's alert
    that carried it (None: not yet sent)."""

    __tablename__ = "lost_alerts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    guide_userid: Mapped[str] = mapped_column(String(64))
    external_userid: Mapped[str] = mapped_column(String(64))
    store_id: Mapped[int | None] = mapped_column(Integer)  # the guide's store when it happened
    customer_name: Mapped[str | None] = mapped_column(String(255))  # remark, else WeCom name
    together_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lost_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_sent: Mapped[str | None] = mapped_column(Text)  # what the guide sent them last
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    batch: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("guide_userid", "external_userid", "lost_at"),
        Index("ix_lost_alerts_batch", "guide_userid", "batch"),
        Index("ix_lost_alerts_store", "store_id", "lost_at"),
    )


class CohortMember(Base):
    """A customer's place in the cohorts (guidebot.metrics.cohorts): fixed at their first add
    (day, store, guide, channel, campaign, playbook), with what has happened since, recomputed
    from the logs (relation_events, orders) whenever they change or a checkpoint comes due.
    A flag is None until its checkpoint has passed (not yet due)."""

    __tablename__ = "cohort_members"

    external_userid: Mapped[str] = mapped_column(String(64), primary_key=True)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime)
    add_day: Mapped[date] = mapped_column(Date)  # local day of the add, in the store's zone
    store_id: Mapped[int] = mapped_column(Integer)  # NO_STORE: none
    guide_userid: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(64))  # "" none
    campaign: Mapped[str] = mapped_column(String(64))  # "" none
    playbook: Mapped[str] = mapped_column(String(64))  # "" none
    d1: Mapped[bool | None] = mapped_column(Boolean)
    d7: Mapped[bool | None] = mapped_column(Boolean)
    d30: Mapped[bool | None] = mapped_column(Boolean)
    d90: Mapped[bool | None] = mapped_column(Boolean)
    first_order_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    r90: Mapped[bool | None] = mapped_column(Boolean)
    r180: Mapped[bool | None] = mapped_column(Boolean)
    r365: Mapped[bool | None] = mapped_column(Boolean)
    orders: Mapped[int] = mapped_column(Integer, default=0)
    gmv_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the next checkpoint
    refreshed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_cohort_members_day", "add_day"),
        Index("ix_cohort_members_due", "next_due_at"),
    )


# cohort_periods' counters, in table order (guidebot.metrics.cohorts says what each counts).
COHORT_COUNTERS = (
    "members",
    "d1_due",
    "d1_kept",
    "d7_due",
    "d7_kept",
    "d30_due",
    "d30_kept",
    "d90_due",
    "d90_kept",
    "buyers",
    "r90_due",
    "r90_yes",
    "r180_due",
    "r180_yes",
    "r365_due",
    "r365_yes",
    "orders",
    "gmv_fen",
)


class CohortPeriod(Base):
    """The cohort rollup: per period of the add (`period` week or month, from its first local
    day `start`), split (`dim`: all, store, guide, channel, campaign, playbook) and its value
    (`key`), the sums of cohort_members. A period's rows are rebuilt whole when one of its
    members changes."""

    __tablename__ = "cohort_periods"

    period: Mapped[str] = mapped_column(String(8), primary_key=True)
    dim: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    start: Mapped[date] = mapped_column(Date, primary_key=True)
    members: Mapped[int] = mapped_column(Integer, default=0)
    d1_due: Mapped[int] = mapped_column(Integer, default=0)
    d1_kept: Mapped[int] = mapped_column(Integer, default=0)
    d7_due: Mapped[int] = mapped_column(Integer, default=0)
    d7_kept: Mapped[int] = mapped_column(Integer, default=0)
    d30_due: Mapped[int] = mapped_column(Integer, default=0)
    d30_kept: Mapped[int] = mapped_column(Integer, default=0)
    d90_due: Mapped[int] = mapped_column(Integer, default=0)
    d90_kept: Mapped[int] = mapped_column(Integer, default=0)
    buyers: Mapped[int] = mapped_column(Integer, default=0)
    r90_due: Mapped[int] = mapped_column(Integer, default=0)
    r90_yes: Mapped[int] = mapped_column(Integer, default=0)
    r180_due: Mapped[int] = mapped_column(Integer, default=0)
    r180_yes: Mapped[int] = mapped_column(Integer, default=0)
    r365_due: Mapped[int] = mapped_column(Integer, default=0)
    r365_yes: Mapped[int] = mapped_column(Integer, default=0)
    orders: Mapped[int] = mapped_column(Integer, default=0)
    gmv_fen: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = (Index("ix_cohort_periods_read", "period", "dim", "start"),)
