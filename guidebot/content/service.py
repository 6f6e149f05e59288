"""The content library's domain functions: items, search, media, forwards, opens, numbers.

Functions that talk to WeCom (media upload) take a session factory and never hold a database
transaction across the network call; everything else takes the caller's session and leaves
the commit to it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, String, and_, exists, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from guidebot.contacts.directory import store_at
from guidebot.contacts.models import Department, EventKind, Guide, RelationEvent
from guidebot.content import tasks
from guidebot.content.links import LinkClaims
from guidebot.content.models import (
    ContentForward,
    ContentItem,
    ContentKind,
    ContentMedia,
    ContentOpen,
    ContentOpenVisitor,
)
from guidebot.db.engine import upsert_insert
from guidebot.sop.models import Action, SopTask, TaskStatus
from guidebot.wecom.client import WeComClient

log = logging.getLogger(__name__)

# WeCom's temporary media lives 3 days; use an id for at most 2.5 days, refresh from 2 days.
MEDIA_LIFETIME = timedelta(days=3)
MEDIA_MAX_AGE = timedelta(days=2, hours=12)
MEDIA_REFRESH_AFTER = timedelta(days=2)
MEDIA_LIMITS = {"image": 10 << 20, "file": 20 << 20}

FIELDS = (
    "key",
    "kind",
    "title",
    "summary",
    "cover_url",
    "body",
    "url",
    "miniprogram",
    "tags",
    "stores",
    "valid_from",
    "valid_to",
    "media",
)


class ContentError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotFound(ContentError):
    pass


class Invalid(ContentError):
    pass


@dataclass(frozen=True, slots=True)
class MediaInput:
    filename: str
    content_type: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


# ---- validation ------------------------------------------------------------------------------


# Control characters end up in a Location header, a multipart header to WeCom or a message:
# none anywhere, except line feeds in words people read (a summary, a text item's body).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LF = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def _no_control(value: str, name: str, *, multiline: bool = False) -> str:
    if (_CONTROL_BUT_LF if multiline else _CONTROL).search(value):
        allowed = "other than line feeds" if multiline else "such as line breaks"
        raise Invalid(f"{name!r} may not hold control characters {allowed}")
    return value


def _text(
    value: Any,
    name: str,
    *,
    limit: int | None = None,
    required: bool = False,
    multiline: bool = False,
) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip() and not required):
        if required:
            raise Invalid(f"{name!r} is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"{name!r} must be a non-empty string")
    value = _no_control(value.strip(), name, multiline=multiline)
    if limit is not None and len(value) > limit:
        raise Invalid(f"{name!r} is longer than {limit} characters")
    return value


def _url(value: Any, name: str) -> str | None:
    text = _text(value, name, limit=2000)
    if text is None:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Invalid(f"{name!r} must be an http(s) URL")
    return text


def _words(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise Invalid(f"{name!r} must be a list of strings")
    out: list[str] = []
    for v in value:
        text = _no_control(str(v).strip(), name)
        if not text or "|" in text or len(text) > 64:
            raise Invalid(f"{name!r}: each entry is 1-64 characters without '|'")
        if text not in out:
            out.append(text)
    return out


def parse_instant(value: Any, name: str, tz: ZoneInfo) -> datetime | None:
    """An ISO 8601 instant, a date (midnight in `tz`), or a datetime; naive means `tz`."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        instant = value
    elif isinstance(value, date):
        instant = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            instant = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise Invalid(f"{name!r} must be an ISO 8601 date or time, got {value!r}") from None
    else:
        raise Invalid(f"{name!r} must be an ISO 8601 date or time")
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=tz)
    return instant.astimezone(UTC)


def media_from_json(value: Any) -> MediaInput:
    """{"filename", "content_type", "data_base64"} as the API takes it."""
    if not isinstance(value, Mapping):
        raise Invalid("'media' must be an object with filename, content_type and data_base64")
    filename = _text(value.get("filename"), "media.filename", limit=255, required=True)
    content_type = _text(value.get("content_type"), "media.content_type", limit=100) or (
        "application/octet-stream"
    )
    raw = value.get("data_base64")
    if not isinstance(raw, str) or not raw:
        raise Invalid("'media.data_base64' must be base64 text")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid("'media.data_base64' is not valid base64") from None
    return MediaInput(filename or "media", content_type, data)


