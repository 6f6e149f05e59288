"""Who may enroll: the guide-customer pair as a playbook's audience filter sees it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.models import Department, Relation
from guidebot.events import PairFacts, StoreRef
from guidebot.sop.playbook import Audience

_BIRTHDAY = re.compile(r"生日\s*[:：]\s*(\d{1,2})\s*[-/月.]\s*(\d{1,2})")


def tag_keys(tags: Iterable[dict[str, Any]] | None) -> set[str]:
    """A relation's tags as every string a playbook may name them by: id and name."""
    keys: set[str] = set()
    for tag in tags or ():
        for key in ("id", "name"):
            value = tag.get(key) if isinstance(tag, dict) else None
            if value:
                keys.add(str(value))
    return keys


@dataclass(frozen=True, slots=True)
class Subject:
    """The guide↔customer pair as the audience filter and the planner see it."""

    guide_userid: str
    external_userid: str
    relation_status: str
    store_id: int | None
    store_code: str | None
    store_zone: str | None
    channel: str | None
    state: str | None
    tags: frozenset[str]


def audience_matches(audience: Audience, subject: Subject) -> bool:
    checks = (
        (audience.channels, {subject.channel} if subject.channel else set()),
        (audience.states, {subject.state} if subject.state else set()),
        (audience.stores, {subject.store_code} if subject.store_code else set()),
        (audience.tags, set(subject.tags)),
    )
    return all(not wanted or bool(set(wanted) & have) for wanted, have in checks)


_STORES = Department.__table__
# Built once, Core: every add asks (an ORM load of the whole department cost several times more).
_STORE = select(_STORES.c.code, _STORES.c.timezone).where(_STORES.c.id == bindparam("id"))


async def subject_for(
    session: AsyncSession, relation: Relation | PairFacts, known: StoreRef | None = None
) -> Subject:
    """The pair as audiences see it; `known`: its store as the emitter of the fact read it
    (RelationAdded.store), else it is read here."""
    store: Any = None
    if known is not None and known.id == relation.store_id:
        store = known
    elif relation.store_id:
        store = (await session.execute(_STORE, {"id": relation.store_id})).first()
    return Subject(
        guide_userid=relation.guide_userid,
        external_userid=relation.external_userid,
        relation_status=relation.status,
        store_id=relation.store_id,
        store_code=store.code if store is not None else None,
        store_zone=store.timezone if store is not None else None,
        channel=relation.channel,
        state=relation.state,
        tags=frozenset(tag_keys(relation.tags)),
    )


def birthday_of(relation: Relation) -> tuple[int, int] | None:
    """(month, day) from `生日:MM-DD` in the guide's remark or description, if written there."""
    for text in (relation.description, relation.remark):
        match = _BIRTHDAY.search(text or "")
        if match:
            month, day = int(match.group(1)), int(match.group(2))
            if 1 <= month <= 12 and 1 <= day <= 31:
                return month, day
    return None
