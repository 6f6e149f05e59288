"""A content item's fields as HQ sends them (the API's JSON, the importer's YAML): checked and
normalised before anything is stored, and what each kind needs to be sent at all."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from guidebot import i18n
from guidebot.content.errors import Invalid
from guidebot.content.models import ContentItem, ContentKind, ContentMedia

N_ = i18n.N_

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


@dataclass(frozen=True, slots=True)
class MediaInput:
    filename: str
    content_type: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


# Control characters end up in a Location header, a multipart header to WeCom or a message:
# none anywhere, except line feeds in words people read (a summary, a text item's body).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LF = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def _no_control(value: str, name: str, *, multiline: bool = False) -> str:
    if (_CONTROL_BUT_LF if multiline else _CONTROL).search(value):
        raise Invalid(
            N_("'%(name)s' may not hold control characters other than line feeds")
            if multiline
            else N_("'%(name)s' may not hold control characters such as line breaks"),
            name,
            name=name,
        )
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
            raise Invalid(N_("'%(name)s' is required"), name, name=name)
        return None
    if not isinstance(value, str) or not value.strip():
        raise Invalid(N_("'%(name)s' must be a non-empty string"), name, name=name)
    value = _no_control(value.strip(), name, multiline=multiline)
    if limit is not None and len(value) > limit:
        raise Invalid(
            N_("'%(name)s' is longer than %(limit)s characters"), name, name=name, limit=limit
        )
    return value


def _url(value: Any, name: str) -> str | None:
    text = _text(value, name, limit=2000)
    if text is None:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Invalid(N_("'%(name)s' must be an http(s) URL"), name, name=name)
    return text


def _words(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise Invalid(N_("'%(name)s' must be a list of strings"), name, name=name)
    out: list[str] = []
    for v in value:
        text = _no_control(str(v).strip(), name)
        if not text or "|" in text or len(text) > 64:
            raise Invalid(
                N_("'%(name)s': each entry is 1-64 characters without '|'"), name, name=name
            )
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
            raise Invalid(
                N_("'%(name)s' must be an ISO 8601 date or time, got %(raw)r"),
                name,
                name=name,
                raw=value,
            ) from None
    else:
        raise Invalid(N_("'%(name)s' must be an ISO 8601 date or time"), name, name=name)
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
        raise Invalid(N_("media has fewer than 5 bytes"), "media")
    if len(media.data) > MEDIA_LIMITS[wecom_kind]:
        raise Invalid(
            N_("media is over WeCom's %(mb)s MB %(kind)s limit"),
            "media",
            mb=MEDIA_LIMITS[wecom_kind] >> 20,
            kind=wecom_kind,
        )
    if wecom_kind == "image" and not media.data.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")):
        raise Invalid(N_("an image (or a mini-program cover) must be a JPG or PNG"), "media")


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
            raise Invalid(N_("'key' may hold letters, digits and _ . : / - only"), "key")
        out["key"] = key
    if "kind" in data or not partial:
        kind = data.get("kind")
        if kind not in ContentKind.ALL:
            raise Invalid(
                N_("'kind' must be one of %(kinds)s"), "kind", kinds=", ".join(ContentKind.ALL)
            )
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
        raise Invalid(N_("a text item needs 'body'"), "body")
    if kind == ContentKind.LINK and not item.url:
        raise Invalid(N_("a link item needs 'url'"), "url")
    if kind == ContentKind.MINIPROGRAM and not (item.miniprogram_appid and item.miniprogram_page):
        raise Invalid(
            N_("a miniprogram item needs miniprogram.appid and miniprogram.page"),
            "miniprogram.appid",
        )
    if kind == ContentKind.MINIPROGRAM and not item.cover_url:
        # sendChatMessage takes the card's picture by URL (imgUrl), mass sends by media id.
        raise Invalid(
            N_("a miniprogram item needs 'cover_url' (and 'media', the same picture)"), "cover_url"
        )
    if kind in ContentKind.WITH_MEDIA and media is None:
        if kind == ContentKind.MINIPROGRAM:
            raise Invalid(N_("a miniprogram item needs 'media' (its cover image)"), "media")
        raise Invalid(N_("a %(kind)s item needs 'media' (the file)"), "media", kind=kind)
    if kind in ContentKind.WITH_MEDIA and isinstance(media, MediaInput):
        _check_media(kind, media)
    if item.valid_from and item.valid_to and item.valid_to <= item.valid_from:
        raise Invalid(N_("'valid_to' must be after 'valid_from'"), "valid_to")


__all__ = [
    "FIELDS",
    "MEDIA_LIMITS",
    "MediaInput",
    "check_complete",
    "clean_fields",
    "media_from_json",
    "parse_instant",
]