def _check_media(kind: str, media: MediaInput) -> None:
    # What the importer read from a file is checked here too: both go into WeCom's headers.
    _no_control(media.filename, "media.filename")
    _no_control(media.content_type, "media.content_type")
    wecom_kind = "file" if kind == ContentKind.FILE else "image"
    if len(media.data) < 5:
        raise Invalid("media has fewer than 5 bytes")
    if len(media.data) > MEDIA_LIMITS[wecom_kind]:
        raise Invalid(
            f"media is over WeCom's {MEDIA_LIMITS[wecom_kind] >> 20} MB {wecom_kind} limit"
        )
    if wecom_kind == "image" and not media.data.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")):
        raise Invalid("an image (or a mini-program cover) must be a JPG or PNG")


def clean_fields(data: Mapping[str, Any], *, tz: ZoneInfo, partial: bool = False) -> dict[str, Any]:
    """The fields of `data` checked and normalised; unknown names are errors.

    `media` may already be a MediaInput (the importer reads files itself).
    """
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise Invalid(f"unknown field {unknown[0]!r}; fields are {', '.join(FIELDS)}")
    out: dict[str, Any] = {}
    if "key" in data:
        key = _text(data["key"], "key", limit=128, required=True)
        if key is not None and not re.fullmatch(r"[A-Za-z0-9_.:/-]+", key):
            raise Invalid("'key' may hold letters, digits and _ . : / - only")
        out["key"] = key
    if "kind" in data or not partial:
        kind = data.get("kind")
        if kind not in ContentKind.ALL:
            raise Invalid(f"'kind' must be one of {', '.join(ContentKind.ALL)}")
        out["kind"] = kind
    if "title" in data or not partial:
        out["title"] = _text(data.get("title"), "title", limit=255, required=True)
    for name, limit in (("summary", 2000), ("body", 4000)):
        if name in data:
            out[name] = _text(data[name], name, limit=limit, multiline=True)
    for name in ("cover_url", "url"):
        if name in data:
            out[name] = _url(data[name], name)
    if "miniprogram" in data:
        mp = data["miniprogram"]
        if mp is None:
            out["miniprogram_appid"] = out["miniprogram_page"] = None
        elif isinstance(mp, Mapping) and not set(mp) - {"appid", "page"}:
            out["miniprogram_appid"] = _text(mp.get("appid"), "miniprogram.appid", limit=64)
            out["miniprogram_page"] = _text(mp.get("page"), "miniprogram.page", limit=500)
        else:
            raise Invalid("'miniprogram' must be {appid, page}")
    if "tags" in data:
        out["tags"] = _words(data["tags"], "tags")
    if "stores" in data:
        out["stores"] = _words(data["stores"], "stores")
    for name in ("valid_from", "valid_to"):
        if name in data:
            out[name] = parse_instant(data[name], name, tz)
    if "media" in data:
        media = data["media"]
        out["media"] = (
            None
            if media is None
            else media
            if isinstance(media, MediaInput)
            else media_from_json(media)
        )
    return out


def check_complete(item: ContentItem, media: MediaInput | ContentMedia | None) -> None:
    """What each kind needs to be sent at all."""
    kind = item.kind
    if kind == ContentKind.TEXT and not item.body:
        raise Invalid("a text item needs 'body'")
    if kind == ContentKind.LINK and not item.url:
        raise Invalid("a link item needs 'url'")
    if kind == ContentKind.MINIPROGRAM and not (item.miniprogram_appid and item.miniprogram_page):
        raise Invalid("a miniprogram item needs miniprogram.appid and miniprogram.page")
    if kind == ContentKind.MINIPROGRAM and not item.cover_url:
        # sendChatMessage takes the card's picture by URL (imgUrl), mass sends by media id.
        raise Invalid("a miniprogram item needs 'cover_url' (and 'media', the same picture)")
    if kind in ContentKind.WITH_MEDIA and media is None:
        cover = "its cover image" if kind == ContentKind.MINIPROGRAM else "the file"
        raise Invalid(f"a {kind} item needs 'media' ({cover})")
    if kind in ContentKind.WITH_MEDIA and isinstance(media, MediaInput):
        _check_media(kind, media)
    if item.valid_from and item.valid_to and item.valid_to <= item.valid_from:
        raise Invalid("'valid_to' must be after 'valid_from'")


