"""Import the content library from YAML, idempotently on each item's `key`.

    items:
      - key: spring-arrivals           # stable: importing again updates this item
        kind: link                     # text | link | image | miniprogram | file
        title: 春季新品上市
        summary: 十款新品，门店同步到货
        url: https://example.com/spring
        cover_url: https://example.com/spring.jpg   # or a path on guidebot itself,
                                       # /sidebar/static/cover-spring.png (GUIDEBOT_PUBLIC_URL)
        tags: [新品, 春季]
        stores: []                     # store codes; empty or absent: every store
        valid_from: 2026-03-01         # a date is midnight in GUIDEBOT_TIMEZONE
        valid_to: 2026-06-01
      - key: care-card
        kind: image
        title: 护理小卡
        media: {file: media/care.png}  # relative to this file; or {filename, content_type,
                                       #  data_base64}

Items in the database that the file does not name are left alone; an item deleted through the
API stays deleted (reported as skipped). One bad item fails the whole import with a message
naming the file and the item, and nothing is written.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.config import DEFAULT_PUBLIC_URL
from guidebot.content import service
from guidebot.content.errors import ContentError, Invalid
from guidebot.content.fields import MediaInput, clean_fields
from guidebot.db.migrate import open_database

DEMO_CONTENT = Path(__file__).with_name("demo_content.yaml")


@dataclass(slots=True)
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # deleted through the API

    def summary(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.skipped)} skipped (deleted)"
        )


def _media(raw: Any, base: Path) -> Any:
    if not isinstance(raw, Mapping) or "file" not in raw:
        return raw  # None, or the API's {filename, content_type, data_base64}
    extra = set(raw) - {"file", "filename", "content_type"}
    if extra:
        raise Invalid(f"media: unknown field {sorted(extra)[0]!r}")
    relative = raw["file"]
    if not isinstance(relative, str) or not relative:
        raise Invalid("media.file must be a path relative to the YAML file")
    path = (base / relative).resolve()
    if not path.is_relative_to(base.resolve()):
        raise Invalid(f"media.file {relative!r} is outside the content directory")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise Invalid(f"media.file {relative!r}: {exc.strerror}") from None
    content_type = raw.get("content_type") or (
        mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    )
    return MediaInput(str(raw.get("filename") or path.name), str(content_type), data)


def _on_guidebot(data: dict[str, Any], base_url: str | None) -> dict[str, Any]:
    """Root-relative cover_url and url resolved against guidebot's public URL."""
    if base_url:
        for name in ("cover_url", "url"):
            value = data.get(name)
            if isinstance(value, str) and value.startswith("/") and not value.startswith("//"):
                data[name] = base_url.rstrip("/") + value
    return data


def load_items(path: Path) -> list[dict[str, Any]]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ContentError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ContentError(f"{path}: not valid YAML: {exc}") from None
    items = document.get("items") if isinstance(document, Mapping) else document
    if not isinstance(items, list):
        raise ContentError(f"{path}: expected a list of items (or a mapping with 'items')")
    return items


async def import_content(
    session: AsyncSession,
    path: str | Path,
    *,
    now: datetime | None = None,
    timezone: str = "Asia/Shanghai",
    base_url: str | None = None,
) -> ImportReport:
    """Create or update every item of the YAML file at `path` (the caller commits).

    With `base_url` (guidebot's public URL), a `cover_url` or `url` that is a path on guidebot
    itself ("/sidebar/static/...") becomes that URL's: a customer's phone must reach it."""
    path = Path(path)
    now = now or datetime.now(UTC)
    tz = ZoneInfo(timezone)
    report = ImportReport()
    seen: set[str] = set()
    for index, raw in enumerate(load_items(path), start=1):
        where = f"{path}: item {index}"
        try:
            if not isinstance(raw, Mapping):
                raise Invalid("must be a mapping")
            key = raw.get("key")
            if not isinstance(key, str) or not key:
                raise Invalid("'key' is required (a stable name for the item)")
            where = f"{path}: item {index} ({key})"
            if key in seen:
                raise Invalid("the key appears twice in this file")
            seen.add(key)
            data = _on_guidebot(dict(raw), base_url)
            if "media" in data:
                data["media"] = _media(data["media"], path.parent)
            existing = await service.item_by_key(session, key)
            if existing is None:
                fields = clean_fields(data, tz=tz)
                await service.create_item(session, fields, now)
                report.created.append(key)
                continue
            if existing.deleted_at is not None:
                report.skipped.append(key)
                continue
            # Absent optional fields are cleared, so the file stays the whole truth.
            data = {**_CLEARED, **data}
            fields = clean_fields(data, tz=tz)
            changed = await service.update_item(session, existing, fields, now)
            (report.updated if changed else report.unchanged).append(key)
        except ContentError as exc:
            raise ContentError(f"{where}: {exc.reason}") from None
    return report


_CLEARED: dict[str, Any] = {
    "summary": None,
    "cover_url": None,
    "body": None,
    "url": None,
    "miniprogram": None,
    "tags": [],
    "stores": [],
    "valid_from": None,
    "valid_to": None,
}


async def import_content_file(
    database_url: str,
    path: str | Path,
    *,
    timezone: str = "Asia/Shanghai",
    base_url: str = DEFAULT_PUBLIC_URL,
) -> ImportReport:
    """The command-line hook: import `path` into the database at `database_url` and commit."""
    async with open_database(database_url) as sessions, sessions() as session, session.begin():
        return await import_content(session, path, timezone=timezone, base_url=base_url)


async def seed_demo_content(
    session: AsyncSession, *, now: datetime | None = None, base_url: str = DEFAULT_PUBLIC_URL
) -> ImportReport:
    """The demo's content library (demo_content.yaml); safe to run on every demo start. Its
    covers are guidebot's own files (/sidebar/static/cover-*.png) at `base_url`: nothing
    outside is fetched, so the demo looks the same offline."""
    return await import_content(session, DEMO_CONTENT, now=now, base_url=base_url)
