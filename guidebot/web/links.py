"""Tracked links `/r/{token}`: record the open, then send the visitor to the item.

Anything that is not a genuine token is a 404, with nothing logged but one line saying a token
was rejected.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from aiohttp import web

from guidebot.content import links, opens
from guidebot.content.models import ContentItem, ContentKind, ContentMedia
from guidebot.web.api.common import CONTROL_CHARACTER
from guidebot.web.keys import CLOCK, SESSIONS, SETTINGS
from guidebot.web.responses import render
from guidebot.web.throttle import client_address

log = logging.getLogger(__name__)

VISITOR_COOKIE = "gb_v"
VISITOR_MAX_AGE = 365 * 86400


def _missing(request: web.Request) -> web.Response:
    return render(request, "link_missing.html", {}, status=404)


async def open_link(request: web.Request) -> web.StreamResponse:
    """Record the open of a genuine link, then send the visitor to the item.

    A link naming the customer says who opened it; the browser gets a visitor id if it has
    none, and is tied to that customer (content.opens.tie_visitor). Otherwise the browser is
    a visitor only with a visitor id guidebot signed (links.verify_visitor): a first request
    without one is logged as an open of nobody known, given an id, and sent once to the same
    link (`?seen=<the open's signed ref>`); a browser that keeps cookies comes back with the
    id, and that open becomes its visitor's. A script without cookies, or with made-up ones,
    adds opens, never visitors.
    """
    app = request.app
    settings = app[SETTINGS]
    claims = links.verify(settings.secret_key, request.match_info["token"])
    if claims is None:
        log.info("tracked link rejected: not a genuine token")
        return _missing(request)
    now = app[CLOCK].now()
    visitor = links.verify_visitor(settings.secret_key, request.cookies.get(VISITOR_COOKIE))
    given = None
    if visitor is None and claims.customer is not None:
        given = links.mint_visitor(settings.secret_key)  # tied at once: the link names them
        visitor = links.verify_visitor(settings.secret_key, given)
    seen = request.query.get("seen")
    returned = claims.customer is None and seen is not None
    address = client_address(
        request.remote, request.headers.getall("X-Forwarded-For", []), settings.trusted_proxies
    )
    client = links.client_tag(settings.secret_key, address)
    open_id = None
    async with app[SESSIONS]() as session, session.begin():
        item = await session.get(ContentItem, claims.item_id)
        if item is None or item.deleted_at is not None:
            return _missing(request)
        if not returned:
            open_id, _ = await opens.log_open(
                session,
                claims,
                now=now,
                user_agent=request.headers.get("User-Agent"),
                visitor=visitor,
                client=client,
            )
        elif visitor is not None:
            await opens.record_visitor(
                session,
                claims,
                now=now,
                visitor=visitor,
                client=client,
                open_id=links.verify_open_ref(settings.secret_key, seen),
            )
        has_media = await session.get(ContentMedia, item.id) is not None
    if claims.customer is None and visitor is None and not returned:
        # A relative reference: the same link behind any path prefix of GUIDEBOT_PUBLIC_URL.
        ref = links.open_ref(settings.secret_key, open_id or 0)
        response: web.StreamResponse = web.Response(
            status=302, headers={"Location": f"?seen={ref}"}
        )
        given = links.mint_visitor(settings.secret_key)
    # A URL stored before control characters were refused cannot be a Location header (aiohttp
    # would drop the connection): such a link shows its page instead.
    elif item.kind == ContentKind.LINK and item.url and not CONTROL_CHARACTER.search(item.url):
        response = web.Response(status=302, headers={"Location": item.url})
    else:
        media_url = f"/r/{request.match_info['token']}/media" if has_media else None
        response = render(request, "content_page.html", {"item": item, "media_url": media_url})
    if given is not None:
        _hand_visitor_id(response, given, settings.public_url)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the token stays out of Referer
    return response


def _hand_visitor_id(response: web.StreamResponse, value: str, public_url: str) -> None:
    response.set_cookie(
        VISITOR_COOKIE,
        value,
        max_age=VISITOR_MAX_AGE,
        path=urlsplit(public_url).path.rstrip("/") + "/r/",
        httponly=True,
        samesite="Lax",
        secure=public_url.startswith("https://"),
    )


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


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/r/{token}", open_link)
    app.router.add_get("/r/{token}/media", link_media)