def _reindex(item: ContentItem) -> None:
    words = [item.title, item.summary or "", " ".join(item.tags or []), (item.body or "")[:2000]]
    item.search_text = " ".join(words).lower()
    item.tag_index = "|" + "|".join(t.lower() for t in item.tags or []) + "|" if item.tags else ""
    item.store_index = "|" + "|".join(item.stores or []) + "|" if item.stores else ""


# ---- items -----------------------------------------------------------------------------------


async def get_item(session: AsyncSession, item_id: int, *, deleted: bool = False) -> ContentItem:
    item = await session.get(ContentItem, item_id)
    if item is None or (item.deleted_at is not None and not deleted):
        raise NotFound(f"no content item {item_id}")
    return item


async def get_media(session: AsyncSession, item_id: int) -> ContentMedia | None:
    return await session.get(ContentMedia, item_id)


async def item_by_key(session: AsyncSession, key: str) -> ContentItem | None:
    return await session.scalar(select(ContentItem).where(ContentItem.key == key))


async def create_item(session: AsyncSession, fields: dict[str, Any], now: datetime) -> ContentItem:
    fields = dict(fields)
    media = fields.pop("media", None)
    key = fields.pop("key", None) or f"item-{secrets.token_hex(6)}"
    if await item_by_key(session, key) is not None:
        raise Invalid(f"an item with key {key!r} exists")
    item = ContentItem(key=key, tags=[], stores=[], created_at=now, updated_at=now)
    for name, value in fields.items():
        setattr(item, name, value)
    check_complete(item, media)
    _reindex(item)
    session.add(item)
    await session.flush()
    if media is not None:
        _set_media(session, item, None, media)
    return item


async def update_item(
    session: AsyncSession, item: ContentItem, fields: dict[str, Any], now: datetime
) -> list[str]:
    """Apply `fields`; the names that changed (an unchanged import changes nothing)."""
    fields = dict(fields)
    media = fields.pop("media", None) if "media" in fields else ...
    renamed = "key" in fields and fields["key"] != item.key
    if renamed and await item_by_key(session, fields["key"]) is not None:
        raise Invalid(f"an item with key {fields['key']!r} exists")
    changed = [name for name, value in fields.items() if getattr(item, name) != value]
    for name in changed:
        setattr(item, name, fields[name])
    current = await get_media(session, item.id)
    if media is not ...:
        if media is None and current is not None:
            await session.delete(current)
            current = None
            changed.append("media")
        elif isinstance(media, MediaInput) and (current is None or current.sha256 != media.sha256):
            _set_media(session, item, current, media)
            current = None
            changed.append("media")
    check_complete(item, media if isinstance(media, MediaInput) else current)
    if changed:
        _reindex(item)
        item.updated_at = now
    return changed


def _set_media(
    session: AsyncSession, item: ContentItem, current: ContentMedia | None, media: MediaInput
) -> None:
    if current is None:
        current = ContentMedia(item_id=item.id)
        session.add(current)
    current.filename = media.filename
    current.content_type = media.content_type
    current.sha256 = media.sha256
    current.data = media.data
    item.media_id = None  # new bytes: the old upload no longer shows them
    item.media_uploaded_at = None


async def delete_item(session: AsyncSession, item: ContentItem, now: datetime) -> None:
    item.deleted_at = now
    item.updated_at = now


