"""JSON API for content: the library and mass sends.

Views parse, call one domain function and render; the domain's errors become JSON errors in
guidebot.web.api.errors (NotFound 404, ContentError 422, a WeCom refusal 502).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import ConfigDict
from sqlalchemy import select

from guidebot.audit.recorder import row_values
from guidebot.content import masssend, service
from guidebot.content.errors import ContentError
from guidebot.content.fields import MEDIA_LIMITS, clean_fields
from guidebot.content.models import (
    ContentItem,
    ContentKind,
    ContentMedia,
    MassSend,
    MassSendResult,
    MassSendStatus,
)
from guidebot.web.api.common import (
    INT32_MAX,
    INT64_MAX,
    JSON_BODY_BYTES,
    ApiRoutes,
    bad_request,
    instant_fields,
    int_field,
    iso,
    json_body,
    param,
)
from guidebot.web.api.declare import Array, Body, Bool, Int, OneOf, Query, Text
from guidebot.web.api.openapi import (
    BOOLEAN,
    ERROR_SCHEMA,
    INSTANT,
    INTEGER,
    STRING,
    list_of,
    mapping,
    maybe,
    shape,
)
from guidebot.web.audited import record_after, record_change
from guidebot.web.keys import CLOCK, SESSIONS, SETTINGS, WECOM

log = logging.getLogger(__name__)

api = ApiRoutes()


def render_item(
    item: ContentItem,
    media: ContentMedia | None = None,
    numbers: dict[str, int] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": item.id,
        "key": item.key,
        "kind": item.kind,
        "title": item.title,
        "summary": item.summary,
        "cover_url": item.cover_url,
        "body": item.body,
        "url": item.url,
        "miniprogram": (
            {"appid": item.miniprogram_appid, "page": item.miniprogram_page}
            if item.miniprogram_appid
            else None
        ),
        "tags": item.tags or [],
        "stores": item.stores or [],
        "valid_from": iso(item.valid_from),
        "valid_to": iso(item.valid_to),
        "created_at": iso(item.created_at),
        "updated_at": iso(item.updated_at),
        "deleted_at": iso(item.deleted_at),
    }
    if now is not None:
        out["live"] = service.is_live(item, now)
    if media is not None:
        out["media"] = {
            "filename": media.filename,
            "content_type": media.content_type,
            "sha256": media.sha256,
            "wecom_media_id": item.media_id,
            "uploaded_at": iso(item.media_uploaded_at),
        }
    if numbers is not None:
        out["numbers"] = numbers
    return out


def _item_id(request: web.Request) -> int:
    return param(request, "id")


def _fields(body: dict[str, Any], tz, *, partial: bool = False) -> dict[str, Any]:
    """The item's fields; in a PATCH null clears an optional field (summary, body, url,
    cover_url, miniprogram, tags, stores, valid_from, valid_to, media) and is a 400 for the
    others (key, kind, title): clean_fields treats a present null as a value, never as absent."""
    instant_fields(body, "valid_from", "valid_to")
    try:
        return clean_fields(body, tz=tz, partial=partial)
    except ContentError as exc:  # each field on its own: the schema's part, so a 400
        raise bad_request(exc.reason) from exc


# ---- declarations (guidebot.web.api.declare) -------------------------------------------------

MAX_RECIPIENTS = 10_000  # WeCom's add_msg_template names at most 10,000 customers
# Tags are searched joined by '|' (content_items.tag_index). The one character that is not a
# space must not be a '|' either: `\S` alone let "a|" through the document, which the library
# then refused.
WORD = Text(
    64, pattern="^[^|]*[^|\\s][^|]*$", description="1-64 characters, not only spaces, no '|'"
)
# Bytes travel as base64: 4 characters for every 3 bytes of the largest file WeCom takes.
MAX_MEDIA_BYTES = max(MEDIA_LIMITS.values())
MAX_BASE64 = 4 * -(-MAX_MEDIA_BYTES // 3)
MEDIA_BODY_BYTES = MAX_BASE64 + JSON_BODY_BYTES
ITEM_ID = Int(1, INT32_MAX, description="a content item's id")  # content_items.id is an integer


class Media(Body):
    """image, file or mini-program cover bytes"""

    # Rust's regex engine reads 27 M characters of base64 in a tenth of the time Python's
    # takes, blocking the loop that much less; these patterns need no lookaround, and where
    # the two engines differ (a trailing line feed before `$`) the text is refused anyway.
    model_config = ConfigDict(regex_engine="rust-regex")

    filename: Text(255, pattern="\\S", description="the file's name, not only spaces")
    content_type: Text(
        100,
        pattern="^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(?:;[ -~]*)?$",
        description="a media type such as image/png",
    ) = None
    data_base64: Text(
        MAX_BASE64,
        pattern="^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
        description="the bytes in base64 (images at most 10 MB, files 20 MB)",
    )


class Miniprogram(Body):
    appid: Text(64, min_length=0) | None = None
    page: Text(500, min_length=0) | None = None


class ItemChange(Body):
    # null clears an optional field in a PATCH (see _fields); key, kind and title cannot be
    # cleared (not nullable: null is a 400).
    key: Text(
        128,
        pattern="^[A-Za-z0-9_.:/-]+$",
        description="stable import key (generated if absent): letters, digits and _ . : / -",
    ) = None
    kind: OneOf(*ContentKind.ALL) = None
    title: Text(255, pattern="\\S", description="a title, not only spaces") = None
    summary: Text(2000, min_length=0, multiline=True) | None = None
    cover_url: Text(2000, fmt="http-url") | None = None
    body: Text(4000, min_length=0, multiline=True, description="a text item's words") | None = None
    url: Text(2000, fmt="http-url", description="a link item's target") | None = None
    miniprogram: Miniprogram | None = None
    tags: Array(WORD, max_items=100) | None = None
    stores: Array(WORD, max_items=1000) | None = None
    valid_from: Text(64, fmt="date-or-time") | None = None
    valid_to: Text(64, fmt="date-or-time") | None = None
    media: Media | None = None


class NewItem(ItemChange):
    """what each kind needs (a text's body, a link's url, media) and valid_to after valid_from
    are checked with the item as a whole (422)"""

    kind: OneOf(*ContentKind.ALL)
    title: Text(255, pattern="\\S", description="a title, not only spaces")


class ContentFilter(Query):
    q: Text(100, description="words to find in titles, summaries and tags") = None
    tag: Text(64) = None
    kind: OneOf(*ContentKind.ALL) = None
    store: Text(64, description="a store code: items for that store") = None
    live: Bool(description="only items live now") = None
    page: Int(1, 100_000) = 1
    per_page: Int(1, 200) = 20


class Audience(Body):
    tags: Array(WORD, max_items=100) = None
    match: OneOf("any", "all") = None
    status: OneOf("active") = None
    customers: Array(Text(64), max_items=MAX_RECIPIENTS) = None


class NewMassSend(Body):
    guide: Text(64, description="the guide's userid")
    item: Int(1, INT32_MAX, description="a content item's id")
    # 750 characters are at most the 3000 bytes WeCom takes, whatever the characters.
    text: Text(750, min_length=0, multiline=True, description="a note sent with it") = None
    filter: Audience | None = None


class MassSendFilter(Query):
    guide: Text(64) = None


WHEN = maybe(INSTANT)
TEXT_OUT = maybe(STRING)
NUMBERS = mapping(INTEGER)
ITEM = shape(
    {
        "id": INTEGER,
        "key": STRING,
        "kind": STRING,
        "title": STRING,
        "summary": TEXT_OUT,
        "cover_url": TEXT_OUT,
        "body": TEXT_OUT,
        "url": TEXT_OUT,
        "miniprogram": maybe(shape({"appid": TEXT_OUT, "page": TEXT_OUT})),
        "tags": list_of(STRING),
        "stores": list_of(STRING),
        "valid_from": WHEN,
        "valid_to": WHEN,
        "created_at": WHEN,
        "updated_at": WHEN,
        "deleted_at": WHEN,
        "live": BOOLEAN,
        "media": shape(
            {
                "filename": STRING,
                "content_type": STRING,
                "sha256": STRING,
                "wecom_media_id": TEXT_OUT,
                "uploaded_at": WHEN,
            }
        ),
        "numbers": NUMBERS,
    },
    optional=("live", "media", "numbers"),
)
MASS_SEND = shape(
    {
        "id": INTEGER,
        "guide": STRING,
        "item": maybe(INTEGER),
        "filter": maybe({"type": "object"}),
        "recipients": maybe({"type": "array"}),
        "status": STRING,
        "msgid": TEXT_OUT,
        "fail_list": maybe({"type": "array"}),
        "error": TEXT_OUT,
        "created_at": WHEN,
        "requested_at": WHEN,
        "checked_at": WHEN,
        "done_at": WHEN,
        "results": list_of(shape({"external_userid": STRING, "status": STRING, "send_time": WHEN})),
    },
    optional=("results",),
)


# ---- the library -----------------------------------------------------------------------------


@api.get(
    "/content",
    summary="List and search the content library (words and tag; newest or best first)",
    query=ContentFilter,
    response=shape(
        {"items": list_of(ITEM), "total": INTEGER, "page": INTEGER, "per_page": INTEGER}
    ),
)
async def list_content(request: web.Request) -> web.Response:
    page, per_page = param(request, "page"), param(request, "per_page")
    kind = param(request, "kind")
    now = request.app[CLOCK].now()
    live = bool(param(request, "live"))
    store = param(request, "store")
    async with request.app[SESSIONS]() as session:
        items, total = await service.search_items(
            session,
            words=param(request, "q"),
            tag=param(request, "tag"),
            kind=kind,
            live_at=now if live else None,
            store_code=store,
            restrict_store=store is not None,
            limit=per_page,
            offset=(page - 1) * per_page,
        )
        numbers = await service.item_numbers(session, [i.id for i in items])
    return web.json_response(
        {
            "items": [render_item(i, numbers=numbers[i.id], now=now) for i in items],
            "total": total,
            "page": page,
            "per_page": per_page,
        }
    )


@api.post(
    "/content",
    summary="Add an item to the content library",
    body=NewItem,
    max_body=MEDIA_BODY_BYTES,
    response=ITEM,
    success=(201,),
    errors=(422,),
)
async def create_content(request: web.Request) -> web.Response:
    body = await json_body(request)
    app = request.app
    now = app[CLOCK].now()
    fields = _fields(body, app[SETTINGS].tz)
    async with app[SESSIONS]() as session, session.begin():
        item = await service.create_item(session, fields, now)
        media = await service.get_media(session, item.id)
        record_change(
            request, session, "content.create", target=f"content:{item.id}", after=_audited(item)
        )
    return web.json_response(render_item(item, media, now=now), status=201)


@api.get(
    "/content/{id}",
    summary="One content item with its forwards and opens",
    path={"id": ITEM_ID},
    response=ITEM,
)
async def get_content(request: web.Request) -> web.Response:
    item_id = _item_id(request)
    now = request.app[CLOCK].now()
    async with request.app[SESSIONS]() as session:
        item = await service.get_item(session, item_id)
        media = await service.get_media(session, item_id)
        numbers = (await service.item_numbers(session, [item_id]))[item_id]
    return web.json_response(render_item(item, media, numbers, now))


@api.route(
    "PATCH",
    "/content/{id}",
    "Change a content item's fields",
    path={"id": ITEM_ID},
    body=ItemChange,
    max_body=MEDIA_BODY_BYTES,
    response=ITEM,
    errors=(422,),
)
async def patch_content(request: web.Request) -> web.Response:
    item_id = _item_id(request)
    body = await json_body(request)
    app = request.app
    now = app[CLOCK].now()
    fields = _fields(body, app[SETTINGS].tz, partial=True)
    async with app[SESSIONS]() as session, session.begin():
        item = await service.get_item(session, item_id)
        before = _audited(item)
        await service.update_item(session, item, fields, now)
        media = await service.get_media(session, item_id)
        record_change(
            request,
            session,
            "content.update",
            target=f"content:{item_id}",
            before=before,
            after=_audited(item),
        )
    return web.json_response(render_item(item, media, now=now))


@api.route(
    "DELETE",
    "/content/{id}",
    "Delete a content item (its forwards and opens stay)",
    path={"id": ITEM_ID},
    response=shape({"id": INTEGER, "deleted_at": INSTANT}),
)
async def delete_content(request: web.Request) -> web.Response:
    item_id = _item_id(request)
    now = request.app[CLOCK].now()
    async with request.app[SESSIONS]() as session, session.begin():
        item = await service.get_item(session, item_id)
        before = _audited(item)
        await service.delete_item(session, item, now)
        record_change(
            request,
            session,
            "content.delete",
            target=f"content:{item_id}",
            before=before,
            after=_audited(item),
        )
    return web.json_response({"id": item_id, "deleted_at": now.isoformat()})


# What the audit trail keeps of an item: what HQ wrote (not the derived search columns).
AUDITED_FIELDS = (
    "key",
    "kind",
    "title",
    "summary",
    "cover_url",
    "body",
    "url",
    "miniprogram_appid",
    "miniprogram_page",
    "tags",
    "stores",
    "valid_from",
    "valid_to",
    "deleted_at",
)


def _audited(item: Any) -> dict[str, Any] | None:
    return row_values(item, *AUDITED_FIELDS)


# ---- mass sends ------------------------------------------------------------------------------


def render_mass_send(row: MassSend, results: list[MassSendResult] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id,
        "guide": row.guide_userid,
        "item": row.item_id,
        "filter": row.filter,
        "recipients": row.recipients,
        "status": row.status,
        "msgid": row.msgid,
        "fail_list": row.fail_list,
        "error": row.error,
        "created_at": iso(row.created_at),
        "requested_at": iso(row.requested_at),
        "checked_at": iso(row.checked_at),
        "done_at": iso(row.done_at),
    }
    if results is not None:
        out["results"] = [
            {
                "external_userid": r.external_userid,
                "status": r.status,
                "send_time": iso(r.send_time),
            }
            for r in results
        ]
    return out


@api.post(
    "/mass-sends",
    summary="Create a mass-send task (add_msg_template) of one item to a guide's customers",
    body=NewMassSend,
    max_body=1024 * 1024,  # up to 10,000 customers named
    response=MASS_SEND,
    success=(201, 202),
    errors=(422,),
    # 502: WeCom refused the task (the row, failed) or could not be asked (an error).
    responses={502: {"anyOf": [MASS_SEND, ERROR_SCHEMA]}},
)
async def create_mass_send(request: web.Request) -> web.Response:
    body = await json_body(request)
    guide = body.get("guide")
    if not isinstance(guide, str) or not guide:
        raise bad_request("'guide' must be a guide's userid")
    item = int_field(body, "item", lo=1, hi=INT32_MAX)  # a content item id
    assert item is not None
    note = body.get("text")
    if note is not None and (not isinstance(note, str) or len(note.encode()) > 3000):
        raise bad_request("'text' must be a string of at most 3000 bytes")
    app = request.app
    flt = masssend.Filter.parse(body.get("filter"))
    row = await masssend.create_mass_send(
        app[SESSIONS],
        app[WECOM],
        app[CLOCK],
        app[SETTINGS],
        guide=guide,
        item_id=item,
        flt=flt,
        note=note or None,
    )
    await record_after(
        request,
        "mass_send.create",
        target=f"mass_send:{row.id}",
        after={"guide": guide, "item": item, "recipients": row.recipients, "status": row.status},
    )
    # 201 created; 202 recorded but WeCom's answer never came (reconciled later); 502 refused.
    status = {MassSendStatus.FAILED: 502, MassSendStatus.UNKNOWN: 202}.get(row.status, 201)
    return web.json_response(render_mass_send(row), status=status)


@api.get(
    "/mass-sends",
    summary="Mass sends, newest first",
    query=MassSendFilter,
    response=shape({"mass_sends": list_of(MASS_SEND)}),
)
async def list_mass_sends(request: web.Request) -> web.Response:
    query = select(MassSend).order_by(MassSend.id.desc()).limit(200)
    if guide := param(request, "guide"):
        query = query.where(MassSend.guide_userid == guide)
    async with request.app[SESSIONS]() as session:
        rows = list(await session.scalars(query))
    return web.json_response({"mass_sends": [render_mass_send(r) for r in rows]})


@api.get(
    "/mass-sends/{id}",
    summary="One mass send with each customer's result",
    path={"id": Int(1, INT64_MAX, description="a mass send's id")},
    response=MASS_SEND,
)
async def get_mass_send(request: web.Request) -> web.Response:
    mass_send_id = param(request, "id")
    async with request.app[SESSIONS]() as session:
        row, results = await masssend.get_mass_send(session, mass_send_id)
    return web.json_response(render_mass_send(row, results))
