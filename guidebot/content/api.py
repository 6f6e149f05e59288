"""HTTP for content: the JSON API (library, mass sends), tracked links `/r/{token}`, and the
one call create_app makes to mount all of it (`setup_content`).

API views parse, call one domain function and render; ContentError becomes 404/400 and a WeCom
refusal 502. Tracked links answer 404 for anything that is not a genuine token, with nothing
logged but one line saying a token was rejected.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from sqlalchemy import select

from guidebot.content import links, masssend, service
from guidebot.content.errors import ContentError, NotFound
from guidebot.content.fields import MEDIA_LIMITS, clean_fields
from guidebot.content.models import (
    ContentItem,
    ContentKind,
    ContentMedia,
    MassSend,
    MassSendResult,
    MassSendStatus,
)
from guidebot.web.api import (
    CONTROL_CHARACTER,
    ERROR_SCHEMA,
    INT32_MAX,
    INT64_MAX,
    JSON_BODY_BYTES,
    ApiError,
    ApiRoutes,
    bad_request,
    instant_fields,
    int_field,
    iso,
    json_body,
    param,
)
from guidebot.web.keys import CLOCK, SESSIONS, SETTINGS, WECOM
from guidebot.web.schema import (
    BOOLEAN,
    INSTANT,
    INTEGER,
    STRING,
    array,
    boolean,
    integer,
    list_of,
    mapping,
    maybe,
    nullable,
    obj,
    shape,
    text,
)
from guidebot.web.throttle import client_address
from guidebot.wecom.client import WeComError

log = logging.getLogger(__name__)

api = ApiRoutes()

VISITOR_COOKIE = "gb_v"
VISITOR_MAX_AGE = 365 * 86400


@contextlib.contextmanager
def domain_errors(invalid: int = 422) -> Iterator[None]:
    """The layer has held the request to its schema: what the domain still refuses is about
    what the values mean together or against what is stored (422), unless told otherwise."""
    try:
        yield
    except NotFound as exc:
        raise ApiError(404, "not_found", exc.reason) from exc
    except ContentError as exc:
        code = "bad_request" if invalid == 400 else "unprocessable"
        raise ApiError(invalid, code, exc.reason) from exc
    except WeComError as exc:
        raise ApiError(502, "wecom_error", str(exc)) from exc


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
    with domain_errors(invalid=400):  # each field on its own: the schema's part
        return clean_fields(body, tz=tz, partial=partial)


# ---- declarations (guidebot.web.schema) ------------------------------------------------------

MAX_RECIPIENTS = 10_000  # WeCom's add_msg_template names at most 10,000 customers
WORD = text(64, pattern="^[^|]*\\S[^|]*$", description="1-64 characters, not only spaces, no '|'")
# Bytes travel as base64: 4 characters for every 3 bytes of the largest file WeCom takes.
MAX_MEDIA_BYTES = max(MEDIA_LIMITS.values())
MAX_BASE64 = 4 * -(-MAX_MEDIA_BYTES // 3)
MEDIA_BODY_BYTES = MAX_BASE64 + JSON_BODY_BYTES
MEDIA = obj(
    {
        "filename": text(255),
        "content_type": text(
            100,
            pattern="^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(?:;[ -~]*)?$",
            description="a media type such as image/png",
        ),
        "data_base64": text(
            MAX_BASE64,
            pattern="^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
            description="the bytes in base64 (images at most 10 MB, files 20 MB)",
        ),
    },
    "filename",
    "data_base64",
    description="image, file or mini-program cover bytes",
)
# Fields null may clear in a PATCH (see _fields); key, kind and title cannot be cleared.
CLEARABLE: dict[str, Any] = {
    "summary": text(2000, min_length=0, multiline=True),
    "cover_url": text(2000, fmt="http-url"),
    "body": text(4000, min_length=0, multiline=True, description="a text item's words"),
    "url": text(2000, fmt="http-url", description="a link item's target"),
    "miniprogram": obj(
        {"appid": nullable(text(64, min_length=0)), "page": nullable(text(500, min_length=0))}
    ),
    "tags": array(WORD, max_items=100),
    "stores": array(WORD, max_items=1000),
    "valid_from": text(64, fmt="date-or-time"),
    "valid_to": text(64, fmt="date-or-time"),
    "media": MEDIA,
}
ITEM_FIELDS: dict[str, Any] = {
    "key": text(
        128,
        pattern="^[A-Za-z0-9_.:/-]+$",
        description="stable import key (generated if absent): letters, digits and _ . : / -",
    ),
    "kind": text(16, enum=ContentKind.ALL),
    "title": text(255, pattern="\\S", description="a title, not only spaces"),
    **{name: nullable(schema) for name, schema in CLEARABLE.items()},
}
NEW_ITEM = obj(
    ITEM_FIELDS,
    "kind",
    "title",
    description="what each kind needs (a text's body, a link's url, media) and valid_to after "
    "valid_from are checked with the item as a whole (422)",
)
ITEM_CHANGE = obj(ITEM_FIELDS)

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
ITEM_ID = integer(1, INT32_MAX, description="a content item's id")  # content_items.id is an integer


# ---- the library -----------------------------------------------------------------------------


@api.get(
    "/content",
    summary="List and search the content library (words and tag; newest or best first)",
    query={
        "q": text(100, description="words to find in titles, summaries and tags"),
        "tag": text(64),
        "kind": text(16, enum=ContentKind.ALL),
        "store": text(64, description="a store code: items for that store"),
        "live": boolean(description="only items live now"),
        "page": integer(1, 100_000, default=1),
        "per_page": integer(1, 200, default=20),
    },
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
    body=NEW_ITEM,
    max_body=MEDIA_BODY_BYTES,
    response=ITEM,
    success=(201,),
    errors=(422,),
)
async def create_content(request: web.Request) -> web.Response:
    body = await json_body(request)
    app = request.app
    now = app[CLOCK].now()
    with domain_errors():
        fields = _fields(body, app[SETTINGS].tz)
        async with app[SESSIONS]() as session, session.begin():
            item = await service.create_item(session, fields, now)
            media = await service.get_media(session, item.id)
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
    with domain_errors():
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
    body=ITEM_CHANGE,
    max_body=MEDIA_BODY_BYTES,
    response=ITEM,
    errors=(422,),
)
async def patch_content(request: web.Request) -> web.Response:
    item_id = _item_id(request)
    body = await json_body(request)
    app = request.app
    now = app[CLOCK].now()
    with domain_errors():
        fields = _fields(body, app[SETTINGS].tz, partial=True)
        async with app[SESSIONS]() as session, session.begin():
            item = await service.get_item(session, item_id)
            await service.update_item(session, item, fields, now)
            media = await service.get_media(session, item_id)
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
    with domain_errors():
        async with request.app[SESSIONS]() as session, session.begin():
            item = await service.get_item(session, item_id)
            await service.delete_item(session, item, now)
    return web.json_response({"id": item_id, "deleted_at": now.isoformat()})


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
    body=obj(
        {
            "guide": text(64, description="the guide's userid"),
            "item": integer(1, INT32_MAX, description="a content item's id"),
            # 750 characters are at most the 3000 bytes WeCom takes, whatever the characters.
            "text": text(750, min_length=0, multiline=True, description="a note sent with it"),
            "filter": nullable(
                obj(
                    {
                        "tags": array(WORD, max_items=100),
                        "match": text(8, enum=("any", "all")),
                        "status": text(16, enum=("active",)),
                        "customers": array(text(64), max_items=MAX_RECIPIENTS),
                    }
                )
            ),
        },
        "guide",
        "item",
    ),
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
    with domain_errors():
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
    # 201 created; 202 recorded but WeCom's answer never came (reconciled later); 502 refused.
    status = {MassSendStatus.FAILED: 502, MassSendStatus.UNKNOWN: 202}.get(row.status, 201)
    return web.json_response(render_mass_send(row), status=status)


@api.get(
    "/mass-sends",
    summary="Mass sends, newest first",
    query={"guide": text(64)},
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
    path={"id": integer(1, INT64_MAX, description="a mass send's id")},
    response=MASS_SEND,
)
async def get_mass_send(request: web.Request) -> web.Response:
    mass_send_id = param(request, "id")
    with domain_errors():
        async with request.app[SESSIONS]() as session:
            row, results = await masssend.get_mass_send(session, mass_send_id)
    return web.json_response(render_mass_send(row, results))


# ---- tracked links ---------------------------------------------------------------------------


def _missing(request: web.Request) -> web.Response:
    from guidebot.content.sidebar import render

    return render(request, "link_missing.html", {}, status=404)


async def open_link(request: web.Request) -> web.StreamResponse:
    """Record the open of a genuine link, then send the visitor to the item.

    A link naming the customer says who opened it. Otherwise the browser is a visitor only with
    a visitor id guidebot signed (links.verify_visitor): a first request without one is logged
    as an open of nobody known, given an id, and sent once to the same link (`?seen=1`); a
    browser that keeps cookies comes back with the id, and that open becomes its visitor's. A
    script without cookies, or with made-up ones, adds opens, never visitors.
    """
    app = request.app
    settings = app[SETTINGS]
    claims = links.verify(settings.secret_key, request.match_info["token"])
    if claims is None:
        log.info("tracked link rejected: not a genuine token")
        return _missing(request)
    now = app[CLOCK].now()
    visitor = links.verify_visitor(settings.secret_key, request.cookies.get(VISITOR_COOKIE))
    returned = claims.customer is None and request.query.get("seen") == "1"
    address = client_address(
        request.remote, request.headers.getall("X-Forwarded-For", []), settings.trusted_proxies
    )
    client = links.client_tag(settings.secret_key, address)
    async with app[SESSIONS]() as session, session.begin():
        item = await session.get(ContentItem, claims.item_id)
        if item is None or item.deleted_at is not None:
            return _missing(request)
        if not returned:
            await service.record_open(
                session,
                claims,
                now=now,
                user_agent=request.headers.get("User-Agent"),
                visitor=visitor,
                client=client,
            )
        elif visitor is not None:
            await service.record_visitor(session, claims, now=now, visitor=visitor, client=client)
        has_media = await session.get(ContentMedia, item.id) is not None
    if claims.customer is None and visitor is None and not returned:
        # A relative reference: the same link behind any path prefix of GUIDEBOT_PUBLIC_URL.
        response: web.StreamResponse = web.Response(status=302, headers={"Location": "?seen=1"})
        response.set_cookie(
            VISITOR_COOKIE,
            links.mint_visitor(settings.secret_key),
            max_age=VISITOR_MAX_AGE,
            path=urlsplit(settings.public_url).path.rstrip("/") + "/r/",
            httponly=True,
            samesite="Lax",
            secure=settings.public_url.startswith("https://"),
        )
    # A URL stored before control characters were refused cannot be a Location header (aiohttp
    # would drop the connection): such a link shows its page instead.
    elif item.kind == ContentKind.LINK and item.url and not CONTROL_CHARACTER.search(item.url):
        response = web.Response(status=302, headers={"Location": item.url})
    else:
        from guidebot.content.sidebar import render

        media_url = f"/r/{request.match_info['token']}/media" if has_media else None
        response = render(request, "content_page.html", {"item": item, "media_url": media_url})
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the token stays out of Referer
    return response


async def link_media(request: web.Request) -> web.StreamResponse:
    """The image or file of the item a genuine link points at (not counted as an open)."""
    app = request.app
    claims = links.verify(app[SETTINGS].secret_key, request.match_info["token"])
    if claims is None:
        return _missing(request)
    async with app[SESSIONS]() as session:
        item = await session.get(ContentItem, claims.item_id)
        media = await session.get(ContentMedia, claims.item_id) if item is not None else None
        if item is None or item.deleted_at is not None or media is None:
            return _missing(request)
        data, content_type, filename = media.data, media.content_type, media.filename
        disposition = "attachment" if item.kind == ContentKind.FILE else "inline"
    if disposition == "inline":  # an image: its type from its bytes, never from what was declared
        content_type = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
    safe_name = "".join(c for c in filename if c.isalnum() or c in "._-") or "file"
    return web.Response(
        body=data,
        headers={
            "Content-Type": content_type,
            "Content-Disposition": f'{disposition}; filename="{safe_name}"',
            "Cache-Control": "private, max-age=3600",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
        },
    )


def setup_content(app: web.Application) -> None:
    """Mount tracked links, the sidebar and the bot's passive-reply support on the app."""
    from guidebot.bot import handlers as bot
    from guidebot.content import sidebar

    app.router.add_get("/r/{token}", open_link)
    app.router.add_get("/r/{token}/media", link_media)
    sidebar.setup_routes(app)
    bot.setup(app)