def is_live(item: ContentItem, now: datetime) -> bool:
    return (
        item.deleted_at is None
        and (item.valid_from is None or item.valid_from <= now)
        and (item.valid_to is None or now < item.valid_to)
    )


def _like(word: str) -> str:
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _score(item: ContentItem, words: list[str]) -> int:
    title = item.title.lower()
    tags = (item.tag_index or "").lower()
    summary = (item.summary or "").lower()
    score = 0
    for word in words:
        score += 4 * (word in title) + 3 * (f"|{word}|" in tags) + 2 * (word in tags)
        score += word in summary
    return score


async def search_items(
    session: AsyncSession,
    *,
    words: str | None = None,
    tag: str | None = None,
    kind: str | None = None,
    live_at: datetime | None = None,
    store_code: str | None = None,
    restrict_store: bool = False,
    limit: int = 20,
    offset: int = 0,
) -> tuple[list[ContentItem], int]:
    """Items matching every word (title, summary, tags, body) and the tag, best first.

    `live_at`: only items valid then. `restrict_store`: only items for every store or for
    `store_code` (a guide without a store sees the every-store items).
    """
    conditions: list[Any] = [ContentItem.deleted_at.is_(None)]
    terms = [w for w in (words or "").lower().split() if w][:8]
    for term in terms:
        conditions.append(ContentItem.search_text.like(_like(term), escape="\\"))
    if tag:
        conditions.append(ContentItem.tag_index.like(_like(f"|{tag.lower()}|"), escape="\\"))
    if kind:
        conditions.append(ContentItem.kind == kind)
    if live_at is not None:
        conditions.append(or_(ContentItem.valid_from.is_(None), ContentItem.valid_from <= live_at))
        conditions.append(or_(ContentItem.valid_to.is_(None), ContentItem.valid_to > live_at))
    if restrict_store:
        scope = ContentItem.store_index == ""
        if store_code:
            scope = or_(scope, ContentItem.store_index.like(_like(f"|{store_code}|"), escape="\\"))
        conditions.append(scope)
    query = select(ContentItem).where(and_(*conditions))
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    if not terms:
        items = await session.scalars(
            query.order_by(ContentItem.updated_at.desc(), ContentItem.id.desc())
            .offset(offset)
            .limit(limit)
        )
        return list(items), total
    # Rank the matches (at most a few hundred for a real library) in Python.
    found = list(await session.scalars(query.order_by(ContentItem.updated_at.desc()).limit(1000)))
    found.sort(key=lambda item: (-_score(item, terms), -item.updated_at.timestamp(), -item.id))
    return found[offset : offset + limit], total


# ---- WeCom media -----------------------------------------------------------------------------


def media_fresh(item: ContentItem, now: datetime, max_age: timedelta = MEDIA_MAX_AGE) -> bool:
    return (
        item.media_id is not None
        and item.media_uploaded_at is not None
        and now - item.media_uploaded_at < max_age
    )


async def ensure_media(
    sessions: async_sessionmaker[AsyncSession],
    wecom: WeComClient,
    item_id: int,
    now: datetime,
    *,
    max_age: timedelta = MEDIA_MAX_AGE,
) -> str | None:
    """The item's live WeCom media_id, uploading its bytes when there is none young enough.

    None for kinds without media. No transaction is held during the upload; two instances
    uploading at once both get valid ids, and the last one written is used.
    """
    async with sessions() as session:
        item = await get_item(session, item_id, deleted=True)
        if item.kind not in ContentKind.WITH_MEDIA:
            return None
        if media_fresh(item, now, max_age):
            return item.media_id
        media = await get_media(session, item_id)
        if media is None:
            raise Invalid(f"content item {item_id} has no media to upload")
        kind = "file" if item.kind == ContentKind.FILE else "image"
        filename, content_type, data = media.filename, media.content_type, media.data
    uploaded = await wecom.upload_media(kind, filename, data, content_type)
    async with sessions() as session, session.begin():
        await session.execute(
            update(ContentItem)
            .where(ContentItem.id == item_id)
            .values(media_id=uploaded.media_id, media_uploaded_at=now)
        )
    log.info("content item %s: uploaded %s as WeCom media", item_id, kind)
    return uploaded.media_id


