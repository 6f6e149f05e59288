"""Customer groups (客户群), their members, the append-only membership log, the 「加入群聊」
join ways and each store's group welcome template.

A group's owner is a guide; `store_id` is the owner's store when the group was created (or
changed owner). A member's `status` follows the newest change we know of (`changed_at`, the
event time that set it): an older event never changes it, but every join and every departure
is a fact in `group_member_events`, logged once (architecture rule 3).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from guidebot.db.base import Base, BigId, UTCDateTime


class GroupStatus:
    ACTIVE = "active"
    DISMISSED = "dismissed"

    ALL = (ACTIVE, DISMISSED)


class MemberType:
    EMPLOYEE = "employee"  # WeCom type 1: a member of the corp
    CUSTOMER = "customer"  # WeCom type 2: an external contact

    ALL = (EMPLOYEE, CUSTOMER)

    @staticmethod
    def of(wecom_type: int | None) -> str:
        return MemberType.EMPLOYEE if wecom_type == 1 else MemberType.CUSTOMER


class MemberStatus:
    MEMBER = "member"
    LEFT = "left"  # QuitScene 0: left by themselves
    REMOVED = "removed"  # QuitScene 1: removed by the owner or an admin

    ALL = (MEMBER, LEFT, REMOVED)
    GONE = (LEFT, REMOVED)


class MemberEventKind:
    JOINED = "joined"
    LEFT = "left"
    REMOVED = "removed"

    ALL = (JOINED, LEFT, REMOVED)


class GroupSource:
    CALLBACK = "callback"
    SYNC = "sync"


class CustomerGroup(Base):
    """One customer group chat, as WeCom last described it."""

    __tablename__ = "customer_groups"

    chat_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255))
    owner_userid: Mapped[str | None] = mapped_column(String(64))
    store_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    notice: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=GroupStatus.ACTIVE)
    owner_status: Mapped[int] = mapped_column(Integer, default=0)  # groupchat/list's status
    member_version: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # WeCom's create_time
    dismissed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # last groupchat/get
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_customer_groups_owner", "owner_userid", "status"),
        Index("ix_customer_groups_store", "store_id", "status"),
    )


class GroupMember(Base):
    """One person in (or once in) one group: a guide or colleague, or a customer."""

    __tablename__ = "customer_group_members"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    chat_id: Mapped[str] = mapped_column(ForeignKey("customer_groups.chat_id"))
    member_id: Mapped[str] = mapped_column(String(64))  # userid or external_userid
    member_type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(255))
    group_nickname: Mapped[str | None] = mapped_column(String(255))
    unionid: Mapped[str | None] = mapped_column(String(64))
    joined_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # WeCom's join_time
    join_scene: Mapped[int | None] = mapped_column(Integer)  # 1 invited, 2 link, 3 group QR
    invitor_userid: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str | None] = mapped_column(String(64))  # as WeCom gave it
    config_id: Mapped[str | None] = mapped_column(String(64))  # the join way, when ours
    store_id: Mapped[int | None] = mapped_column(Integer)  # the join way's store
    channel: Mapped[str | None] = mapped_column(String(64))
    campaign: Mapped[str | None] = mapped_column(String(64))
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the event time of `status`
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("chat_id", "member_id"),
        Index("ix_customer_group_members_member", "member_id", "status"),
    )


class GroupMemberEvent(Base):
    """Append-only: a join or a departure, once each, with the group's owner and store then."""

    __tablename__ = "group_member_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    chat_id: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[str] = mapped_column(String(64))
    member_type: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    scene: Mapped[int | None] = mapped_column(Integer)  # join scene, or QuitScene
    owner_userid: Mapped[str | None] = mapped_column(String(64))
    store_id: Mapped[int | None] = mapped_column(Integer)  # the group's store then
    state: Mapped[str | None] = mapped_column(String(64))
    config_id: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str | None] = mapped_column(String(64))
    campaign: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))
    inbox_id: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("chat_id", "member_id", "kind", "occurred_at"),
        Index("ix_group_member_events_occurred", "occurred_at"),
        Index("ix_group_member_events_owner", "owner_userid", "occurred_at"),
        Index("ix_group_member_events_store", "store_id", "occurred_at"),
        Index("ix_group_member_events_member", "member_id", "occurred_at"),
    )


class GroupLabel(Base):
    """A label HQ put on a group (WeCom keeps no tags on groups): a `group_message` step's
    `groups: {labels: [..]}` picks the groups carrying one (guidebot.groups.labels)."""

    __tablename__ = "customer_group_labels"

    chat_id: Mapped[str] = mapped_column(ForeignKey("customer_groups.chat_id"), primary_key=True)
    label: Mapped[str] = mapped_column(String(32), primary_key=True)
    set_by: Mapped[str] = mapped_column(String(100))  # the audit trail's actor
    set_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_customer_group_labels_label", "label"),)


class GroupJoinWay(Base):
    """A 「加入群聊」 code made through add_join_way; its state names store and channel."""

    __tablename__ = "group_join_ways"

    config_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(30), unique=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("departments.id"))
    channel: Mapped[str] = mapped_column(String(30))
    campaign: Mapped[str | None] = mapped_column(String(30))
    scene: Mapped[int] = mapped_column(Integer)  # 1 mini-program plugin, 2 QR code
    chat_ids: Mapped[list[str]] = mapped_column(JSON)
    remark: Mapped[str | None] = mapped_column(String(30))
    auto_create_room: Mapped[bool] = mapped_column(Boolean, default=True)
    room_base_name: Mapped[str | None] = mapped_column(String(40))
    room_base_id: Mapped[int | None] = mapped_column(Integer)
    qr_code: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StoreGroupWelcome(Base):
    """A store's group welcome: HQ's template rendered for the store, kept in WeCom's library
    (group_welcome_template) under `template_id`."""

    __tablename__ = "store_group_welcomes"

    store_id: Mapped[int] = mapped_column(ForeignKey("departments.id"), primary_key=True)
    template: Mapped[str] = mapped_column(String(255))  # HQ's template name
    template_id: Mapped[str] = mapped_column(String(64))  # WeCom's
    text: Mapped[str] = mapped_column(Text)  # as rendered and sent to WeCom
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class GroupChatStat(Base):
    """WeCom's figures for one owner's customer groups on one China day (groupchat/statistic,
    doc 92133): WeCom's counts of chat activity guidebot never sees, kept as WeCom gave them."""

    __tablename__ = "group_chat_stats"

    owner_userid: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)  # the China day (00:00 +08:00)
    new_chat_cnt: Mapped[int] = mapped_column(Integer, default=0)
    chat_total: Mapped[int] = mapped_column(Integer, default=0)
    chat_has_msg: Mapped[int] = mapped_column(Integer, default=0)
    new_member_cnt: Mapped[int] = mapped_column(Integer, default=0)
    member_total: Mapped[int] = mapped_column(Integer, default=0)
    member_has_msg: Mapped[int] = mapped_column(Integer, default=0)
    msg_total: Mapped[int] = mapped_column(Integer, default=0)
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_group_chat_stats_day", "day"),)
