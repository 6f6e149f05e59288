"""Stores, guides, customers, the guide↔customer relations, and their append-only history.

Departments come from WeCom's address book: a leaf department is a store, anything with
children is a region. A guide's store membership is effective-dated, so history stays with the
store where it happened. Every relation change is appended to `relation_events`; nothing in
this package keeps a counter that is read, incremented and written back.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from guidebot.db.base import Base, BigId, BigValue, UTCDateTime

# Store memberships found by the first address-book sync start here: we cannot know when a
# guide joined a store before guidebot existed, only that it was before anything we record.
EARLY = datetime(2000, 1, 1, tzinfo=UTC)


class GuideStatus:
    ACTIVE = "active"
    LEFT = "left"


class RelationStatus:
    ACTIVE = "active"
    LOST = "lost"  # the customer deleted the guide (del_follow_user)
    REMOVED = "removed"  # the guide deleted the customer (del_external_contact)
    TRANSFERRED = "transferred"  # moved to another guide

    ALL = (ACTIVE, LOST, REMOVED, TRANSFERRED)
    ENDED = (LOST, REMOVED, TRANSFERRED)


class EventKind:
    ADDED = "added"
    REACTIVATED = "reactivated"  # an ended relation became active again (the customer re-added)
    LOST = "lost"
    REMOVED = "removed"
    TRANSFERRED_OUT = "transferred_out"
    TRANSFERRED_IN = "transferred_in"
    EDITED = "edited"  # remark, description, tags or remark mobiles changed

    ALL = (ADDED, REACTIVATED, LOST, REMOVED, TRANSFERRED_OUT, TRANSFERRED_IN, EDITED)


class EventSource:
    CALLBACK = "callback"
    RECONCILE = "reconcile"
    API = "api"
    PLAYBOOK = "playbook"  # a playbook's step (a tag it marked)


class TransferKind:
    IN_SERVICE = "in_service"
    RESIGNED = "resigned"

    ALL = (IN_SERVICE, RESIGNED)


class TransferStatus:
    PENDING = "pending"
    ACCEPTED = "accepted"
    REFUSED = "refused"  # the customer refused (transfer_fail customer_refused, result 3)
    LIMIT_EXCEEDED = "limit_exceeded"  # the takeover guide is full (result 4)
    FAILED = "failed"  # WeCom refused the request itself (errcode), or never heard of it

    ALL = (PENDING, ACCEPTED, REFUSED, LIMIT_EXCEEDED, FAILED)


class Department(Base):
    """A WeCom department: a store when it is a leaf of the tree, else a region."""

    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(255))
    parent_id: Mapped[int | None] = mapped_column(Integer)
    # WeCom's order is 0 to 2^32 - 1 (doc 90205 创建部门), past a 32-bit signed column.
    sort_order: Mapped[int] = mapped_column(BigValue, default=0)
    # Kept current after every address-book change; a leaf is a store.
    is_store: Mapped[bool] = mapped_column(Boolean, default=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    timezone: Mapped[str | None] = mapped_column(String(64))  # IANA name; None: the default
    # Deleted departments stay, so the history that points at them still reads.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Guide(Base):
    """A WeCom member."""

    __tablename__ = "guides"

    userid: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=GuideStatus.ACTIVE)
    main_department: Mapped[int | None] = mapped_column(Integer)
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StoreMembership(Base):
    """A guide belonged to a department from valid_from until valid_to (None: still does)."""

    __tablename__ = "store_memberships"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    guide_userid: Mapped[str] = mapped_column(ForeignKey("guides.userid"))
    store_id: Mapped[int] = mapped_column(ForeignKey("departments.id"))
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_store_memberships_guide", "guide_userid", "valid_from"),
        Index("ix_store_memberships_store", "store_id", "valid_from"),
        # At most one open membership per (guide, department), even with racing events.
        Index(
            "uq_store_memberships_open",
            "guide_userid",
            "store_id",
            unique=True,
            sqlite_where=text("valid_to IS NULL"),
            postgresql_where=text("valid_to IS NULL"),
        ),
    )


class Customer(Base):
    """A WeCom external contact, as externalcontact/get last described them."""

    __tablename__ = "customers"

    external_userid: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255))
    type: Mapped[int | None] = mapped_column(Integer)  # 1 WeChat user, 2 WeCom user
    gender: Mapped[int | None] = mapped_column(Integer)  # 0 unknown, 1 male, 2 female
    unionid: Mapped[str | None] = mapped_column(String(64))
    avatar: Mapped[str | None] = mapped_column(Text)
    corp_name: Mapped[str | None] = mapped_column(String(255))
    profile_fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)  # first seen by guidebot
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


# HQ's customer list, newest first (contacts/queries.py), without sorting every customer.
Index("ix_customers_newest", Customer.created_at.desc(), Customer.external_userid)


class Relation(Base):
    """One guide ↔ one customer. Status changes only by an event newer than last_event_at."""

    __tablename__ = "relations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    guide_userid: Mapped[str] = mapped_column(ForeignKey("guides.userid"))
    external_userid: Mapped[str] = mapped_column(ForeignKey("customers.external_userid"))
    status: Mapped[str] = mapped_column(String(16))
    # WeCom's createtime (or the add event's time); None while only an end has been seen.
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # False after add_half_external_contact until the guide confirms: WeCom lists it nowhere.
    confirmed: Mapped[bool] = mapped_column(Boolean, default=True)
    state: Mapped[str | None] = mapped_column(String(255))  # as WeCom sent it, known or not
    store_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    channel: Mapped[str | None] = mapped_column(String(64))
    campaign: Mapped[str | None] = mapped_column(String(64))
    config_id: Mapped[str | None] = mapped_column(String(64))  # the contact way, when known
    add_way: Mapped[int | None] = mapped_column(Integer)
    remark: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    remark_mobiles: Mapped[list[str]] = mapped_column(JSON, default=list)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(String(32))
    successor_userid: Mapped[str | None] = mapped_column(String(64))
    predecessor_userid: Mapped[str | None] = mapped_column(String(64))
    # The CreateTime of the last event that set the status: an older event never changes it.
    last_event_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("guide_userid", "external_userid"),
        Index("ix_relations_customer", "external_userid"),
        Index("ix_relations_guide_status", "guide_userid", "status"),
        Index("ix_relations_store_status", "store_id", "status"),
    )


class GuideCustomerCount(Base):
    """A guide's active relations attributed to one store (`NO_STORE`: none), kept by triggers
    on `relations` in the transaction of each change (migration 0028), so the guide and store
    lists never count every relation. The relations stay the truth: a test checks the two
    agree after adds, losses, transfers, store moves and deletes."""

    __tablename__ = "guide_customer_counts"

    guide_userid: Mapped[str] = mapped_column(String(64), primary_key=True)
    store_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    active: Mapped[int] = mapped_column(Integer)


NO_STORE = 0  # guide_customer_counts.store_id of relations attributed to no store


class ContactWay(Base):
    """A 「联系我」 way created through add_contact_way; its state names store and channel."""

    __tablename__ = "contact_ways"

    config_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(30), unique=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("departments.id"))
    channel: Mapped[str] = mapped_column(String(30))
    campaign: Mapped[str | None] = mapped_column(String(30))
    userids: Mapped[list[str]] = mapped_column(JSON)
    qr_code: Mapped[str | None] = mapped_column(Text)
    remark: Mapped[str | None] = mapped_column(String(30))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Transfer(Base):
    """One customer handed from one guide to another (in service, or after resigning)."""

    __tablename__ = "transfers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    handover_userid: Mapped[str] = mapped_column(String(64))
    takeover_userid: Mapped[str] = mapped_column(String(64))
    external_userid: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=TransferStatus.PENDING)
    errcode: Mapped[int | None] = mapped_column(Integer)  # WeCom's answer when it refused
    fail_reason: Mapped[str | None] = mapped_column(String(255))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_transfers_status", "status", "handover_userid", "takeover_userid"),
        Index("ix_transfers_customer", "external_userid"),
        # One open transfer per (handover, customer), as WeCom allows.
        Index(
            "uq_transfers_pending",
            "handover_userid",
            "external_userid",
            unique=True,
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )


class RelationEvent(Base):
    """Append-only: one row per relation change, with the store it counted for at the time.

    Rows are only ever inserted. Metrics are computed from here, never from counters.
    """

    __tablename__ = "relation_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)  # when it happened (event time)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)  # when guidebot learned it
    kind: Mapped[str] = mapped_column(String(32))
    guide_userid: Mapped[str] = mapped_column(String(64))
    store_id: Mapped[int | None] = mapped_column(Integer)
    external_userid: Mapped[str] = mapped_column(String(64))
    previous_status: Mapped[str | None] = mapped_column(String(16))  # None: a new relation
    channel: Mapped[str | None] = mapped_column(String(64))
    campaign: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str | None] = mapped_column(String(255))
    counterpart_userid: Mapped[str | None] = mapped_column(String(64))  # the other transfer end
    reason: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(16))
    inbox_id: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        # A second copy of the same change (a replay racing a reconciliation) is not logged.
        UniqueConstraint("guide_userid", "external_userid", "kind", "occurred_at"),
        Index("ix_relation_events_occurred", "occurred_at"),
        Index("ix_relation_events_guide", "guide_userid", "occurred_at"),
        Index("ix_relation_events_store", "store_id", "occurred_at"),
        Index("ix_relation_events_customer", "external_userid", "occurred_at"),
        Index("ix_relation_events_recorded", "recorded_at"),  # what the cohorts job reads next
    )


class GuideBehaviorDaily(Base):
    """WeCom's contact statistics of one guide for one China day (get_user_behavior_data, doc
    92132), as WeCom last answered: its figures, not ours (guidebot.contacts.behavior).
    `reply_percentage` and `avg_reply_time` are None on days WeCom returned none (no chat a
    customer started, none answered). An insert or a change marks the day dirty for the
    rollups (a trigger, see guidebot.metrics.models)."""

    __tablename__ = "guide_behavior_daily"

    guide_userid: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    chat_cnt: Mapped[int] = mapped_column(Integer, default=0)
    message_cnt: Mapped[int] = mapped_column(Integer, default=0)
    reply_percentage: Mapped[float | None] = mapped_column(Float)  # 0..100
    avg_reply_time: Mapped[int | None] = mapped_column(Integer)  # minutes
    negative_feedback_cnt: Mapped[int] = mapped_column(Integer, default=0)
    new_contact_cnt: Mapped[int] = mapped_column(Integer, default=0)
    new_apply_cnt: Mapped[int] = mapped_column(Integer, default=0)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)  # when these values were read

    __table_args__ = (Index("ix_guide_behavior_daily_day", "day"),)


class Stage:
    """A customer's lifecycle stage (guidebot.contacts.lifecycle), with what guides read."""

    NEW = "new"  # added, no open, reply or order yet
    ENGAGED = "engaged"  # opened a guide's link or replied, no order yet
    FIRST_PURCHASE = "first_purchase"  # one counted order
    REPEAT_BUYER = "repeat_buyer"  # two or more counted orders
    DORMANT = "dormant"  # no open, reply or order for GUIDEBOT_DORMANT_DAYS
    LOST = "lost"  # no relation left with any guide (each lost or removed)

    ALL = (NEW, ENGAGED, FIRST_PURCHASE, REPEAT_BUYER, DORMANT, LOST)
    # What people read for each: guidebot.i18n.LABELS["stage"] (新客 / New ...).