async def refresh_media(
    sessions: async_sessionmaker[AsyncSession], wecom: WeComClient, now: datetime, limit: int = 50
) -> int:
    """Re-upload live items whose media is missing or older than MEDIA_REFRESH_AFTER."""
    async with sessions() as session:
        ids = list(
            await session.scalars(
                select(ContentItem.id)
                .where(
                    ContentItem.kind.in_(ContentKind.WITH_MEDIA),
                    ContentItem.deleted_at.is_(None),
                    or_(ContentItem.valid_to.is_(None), ContentItem.valid_to > now),
                    or_(
                        ContentItem.media_uploaded_at.is_(None),
                        ContentItem.media_uploaded_at < now - MEDIA_REFRESH_AFTER,
                    ),
                )
                .order_by(ContentItem.id)
                .limit(limit)
            )
        )
    refreshed = 0
    for item_id in ids:
        try:
            await ensure_media(sessions, wecom, item_id, now, max_age=MEDIA_REFRESH_AFTER)
            refreshed += 1
        except Exception as exc:  # one bad item must not stop the others
            log.warning("content item %s: media refresh failed: %s", item_id, exc)
    return refreshed


# ---- forwards and opens ----------------------------------------------------------------------


async def record_forward(
    session: AsyncSession,
    *,
    ref: str,
    item_id: int,
    guide: str,
    customer: str | None,
    via: str,
    sent_at: datetime,
    now: datetime,
    task_id: int | None = None,
    mass_send_id: int | None = None,
) -> bool:
    """Log one forward; False when `ref` was logged before (a repeated confirmation)."""
    insert = upsert_insert(session.bind.dialect.name)
    result = await session.execute(
        insert(ContentForward)
        .values(
            ref=ref,
            item_id=item_id,
            guide_userid=guide,
            external_userid=customer,
            store_id=await store_at(session, guide, sent_at),
            task_id=task_id,
            mass_send_id=mass_send_id,
            via=via,
            sent_at=sent_at,
            recorded_at=now,
        )
        .on_conflict_do_nothing(index_elements=["ref"])
    )
    return result.rowcount == 1


def first_forward() -> ColumnElement[bool]:
    """True for a content_forwards row that is the guide's first of its item to its customer:
    the `forwards` KPI counts one per item per customer, however often it is sent again."""
    earlier = aliased(ContentForward)
    return ~exists().where(
        earlier.guide_userid == ContentForward.guide_userid,
        earlier.item_id == ContentForward.item_id,
        earlier.external_userid == ContentForward.external_userid,
        or_(
            earlier.sent_at < ContentForward.sent_at,
            and_(earlier.sent_at == ContentForward.sent_at, earlier.id < ContentForward.id),
        ),
    )


def link_forwarded(nonce: Any, task_id: Any) -> ColumnElement[bool]:
    """True when the tracked link with this nonce and task (values, or content_opens columns)
    reached its customer: the guide's forward of it was logged, or the SOP message that carried
    it was sent to the customer (a welcome, a mass-send task). A link only prepared in the
    sidebar, or a reminder's link in the guide's own hands, was not: opening it is nobody's
    touch on the customer."""
    logged = exists().where(ContentForward.ref == literal("l:", String) + nonce)
    by_task = exists().where(
        SopTask.id == task_id,
        SopTask.action.in_(Action.TO_CUSTOMER),
        SopTask.status.in_((TaskStatus.SENT, TaskStatus.DONE)),
    )
    return or_(logged, by_task)


# A client (one address) adds at most this many unique visitors of one item in the window; its
# further new visitors' opens still count as opens.
VISITOR_BURST = 20
VISITOR_BURST_WINDOW = timedelta(minutes=10)
UNKNOWN_VISITOR = "u:"


