"""The pair's corp tags, as guidebot records them: one record every face reads.

Every way a tag reaches a customer lands here, in `relations.tags` ({"id", "name", "group"}):
a guide's edit in WeCom (edit_external_contact, through the service), a playbook's `tag` step
(its mark_tag makes no callback: doc 92130 "通过API进行的操作不会产生回调", so the step records
what it did itself), the nightly reconciliation (batch/get_by_user's tag ids, named from the
corp tag list) and the corp's tag events (a tag renamed or deleted in the admin console).
Tag triggers, audience filters, mass sends, the customer lists, the sidebar and the bot all
read that one record. Tags the pair gained are announced (TagsGained) once recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, exists, func, literal_column, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.models import EventKind, Relation, RelationStatus
from guidebot.contacts.relations import NewRelation, lock_relation, log_event
from guidebot.events import TagsGained, publish

log = logging.getLogger(__name__)

Tag = dict[str, Any]  # {"id", "name", "group"}


def tag_key(tag: Any) -> str | None:
    """What identifies a recorded tag: its id, else (a tag only named) its name."""
    return str(tag.get("id") or tag.get("name")) if isinstance(tag, dict) else None


def corp_tags(groups: Iterable[Mapping[str, Any]]) -> dict[str, Tag]:
    """get_corp_tag_list's answer (doc 92117) as {tag id: {"id", "name", "group"}}, without
    the tags WeCom marks deleted."""
    found: dict[str, Tag] = {}
    for group in groups:
        if group.get("deleted"):
            continue
        for tag in group.get("tag") or ():
            if tag.get("deleted") or not tag.get("id"):
                continue
            found[str(tag["id"])] = {
                "id": str(tag["id"]),
                "name": tag.get("name"),
                "group": group.get("group_name"),
            }
    return found


def has_tag(dialect: str, wanted: str):
    """A condition on Relation: the pair has the tag named (by id or by name) `wanted`.

    The tags are a JSON list in the row; each engine walks it with its own JSON function."""
    if dialect == "postgresql":
        element = func.json_array_elements(Relation.tags).table_valued("value").alias("tag")
        value = element.c.value
        return exists(
            select(literal_column("1"))
            .select_from(element)
            .where(or_(value.op("->>")("id") == wanted, value.op("->>")("name") == wanted))
        )
    element = func.json_each(Relation.tags).table_valued("value").alias("tag")
    value = element.c.value
    return exists(
        select(literal_column("1"))
        .select_from(element)
        .where(
            or_(
                func.json_extract(value, text("'$.id'")) == wanted,
                func.json_extract(value, text("'$.name'")) == wanted,
            )
        )
    )


async def announce_gained(
    session: AsyncSession,
    relation: Relation | NewRelation,
    before: set[str | None],
    *,
    at: datetime,
    now: datetime,
    source: str,
) -> None:
    """Announce (TagsGained) the relation's tags whose keys were not in `before`."""
    gained = tuple(t for t in relation.tags or () if tag_key(t) not in before | {None})
    if gained:
        await publish(
            session,
            TagsGained(
                guide_userid=relation.guide_userid,
                external_userid=relation.external_userid,
                tags=gained,
                at=at,
                now=now,
                active=relation.status == RelationStatus.ACTIVE,
                source=source,
            ),
        )


async def record_tags(
    session: AsyncSession,
    relation: Relation,
    tags: Sequence[Tag],
    *,
    at: datetime,
    now: datetime,
    source: str,
) -> bool:
    """The pair's tags are now `tags`: recorded, logged (`edited`, reason "tags") and the
    gained ones announced. Whether anything changed."""
    wanted = [dict(t) for t in tags]
    if list(relation.tags or []) == wanted:
        return False
    before = {tag_key(t) for t in relation.tags or ()} - {None}
    relation.tags = wanted
    relation.updated_at = now
    await log_event(
        session,
        relation,
        EventKind.EDITED,
        at=at,
        now=now,
        source=source,
        previous_status=relation.status,
        reason="tags",
    )
    await session.flush()
    await announce_gained(session, relation, before, at=at, now=now, source=source)
    return True


async def mark_tags(
    session: AsyncSession,
    *,
    userid: str,
    external_userid: str,
    add: Sequence[Tag] = (),
    remove: Sequence[str] = (),
    at: datetime,
    now: datetime,
    source: str,
) -> bool:
    """guidebot marked tags on the pair in WeCom (mark_tag): the same change, recorded here.
    A pair guidebot does not know is left alone (reconciliation meets it). Whether it changed."""
    relation = await lock_relation(session, userid, external_userid)
    if relation is None:
        log.info("tags marked on %s/%s, a pair not recorded here", userid, external_userid)
        return False
    dropping = set(remove)
    tags = [t for t in relation.tags or [] if tag_key(t) not in dropping]
    have = {tag_key(t) for t in tags}
    tags += [dict(t) for t in add if tag_key(t) not in have]
    return await record_tags(session, relation, tags, at=at, now=now, source=source)


def named(tag_ids: Sequence[str], known: Mapping[str, Tag], previous: Sequence[Tag]) -> list[Tag]:
    """Tag ids (batch/get_by_user gives only ids) as recorded tags: named from the corp tag
    list, else from what the pair had, else by id alone."""
    had = {t.get("id"): t for t in previous if isinstance(t, dict)}
    return [
        dict(known.get(tid) or had.get(tid) or {"id": tid, "name": None, "group": None})
        for tid in tag_ids
    ]


async def apply_corp_change(
    session: AsyncSession, known: Mapping[str, Tag], *, tag_id: str | None, now: datetime
) -> int:
    """The corp's tag library changed (change_external_tag): every recorded tag takes the name
    and group the library gives it now, and a tag the library no longer has leaves the pairs
    that had it. `tag_id` narrows the walk to pairs with that tag (a tag's own event); None
    walks every tagged pair (a group's event). The number of pairs changed."""
    # "[]" and NULL: nothing to walk.
    query = select(Relation).where(func.coalesce(func.length(cast(Relation.tags, String)), 0) > 2)
    if tag_id is not None:
        query = query.where(has_tag(session.bind.dialect.name, tag_id))
    changed = 0
    for relation in list(await session.scalars(query.order_by(Relation.id))):
        current = [t for t in relation.tags or [] if isinstance(t, dict)]
        renewed = [
            dict(known[str(t.get("id"))]) if str(t.get("id")) in known else t
            for t in current
            if not t.get("id") or str(t.get("id")) in known
        ]
        if renewed != current:
            relation.tags = renewed
            relation.updated_at = now
            changed += 1
    await session.flush()
    return changed


__all__ = [
    "Tag",
    "announce_gained",
    "apply_corp_change",
    "corp_tags",
    "has_tag",
    "mark_tags",
    "named",
    "record_tags",
    "tag_key",
]