class CustomerStage(Base):
    """A customer's stage now, and what decides it: counted orders (customer_stage_orders),
    whether they ever engaged, when they last opened, replied or ordered. `guide_userid` and
    `store_id` are the customer's latest guide (the last add or transfer) and that relation's
    store, for counts per guide and store."""

    __tablename__ = "customer_stages"

    external_userid: Mapped[str] = mapped_column(String(64), primary_key=True)
    stage: Mapped[str] = mapped_column(String(16))
    since: Mapped[datetime] = mapped_column(UTCDateTime)
    guide_userid: Mapped[str] = mapped_column(String(64))
    store_id: Mapped[int | None] = mapped_column(Integer)
    engaged: Mapped[bool] = mapped_column(Boolean, default=False)
    orders: Mapped[int] = mapped_column(Integer, default=0)
    last_active_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the add, else the last act
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_customer_stages_guide", "guide_userid", "stage"),
        Index("ix_customer_stages_store", "store_id", "stage"),
        Index("ix_customer_stages_active", "stage", "last_active_at"),
    )


class CustomerStageOrder(Base):
    """An order that counts toward the customer's stage: paid, not refunded (OrderPaid
    inserts it, OrderRefunded deletes it; a repeat of either changes nothing)."""

    __tablename__ = "customer_stage_orders"

    order_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    external_userid: Mapped[str] = mapped_column(String(64))
    paid_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_customer_stage_orders_customer", "external_userid"),
        Index("ix_customer_stage_orders_paid", "paid_at"),  # the sop-behaviour scan's window
    )