def visitor_key(claims: LinkClaims, visitor: str | None) -> str:
    """Who opened: the customer the link names, else the browser's signed visitor id (its hash;
    one visitor whichever guide's link they open), else nobody known (UNKNOWN_VISITOR)."""
    if claims.customer:
        return f"c:{claims.customer}"
    if visitor:
        return "v:" + hashlib.sha256(visitor.encode()).hexdigest()[:32]
    return UNKNOWN_VISITOR


async def _first_visit(
    session: AsyncSession,
    claims: LinkClaims,
    key: str,
    *,
    now: datetime,
    store_id: int | None,
    client: str | None,
) -> bool:
    """Write the (item, visitor) row unless it exists or the client's burst is spent; True when
    written: a unique open."""
    if key == UNKNOWN_VISITOR:
        return False
    if not key.startswith("c:") and client is not None:
        recent = await session.scalar(
            select(func.count()).where(
                ContentOpenVisitor.item_id == claims.item_id,
                ContentOpenVisitor.client_tag == client,
                ContentOpenVisitor.first_opened_at > now - VISITOR_BURST_WINDOW,
            )
        )
        if recent >= VISITOR_BURST:
            log.info("tracked link: a client's new visitors of item %s are capped", claims.item_id)
            return False
    insert = upsert_insert(session.bind.dialect.name)
    written = await session.execute(
        insert(ContentOpenVisitor)
        .values(
            item_id=claims.item_id,
            visitor_key=key,
            guide_userid=claims.guide,
            external_userid=claims.customer,
            store_id=store_id,
            first_opened_at=now,
            client_tag=None if key.startswith("c:") else client,
        )
        .on_conflict_do_nothing(index_elements=["item_id", "visitor_key"])
    )
    return written.rowcount == 1


async def record_open(
    session: AsyncSession,
    claims: LinkClaims,
    *,
    now: datetime,
    user_agent: str | None,
    visitor: str | None = None,
    client: str | None = None,
) -> bool:
    """Log an open of a genuine link; True when it is this visitor's first open of the item (a
    unique open). `visitor` is a verified visitor id (links.verify_visitor), `client` the
    client's links.client_tag; without a customer or a visitor id the open has no visitor.

    A customer's open of a link that reached them (link_forwarded) is the `content.opened` goal
    of the playbooks they are in with the guide.
    """
    key = visitor_key(claims, visitor)
    store_id = await store_at(session, claims.guide, now)
    first = await _first_visit(session, claims, key, now=now, store_id=store_id, client=client)
    session.add(
        ContentOpen(
            item_id=claims.item_id,
            guide_userid=claims.guide,
            external_userid=claims.customer,
            store_id=store_id,
            task_id=claims.task_id,
            step=claims.step,
            mass_send_id=claims.mass_send_id,
            link_nonce=claims.nonce,
            issued_at=claims.issued_at,
            opened_at=now,
            user_agent_hash=(
                hashlib.sha256(user_agent.encode()).hexdigest() if user_agent else None
            ),
            visitor_key=key,
            first=first,
        )
    )
    if claims.customer is not None and await session.scalar(
        select(link_forwarded(claims.nonce, claims.task_id))
    ):
        await tasks.content_opened(session, claims.guide, claims.customer, now)
    return first


async def record_visitor(
    session: AsyncSession, claims: LinkClaims, *, now: datetime, visitor: str, client: str | None
) -> bool:
    """A browser came back with the visitor id it was just given, from an open already logged
    without one: that open was this visitor's. True when it is their first of the item."""
    key = visitor_key(claims, visitor)
    store_id = await store_at(session, claims.guide, now)
    return await _first_visit(session, claims, key, now=now, store_id=store_id, client=client)


