"""The content library's domain functions: items, search, media, forwards, opens, numbers.

An item's fields are checked in guidebot.content.fields; errors are guidebot.content.errors.
A new forward and a customer's open are announced (guidebot.events) for whoever follows them.

Functions that talk to WeCom (media upload) take a session factory and hold no transaction
across the call; everything else takes the caller's session and leaves it the commit.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from guidebot.contacts.directory import store_at
from guidebot.contacts.models import (
    Department,
    EventKind,
    Guide,
    GuideStatus,
    RelationEvent,
    StoreMembership,
)
from guidebot.content.errors import Invalid, NotFound
from guidebot.content.fields import MediaInput, check_complete
from guidebot.content.models import (
    ContentForward,
    ContentItem,
    ContentKind,
    ContentMedia,
    ContentOpen,
    ContentOpenVisitor,
)
from guidebot.db.engine import upsert_insert
from guidebot.events import ContentForwarded, publish
from guidebot.i18n import N_
from guidebot.wecom.client import WeComClient

log = logging.getLogger(__name__)

# WeCom's temporary media lives 3 days; use an id for at most 2.5 days, refresh from 2 days.
MEDIA_LIFETIME = timedelta(days=3)
MEDIA_MAX_AGE = timedelta(days=2, hours=12)
MEDIA_REFRESH_AFTER = timedelta(days=2)


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
        raise Invalid(N_("an item with key %(key)r exists"), "key", key=key)
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
        raise Invalid(N_("an item with key %(key)r exists"), "key", key=fields["key"])
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
    """Items matching every word (title, summary, tags, body) and the tag, best first. `live_at`:
    only items valid then. `restrict_store`: only items for every store or for `store_code`."""
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
    """The item's live WeCom media_id, uploading its bytes when there is none young enough (None
    for kinds without media). No transaction is held during the upload; the last one wins."""
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
    chat_id: str | None = None,
) -> bool:
    """Log one forward (to a customer, or into the group `chat_id`); False when `ref` was logged
    before. A new one is announced (ContentForwarded): its task is done."""
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
            chat_id=chat_id,
            sent_at=sent_at,
            recorded_at=now,
        )
        .on_conflict_do_nothing(index_elements=["ref"])
    )
    if result.rowcount != 1:
        return False
    await publish(
        session,
        ContentForwarded(
            ref=ref,
            item_id=item_id,
            guide_userid=guide,
            external_userid=customer,
            via=via,
            task_id=task_id,
            now=now,
        ),
    )
    return True


@functools.cache  # built once: an expression is immutable, and building it took 0.6 ms a time
def first_forward() -> ColumnElement[bool]:
    """True for a content_forwards row that is the guide's first of its item to its customer:
    the `forwards` KPI counts one per item per customer (a forward into a group: no customer)."""
    earlier = aliased(ContentForward)
    return ContentForward.chat_id.is_(None) & ~exists().where(
        earlier.guide_userid == ContentForward.guide_userid,
        earlier.item_id == ContentForward.item_id,
        earlier.external_userid == ContentForward.external_userid,
        or_(
            earlier.sent_at < ContentForward.sent_at,
            and_(earlier.sent_at == ContentForward.sent_at, earlier.id < ContentForward.id),
        ),
    )


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
    session: AsyncSession, *, guide: str | None, customer: str, limit: int = 5
) -> list[tuple[ContentOpen, ContentItem]]:
    """A customer's latest opens of their guide's links (of any guide's, when guide is None)."""
    mine = [ContentOpen.guide_userid == guide] if guide is not None else []
    rows = await session.execute(
        select(ContentOpen, ContentItem)
        .join(ContentItem, ContentItem.id == ContentOpen.item_id)
        .where(*mine, ContentOpen.external_userid == customer)
        .order_by(ContentOpen.opened_at.desc(), ContentOpen.id.desc())
        .limit(limit)
    )
    return [(o, i) for o, i in rows]


async def recent_forwards(
    session: AsyncSession, *, guide: str | None, customer: str, limit: int = 5
) -> list[tuple[ContentForward, ContentItem]]:
    mine = [ContentForward.guide_userid == guide] if guide is not None else []
    rows = await session.execute(
        select(ContentForward, ContentItem)
        .join(ContentItem, ContentItem.id == ContentForward.item_id)
        .where(*mine, ContentForward.external_userid == customer)
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