class CustomerStageChange(Base):
    """The stage log: every change, when, why (the fact that caused it)."""

    __tablename__ = "customer_stage_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    external_userid: Mapped[str] = mapped_column(String(64))
    guide_userid: Mapped[str] = mapped_column(String(64))
    store_id: Mapped[int | None] = mapped_column(Integer)
    from_stage: Mapped[str | None] = mapped_column(String(16))  # None: first stage
    to_stage: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(32))  # relation.added, order.paid, dormancy ...

    __table_args__ = (
        Index("ix_customer_stage_log_customer", "external_userid", "at"),
        Index("ix_customer_stage_log_at", "at"),
    )


class CustomerStageDaily(Base):
    """Customers per stage per store and per guide (`dim`), as of a local day: a snapshot of
    customer_stages, rewritten by the hourly lifecycle job while the day lasts."""

    __tablename__ = "customer_stage_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    dim: Mapped[str] = mapped_column(String(8), primary_key=True)  # store | guide
    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # "" none
    stage: Mapped[str] = mapped_column(String(16), primary_key=True)
    customers: Mapped[int] = mapped_column(Integer, default=0)


class CustomerReadHours(Base):
    """When a customer reads (guidebot.contacts.reading_hours): their counted opens and
    replies per hour of the day, in UTC hours (the store's zone is applied when read), and the
    best hour as of the last one counted."""

    __tablename__ = "customer_read_hours"

    external_userid: Mapped[str] = mapped_column(String(64), primary_key=True)
    store_id: Mapped[int | None] = mapped_column(Integer)  # the store of the last one counted
    counts: Mapped[list[int]] = mapped_column(JSON)  # 24 counts, index = UTC hour
    observations: Mapped[int] = mapped_column(Integer, default=0)
    best_hour: Mapped[int | None] = mapped_column(Integer)  # UTC hour, prior included
    last_counted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReadHourCount(Base):
    """The prior: every customer's counted opens and replies per UTC hour, per store (store 0:
    all stores together), kept by atomic increments."""

    __tablename__ = "read_hour_counts"

    store_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hour: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
