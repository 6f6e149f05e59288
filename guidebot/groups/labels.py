"""HQ's labels on customer groups. WeCom keeps no tags on groups (its tags are customers'), so
guidebot keeps its own: HQ puts a label on a group or takes it off (the API, the admin group
page, `guidebot groups label`), each change audited by the face that made it, and a playbook's
`group_message` step picks the groups carrying one of its `groups: {labels: [..]}`.

A label is 1 to 32 characters of text without control characters, commas or surrounding
spaces (`sop check` holds a playbook's labels to the same rule, `LABEL_RULE`). Adding a label a
group has, or removing one it lacks, changes nothing and says so (`changed` False), so a
repeated request is harmless and audited once.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.errors import Invalid, NotFound
from guidebot.db.engine import upsert_insert
from guidebot.groups.models import CustomerGroup, GroupLabel

LABEL_MAX = 32
LABEL_RULE = "1 to 32 characters, without control characters, commas or surrounding spaces"
_FORBIDDEN = re.compile(r"[,，]")


def label_problem(text: str) -> str | None:
    """Why `text` is no label (LABEL_RULE), or None when it is one."""
    if not text or len(text) > LABEL_MAX or text != text.strip():
        return LABEL_RULE
    if _FORBIDDEN.search(text) or any(unicodedata.category(c).startswith("C") for c in text):
        return LABEL_RULE
    return None


def clean_label(text: str) -> str:
    """The label as typed, checked (Invalid with the rule, in Chinese then English)."""
    if label_problem(text) is not None:
        raise Invalid(
            f"群标签 {text!r} 无效：1 到 32 个字符，不含控制字符、逗号或首尾空格 / "
            f"group label {text!r} is invalid: {LABEL_RULE}"
        )
    return text


@dataclass(frozen=True, slots=True)
class LabelChange:
    chat_id: str
    before: tuple[str, ...]
    after: tuple[str, ...]
    adding: bool = True

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def audit(self) -> dict:
        """The audit entry's action, target, before and after (the API, the admin page and
        the command line record the same)."""
        return {
            "action": "group_label.add" if self.adding else "group_label.remove",
            "target": f"group:{self.chat_id}",
            "before": {"labels": list(self.before)},
            "after": {"labels": list(self.after)},
        }


async def labels_of(session: AsyncSession, chat_ids: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Each group's labels, sorted (a group without any is absent)."""
    wanted = sorted(set(chat_ids))
    found: dict[str, list[str]] = {}
    for start in range(0, len(wanted), 500):
        for chat_id, label in await session.execute(
            select(GroupLabel.chat_id, GroupLabel.label)
            .where(GroupLabel.chat_id.in_(wanted[start : start + 500]))
            .order_by(GroupLabel.chat_id, GroupLabel.label)
        ):
            found.setdefault(chat_id, []).append(label)
    return {chat_id: tuple(labels) for chat_id, labels in found.items()}


async def _group_labels(session: AsyncSession, chat_id: str) -> tuple[str, ...]:
    if await session.get(CustomerGroup, chat_id) is None:
        raise NotFound(f"没有这个客户群 / no customer group {chat_id!r}")
    return (await labels_of(session, [chat_id])).get(chat_id, ())


async def add_label(
    session: AsyncSession, chat_id: str, label: str, *, by: str, now: datetime
) -> LabelChange:
    """Put the label on the group (in the caller's transaction)."""
    label = clean_label(label)
    before = await _group_labels(session, chat_id)
    if label not in before:
        insert = upsert_insert(session.bind.dialect.name)
        await session.execute(
            insert(GroupLabel)
            .values(chat_id=chat_id, label=label, set_by=by[:100], set_at=now)
            .on_conflict_do_nothing()
        )
    return LabelChange(chat_id, before, tuple(sorted({*before, label})))


async def change_label(
    session: AsyncSession, chat_id: str, label: str, *, adding: bool, by: str, now: datetime
) -> LabelChange:
    """Put the label on the group or take it off (in the caller's transaction)."""
    if adding:
        return await add_label(session, chat_id, label, by=by, now=now)
    return await remove_label(session, chat_id, label)


async def remove_label(session: AsyncSession, chat_id: str, label: str) -> LabelChange:
    """Take the label off the group (in the caller's transaction)."""
    before = await _group_labels(session, chat_id)
    if label in before:
        await session.execute(
            delete(GroupLabel).where(GroupLabel.chat_id == chat_id, GroupLabel.label == label)
        )
    return LabelChange(chat_id, before, tuple(x for x in before if x != label), adding=False)


async def groups_labelled(session: AsyncSession, labels: Iterable[str]) -> set[str]:
    """The groups carrying at least one of `labels`."""
    wanted = sorted(set(labels))
    if not wanted:
        return set()
    return set(
        await session.scalars(select(GroupLabel.chat_id).where(GroupLabel.label.in_(wanted)))
    )


__all__ = [
    "LABEL_MAX",
    "LABEL_RULE",
    "LabelChange",
    "add_label",
    "clean_label",
    "groups_labelled",
    "label_problem",
    "labels_of",
    "remove_label",
]
