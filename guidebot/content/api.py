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
from guidebot.content.models import (
    ContentItem,
    ContentKind,
    ContentMedia,
    MassSend,
    MassSendResult,
    MassSendStatus,
)
from guidebot.content.service import ContentError, NotFound
from guidebot.web.api import (
    INT32_MAX,
    ApiError,
    ApiRoutes,
    bad_request,
    instant_fields,
    int_field,
    iso,
    json_body,
    path_id,
    query_int,
)
from guidebot.web.keys import CLOCK, SESSIONS, SETTINGS, WECOM
from guidebot.web.throttle import client_address
from guidebot.wecom.client import WeComError

log = logging.getLogger(__name__)

api = ApiRoutes()

VISITOR_COOKIE = "gb_v"
VISITOR_MAX_AGE = 365 * 86400


@contextlib.contextmanager
def domain_errors() -> Iterator[None]:
    try:
        yield
    except NotFound as exc:
        raise ApiError(404, "not_found", exc.reason) from exc
    except ContentError as exc:
        raise ApiError(400, "bad_request", exc.reason) from exc
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
    return path_id(request, "content item", hi=INT32_MAX)  # content_items.id is an integer


def _fields(body: dict[str, Any], tz, *, partial: bool = False) -> dict[str, Any]:
    """The item's fields; in a PATCH null clears an optional field (summary, body, url,
    cover_url, miniprogram, tags, stores, valid_from, valid_to, media) and is a 400 for the
    others (key, kind, title): clean_fields treats a present null as a value, never as absent."""
    instant_fields(body, "valid_from", "valid_to")
    return service.clean_fields(body, tz=tz, partial=partial)


ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["kind", "title"],
    "properties": {
        "key": {"type": "string", "description": "stable import key (generated if absent)"},
        "kind": {"type": "string", "enum": list(ContentKind.ALL)},
        "title": {"type": "string"},
        "summary": {"type": "string"},
        "cover_url": {"type": "string"},
        "body": {"type": "string", "description": "a text item's words"},
        "url": {"type": "string", "description": "a link item's target"},
        "miniprogram": {
            "type": "object",
            "properties": {"appid": {"type": "string"}, "page": {"type": "string"}},
        },
        "tags": {"type": "array", "items": {"type": "string"}},
        "stores": {"type": "array", "items": {"type": "string"}, "description": "store codes"},
        "valid_from": {"type": "string", "format": "date-time"},
        "valid_to": {"type": "string", "format": "date-time"},
        "media": {
            "type": "object",
            "description": "image, file or mini-program cover bytes",
            "properties": {
                "filename": {"type": "string"},
                "content_type": {"type": "string"},
                "data_base64": {"type": "string"},
            },
        },
    },
}


# ---- the library -----------------------------------------------------------------------------


@api.get(
    "/content",
    summary="List and search the content library (words and tag; newest or best first)",
    query={
        "q": "string",
        "tag": "string",
        "kind": "string",
        "store": "string",
        "live": "boolean",
        "page": "integer",
        "per_page": "integer",
    },
)
async def list_content(request: web.Request) -> web.Response:
    page = query_int(request, "page", 1, lo=1, hi=100_000)
    per_page = query_int(request, "per_page", 20, lo=1, hi=200)
    kind = request.query.get("kind") or None
    if kind is not None and kind not in ContentKind.ALL:
        raise bad_request(f"kind must be one of {', '.join(ContentKind.ALL)}")
    now = request.app[CLOCK].now()
    live = request.query.get("live", "").lower() in ("1", "true", "yes")
    store = request.query.get("store") or None
    async with request.app[SESSIONS]() as session:
        items, total = await service.search_items(
            session,
            words=request.query.get("q"),
            tag=request.query.get("tag") or None,
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


@api.post("/content", summary="Add an item to the content library", body=ITEM_SCHEMA)
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


@api.get("/content/{id}", summary="One content item with its forwards and opens")
async def get_content(request: web.Request) -> web.Response:
    item_id = _item_id(request)
    now = request.app[CLOCK].now()
    with domain_errors():
        async with request.app[SESSIONS]() as session:
            item = await service.get_item(session, item_id)
            media = await service.get_media(session, item_id)
            numbers = (await service.item_numbers(session, [item_id]))[item_id]
    return web.json_response(render_item(item, media, numbers, now))


@api.route("PATCH", "/content/{id}", "Change a content item's fields", body=ITEM_SCHEMA)
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


@api.route("DELETE", "/content/{id}", "Delete a content item (its forwards and opens stay)")
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
    body={
        "type": "object",
        "required": ["guide", "item"],
        "properties": {
            "guide": {"type": "string"},
            "item": {"type": "integer"},
            "text": {"type": "string", "description": "an optional note sent with it"},
            "filter": {
                "type": "object",
                "properties": {
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "match": {"type": "string", "enum": ["any", "all"]},
                    "status": {"type": "string", "enum": ["active"]},
                    "customers": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
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


@api.get("/mass-sends", summary="Mass sends, newest first", query={"guide": "string"})
async def list_mass_sends(request: web.Request) -> web.Response:
    query = select(MassSend).order_by(MassSend.id.desc()).limit(200)
    if request.query.get("guide"):
        query = query.where(MassSend.guide_userid == request.query["guide"])
    async with request.app[SESSIONS]() as session:
        rows = list(await session.scalars(query))
    return web.json_response({"mass_sends": [render_mass_send(r) for r in rows]})


@api.get("/mass-sends/{id}", summary="One mass send with each customer's result")
async def get_mass_send(request: web.Request) -> web.Response:
    mass_send_id = path_id(request, "mass send")
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
    elif item.kind == ContentKind.LINK and item.url:
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