async def item_numbers(session: AsyncSession, item_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    ids = list(item_ids)
    out = {i: {"forwards": 0, "opens": 0, "unique_opens": 0} for i in ids}
    if not ids:
        return out
    for column, model, name in (
        (ContentForward.item_id, ContentForward, "forwards"),
        (ContentOpen.item_id, ContentOpen, "opens"),
        (ContentOpenVisitor.item_id, ContentOpenVisitor, "unique_opens"),
    ):
        rows = await session.execute(
            select(column, func.count()).select_from(model).where(column.in_(ids)).group_by(column)
        )
        for item_id, count in rows:
            out[item_id][name] = count
    return out


async def recent_opens(
    session: AsyncSession, *, guide: str, customer: str, limit: int = 5
) -> list[tuple[ContentOpen, ContentItem]]:
    rows = await session.execute(
        select(ContentOpen, ContentItem)
        .join(ContentItem, ContentItem.id == ContentOpen.item_id)
        .where(ContentOpen.guide_userid == guide, ContentOpen.external_userid == customer)
        .order_by(ContentOpen.opened_at.desc(), ContentOpen.id.desc())
        .limit(limit)
    )
    return [(o, i) for o, i in rows]


async def recent_forwards(
    session: AsyncSession, *, guide: str, customer: str, limit: int = 5
) -> list[tuple[ContentForward, ContentItem]]:
    rows = await session.execute(
        select(ContentForward, ContentItem)
        .join(ContentItem, ContentItem.id == ContentForward.item_id)
        .where(ContentForward.guide_userid == guide, ContentForward.external_userid == customer)
        .order_by(ContentForward.sent_at.desc(), ContentForward.id.desc())
        .limit(limit)
    )
    return [(f, i) for f, i in rows]


# ---- numbers for the guide -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Activity:
    new_customers: int = 0
    lost_customers: int = 0
    forwards: int = 0
    unique_opens: int = 0

    NAMES = ("new_customers", "lost_customers", "forwards", "unique_opens")


async def activity(
    session: AsyncSession, guides: list[str], start: datetime, end: datetime
) -> dict[str, Activity]:
    """Per guide, in [start, end): customers added and lost (relation_events), forwards, and
    first opens of links the guide sent."""
    counts: dict[str, dict[str, int]] = {g: dict.fromkeys(Activity.NAMES, 0) for g in guides}
    if not guides:
        return {}
    events = await session.execute(
        select(RelationEvent.guide_userid, RelationEvent.kind, func.count())
        .where(
            RelationEvent.guide_userid.in_(guides),
            RelationEvent.kind.in_((EventKind.ADDED, EventKind.REACTIVATED, EventKind.LOST)),
            RelationEvent.occurred_at >= start,
            RelationEvent.occurred_at < end,
        )
        .group_by(RelationEvent.guide_userid, RelationEvent.kind)
    )
    for guide, kind, count in events:
        name = "lost_customers" if kind == EventKind.LOST else "new_customers"
        counts[guide][name] += count
    for column, time_column, name, *only in (
        (ContentForward.guide_userid, ContentForward.sent_at, "forwards", first_forward()),
        (ContentOpenVisitor.guide_userid, ContentOpenVisitor.first_opened_at, "unique_opens"),
    ):
        rows = await session.execute(
            select(column, func.count())
            .where(column.in_(guides), time_column >= start, time_column < end, *only)
            .group_by(column)
        )
        for guide, count in rows:
            counts[guide][name] += count
    return {g: Activity(**c) for g, c in counts.items()}


async def guide_store(session: AsyncSession, guide: str, now: datetime) -> Department | None:
    store_id = await store_at(session, guide, now)
    return await session.get(Department, store_id) if store_id is not None else None


async def store_guides(session: AsyncSession, store_id: int, now: datetime) -> list[str]:
    """Active guides whose store (as store_at decides) is `store_id` now."""
    from guidebot.contacts.models import GuideStatus, StoreMembership

    candidates = list(
        await session.scalars(
            select(StoreMembership.guide_userid)
            .join(Guide, Guide.userid == StoreMembership.guide_userid)
            .where(
                StoreMembership.store_id == store_id,
                StoreMembership.valid_to.is_(None),
                Guide.status == GuideStatus.ACTIVE,
            )
            .distinct()
        )
    )
    return [g for g in sorted(candidates) if await store_at(session, g, now) == store_id]
