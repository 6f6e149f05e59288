"""The content library, tracked-link opens, forwards and mass sends.

Items are what HQ gives guides to send: a text, a link (article), an image, a mini-program card
or a file. Images, files and mini-program covers carry their bytes (in `content_media`), which
are uploaded to WeCom (media/upload) when a message needs a media_id; that id lives 3 days, so it
is cached on the item and refreshed well before (see service.MEDIA_MAX_AGE).

`content_opens` and `content_forwards` are append-only logs: metrics are computed from them, and
nothing here keeps a counter that is read, incremented and written back. The unique-open count
comes from `content_open_visitors`, one row per (item, visitor) inserted on the first open.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from guidebot.db.base import Base, BigId, UTCDateTime


class ContentKind:
    TEXT = "text"
    LINK = "link"  # an article or any web page
    IMAGE = "image"
    MINIPROGRAM = "miniprogram"
    FILE = "file"

    ALL = (TEXT, LINK, IMAGE, MINIPROGRAM, FILE)
    # Kinds whose WeCom message needs an uploaded media_id (the mini-program's is its cover).
    WITH_MEDIA = (IMAGE, MINIPROGRAM, FILE)


class ForwardVia:
    SIDEBAR = "sidebar"  # sendChatMessage from the chat toolbar, confirmed by the page
    MASS_SEND = "mass_send"  # a customer received a mass-send task the guide confirmed


class MassSendStatus:
    PENDING = "pending"  # recorded, WeCom not asked yet
    SENDING = "sending"  # committed before add_msg_template: a crash here is reconciled
    CREATED = "created"  # WeCom made the task; the guide must confirm it in the client
    DONE = "done"  # every recipient has a final result
    UNKNOWN = "unknown"  # the call may have reached WeCom; reconciliation did not find it yet
    FAILED = "failed"  # WeCom refused (errcode) or nothing was created

    OPEN = (PENDING, SENDING, CREATED, UNKNOWN)


class ContentItem(Base):
    __tablename__ = "content_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # A stable key from the YAML import (or the API): importing again updates, never duplicates.
    key: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(255))
    summary: Mapped[str | None] = mapped_column(Text)
    cover_url: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)  # a text item's words
    url: Mapped[str | None] = mapped_column(Text)  # a link item's target
    miniprogram_appid: Mapped[str | None] = mapped_column(String(64))
    miniprogram_page: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    stores: Mapped[list[str]] = mapped_column(JSON, default=list)  # store codes; empty: all
    valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Denormalised for LIKE search on both engines: lower-case text, "|tag|" and "|code|" lists.
    search_text: Mapped[str] = mapped_column(Text, default="")
    tag_index: Mapped[str] = mapped_column(Text, default="")
    store_index: Mapped[str] = mapped_column(Text, default="")
    # The WeCom temporary media of the item's bytes (content_media), while it lives.
    media_id: Mapped[str | None] = mapped_column(String(255))
    media_uploaded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Deleted items stay, so forwards and opens that point at them still read.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_content_items_kind", "kind", "deleted_at"),)


class ContentMedia(Base):
    """The bytes of an image, file or mini-program cover; kept apart so lists never load them."""

    __tablename__ = "content_media"

    item_id: Mapped[int] = mapped_column(ForeignKey("content_items.id"), primary_key=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ContentForward(Base):
    """Append-only: a guide sent an item to a customer."""

    __tablename__ = "content_forwards"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # The idempotency key: "l:<link nonce>" for the sidebar, "m:<mass send>:<customer>".
    ref: Mapped[str] = mapped_column(String(96), unique=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("content_items.id"))
    guide_userid: Mapped[str] = mapped_column(String(64))
    external_userid: Mapped[str | None] = mapped_column(String(64))
    store_id: Mapped[int | None] = mapped_column(Integer)  # the guide's store when sent
    task_id: Mapped[int | None] = mapped_column(BigInteger)
    mass_send_id: Mapped[int | None] = mapped_column(BigInteger)
    via: Mapped[str] = mapped_column(String(16))
    chat_id: Mapped[str | None] = mapped_column(String(64))  # forwarded into this group
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_content_forwards_guide", "guide_userid", "sent_at"),
        Index("ix_content_forwards_store", "store_id", "sent_at"),
        Index("ix_content_forwards_item", "item_id", "sent_at"),
        Index("ix_content_forwards_customer", "external_userid", "sent_at"),
        Index("ix_content_forwards_chat", "chat_id", "sent_at"),
    )


class ContentOpen(Base):
    """Append-only: a tracked link was opened. Only the ids the signed token carried, the time,
    a hash of the user agent and a pseudonymous visitor key; no IP, no raw user agent."""

    __tablename__ = "content_opens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("content_items.id"))
    guide_userid: Mapped[str] = mapped_column(String(64))
    external_userid: Mapped[str | None] = mapped_column(String(64))
    store_id: Mapped[int | None] = mapped_column(Integer)  # the guide's store when opened
    task_id: Mapped[int | None] = mapped_column(BigInteger)
    step: Mapped[str | None] = mapped_column(String(64))
    mass_send_id: Mapped[int | None] = mapped_column(BigInteger)
    # A community step's link: "group:<send id>" or "moment:<send id>" (sop_group_sends).
    via: Mapped[str | None] = mapped_column(String(32))
    link_nonce: Mapped[str] = mapped_column(String(32))
    chat_id: Mapped[str | None] = mapped_column(String(64))  # a link forwarded into a group
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    user_agent_hash: Mapped[str | None] = mapped_column(String(64))
    # "c:<external_userid>" when the link names the customer; "v:<hash>" of the signed visitor
    # id guidebot gave the browser (content.links); "u:" for a visitor without one.
    visitor_key: Mapped[str] = mapped_column(String(160))
    first: Mapped[bool] = mapped_column(default=False)  # the visitor's first open of the item

    __table_args__ = (
        Index("ix_content_opens_item", "item_id", "opened_at"),
        Index("ix_content_opens_guide", "guide_userid", "opened_at"),
        Index("ix_content_opens_store", "store_id", "opened_at"),
        Index("ix_content_opens_customer", "external_userid", "opened_at"),
        Index("ix_content_opens_opened", "opened_at"),  # the sop-behaviour scan's window
    )


class ContentOpenVisitor(Base):
    """One row per (item, visitor), written by the first open: the unique-open count. A visitor
    is the customer a link names, or a browser with a visitor id guidebot signed; an open by
    anyone else is an open, never a visitor."""

    __tablename__ = "content_open_visitors"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("content_items.id"))
    visitor_key: Mapped[str] = mapped_column(String(160))
    guide_userid: Mapped[str] = mapped_column(String(64))
    external_userid: Mapped[str | None] = mapped_column(String(64))
    store_id: Mapped[int | None] = mapped_column(Integer)
    first_opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # links.client_tag of the address a browser visitor came from: caps one client's bursts.
    client_tag: Mapped[str | None] = mapped_column(String(32))
    chat_id: Mapped[str | None] = mapped_column(String(64))  # first came by a group's link

    __table_args__ = (
        UniqueConstraint("item_id", "visitor_key"),
        Index("ix_content_open_visitors_guide", "guide_userid", "first_opened_at"),
        Index("ix_content_open_visitors_store", "store_id", "first_opened_at"),
        Index("ix_content_open_visitors_client", "item_id", "client_tag", "first_opened_at"),
    )


class ContentVisitorCustomer(Base):
    """A browser (its signed visitor id, as content_opens keys it) opened a tracked link naming
    this customer: the tie through which that browser's opens of group-send and Moments links,
    which name nobody, can count for the customer (guidebot.metrics.community). One row per
    (visitor, customer); a browser tied to two customers is shared and ties neither."""

    __tablename__ = "content_visitor_customers"

    visitor_key: Mapped[str] = mapped_column(String(160), primary_key=True)  # "v:<hash>"
    external_userid: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the first such open
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_content_visitor_customers_customer", "external_userid"),)


class MassSend(Base):
    """One add_msg_template task for one guide: an item to the customers a filter picked."""

    __tablename__ = "mass_sends"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    guide_userid: Mapped[str] = mapped_column(String(64))
    item_id: Mapped[int] = mapped_column(ForeignKey("content_items.id"))
    filter: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    recipients: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default=MassSendStatus.PENDING)
    link_nonce: Mapped[str | None] = mapped_column(String(32))  # finds the task when reconciling
    msgid: Mapped[str | None] = mapped_column(String(128))
    fail_list: Mapped[list[str]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # add_msg_template
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_mass_sends_status", "status", "created_at"),
        Index("ix_mass_sends_guide", "guide_userid", "created_at"),
    )


class MassSendResult(Base):
    """get_groupmsg_send_result per customer: 0 unsent, 1 sent, 2 not a friend, 3 capped."""

    __tablename__ = "mass_send_results"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    mass_send_id: Mapped[int] = mapped_column(ForeignKey("mass_sends.id"))
    external_userid: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer, default=0)
    send_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("mass_send_id", "external_userid"),)
