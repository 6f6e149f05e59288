"""What a WeCom call's answer becomes, and the small conversions requests are built with."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = [
    "AppMessageResult",
    "ContactWay",
    "Media",
    "MsgTemplateResult",
    "Page",
    "drop_none",
    "epoch",
    "pipe_joined",
    "pipe_split",
    "walk_pages",
]


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a cursor-paginated answer; ``next_cursor`` is "" on the last page."""

    items: list[dict[str, Any]]
    next_cursor: str

    @classmethod
    def of(cls, answer: dict[str, Any], key: str) -> Page:
        """The page in a WeCom answer whose items are under `key`."""
        return cls(list(answer.get(key, [])), answer.get("next_cursor") or "")


@dataclass(frozen=True, slots=True)
class MsgTemplateResult:
    msgid: str
    fail_list: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ContactWay:
    config_id: str
    qr_code: str | None


@dataclass(frozen=True, slots=True)
class AppMessageResult:
    msgid: str | None
    invaliduser: tuple[str, ...]
    invalidparty: tuple[str, ...]
    invalidtag: tuple[str, ...]
    unlicenseduser: tuple[str, ...]
    response_code: str | None


@dataclass(frozen=True, slots=True)
class Media:
    type: str
    media_id: str
    created_at: int


# ---------------------------------------------------------------------------- request fields


def epoch(value: int | float | datetime) -> int:
    """Seconds since the epoch, as WeCom's time fields take them."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass a tz-aware instant")
        return int(value.timestamp())
    return int(value)


def pipe_joined(value: str | Iterable[str] | None) -> str | None:
    """``a|b|c``, the way message/send takes a list of recipients."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return "|".join(value)


def pipe_split(value: Any) -> tuple[str, ...]:
    """The parts of a ``a|b|c`` answer field (or of a list WeCom sent instead)."""
    if not value:
        return ()
    if isinstance(value, str):
        return tuple(part for part in value.split("|") if part)
    return tuple(value)


def drop_none(body: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value is not None}


async def walk_pages(fetch: Callable[[str], Awaitable[Page]]) -> AsyncIterator[dict[str, Any]]:
    """Every item of a cursor-paginated answer: ``fetch(cursor)`` until the last page."""
    cursor = ""
    seen: set[str] = set()
    while True:
        page = await fetch(cursor)
        for item in page.items:
            yield item
        if not page.next_cursor or page.next_cursor in seen:
            return
        seen.add(page.next_cursor)
        cursor = page.next_cursor
