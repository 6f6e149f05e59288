"""The chat-sidebar page `/sidebar`, its JSON endpoints, and how a guide signs in.

Signing in
----------
In WeCom the page opens inside the chat toolbar. Without a session it sends the guide through
WeCom's OAuth (`open.weixin.qq.com/connect/oauth2/authorize`, snsapi_base) with a signed,
10-minute `state` that is also set as a cookie; `/sidebar/oauth` checks both, counts the
exchange against the client address (guidebot.web.throttle), turns the code into the member's
userid with `auth/getuserinfo` and sets a signed session cookie (`gb_guide`: userid, expiry
and a nonce, HMAC-SHA256 with a key derived from GUIDEBOT_SECRET_KEY, 12 hours, HttpOnly,
SameSite=Lax). Only active guides get a session; `/sidebar/logout` revokes it on every
instance (guidebot.web.revoked).

The simulated WeCom has no OAuth (`auth/getuserinfo` is not simulated). For the demo and the
tests, `/sidebar/login?userid=` mints the same cookie for any active guide, and the page
loads a stand-in for the JS-SDK (`ww-shim.js`). Both exist only while guidebot talks to the
simulator: GUIDEBOT_WECOM_API_BASE is not a weixin.qq.com host AND that API base answers the
simulator's control endpoint (`/_sim/config`) with our corp id. Against real WeCom (or anything
that is not our simulator) they answer 404, whatever the configuration says.

The page
--------
`ww.register` takes its signatures from `/sidebar/jsapi-config?url=` (corp and app tickets from
the WeCom client, cached in the database); `ww.getCurExternalContact` names the customer; the
page shows the customer and the content list; "send" asks `/sidebar/api/prepare` for the
sendChatMessage arguments with a fresh tracked link, calls `ww.sendChatMessage`, and on
`sendChatMessage:ok` posts the link's reference to `/sidebar/api/forwards`, which records the
forward (once per reference) and completes the task it was sent for.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit
from zoneinfo import ZoneInfo

import aiohttp
import jinja2
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.models import (
    Customer,
    Department,
    Guide,
    GuideStatus,
    Relation,
    RelationStatus,
)
from guidebot.content import jsapi, links, service
from guidebot.content.errors import ContentError
from guidebot.content.models import ContentForward, ContentItem, ContentKind, ForwardVia
from guidebot.resources import project_dir
from guidebot.sop import queries as tasks
from guidebot.sop.engine import record_reply
from guidebot.web.api import INT32_MAX, INT64_MAX, iso
from guidebot.web.keys import CLOCK, HTTP, OAUTH_LIMIT, SESSIONS, SETTINGS, SIGN_IN_GATE, WECOM
from guidebot.web.revoked import is_revoked, revoke
from guidebot.web.throttle import AttemptLimit, Busy, request_address
from guidebot.wecom.client import WeComError

log = logging.getLogger(__name__)

TEMPLATES = project_dir("templates") / "web"
STATIC = TEMPLATES / "static" / "sidebar"
SDK_URL = "https://wwcdn.weixin.qq.com/node/open/js/wecom-jssdk-2.3.4.js"
OAUTH_URL = "https://open.weixin.qq.com/connect/oauth2/authorize"

SESSION_COOKIE = "gb_guide"
SESSION_TTL = timedelta(hours=12)
OAUTH_COOKIE = "gb_oauth"
OAUTH_STATE_TTL = timedelta(minutes=10)
OAUTH_PER_ADDRESS = 30  # WeCom code exchanges that end in no session, per client address
_OAUTH_PURPOSE = b"guidebot/oauth-state/v1"
_BUSY = "登录繁忙，请稍后再试 · sign-in is busy; please try again shortly"
REF_TTL = timedelta(days=1)  # a prepared message is confirmed within seconds; allow a day
_SESSION_PURPOSE = b"guidebot/guide-session/v1"
STATIC_FILES = {
    "sidebar.css": "text/css",
    "sidebar.js": "application/javascript",
    "ww-shim.js": "application/javascript",  # only while simulated
}


@dataclass(slots=True)
class SidebarState:
    simulator_confirmed: bool = False


SIDEBAR = web.AppKey("content_sidebar", SidebarState)


# ---- pages -----------------------------------------------------------------------------------


@functools.cache
def _environment(directory: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )


def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    html = _environment(TEMPLATES).get_template(template).render(**context)
    response = web.Response(text=html, content_type="text/html", status=status)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _json_error(status: int, code: str, reason: str) -> web.Response:
    return web.json_response({"error": {"code": code, "reason": reason}}, status=status)


# ---- the guide's session ---------------------------------------------------------------------


def _session_key(secret_key: str) -> bytes:
    return links.derive_key(secret_key, _SESSION_PURPOSE)


def mint_session(secret_key: str, userid: str, now: datetime) -> str:
    expires = int((now + SESSION_TTL).timestamp())
    payload = links.b64e(json.dumps([userid, expires, secrets.token_hex(8)]).encode())
    mac = hmac.new(_session_key(secret_key), payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{links.b64e(mac)}"


def read_session_claims(
    secret_key: str, value: str | None, now: datetime
) -> tuple[str, datetime, str] | None:
    """A valid, unexpired guide cookie's userid, expiry and revocation key; else None."""
    if not value or len(value) > 400 or value.count(".") != 1:
        return None
    payload, _, signature = value.partition(".")
    try:
        given = links.b64d(signature)
        expected = hmac.new(_session_key(secret_key), payload.encode(), hashlib.sha256).digest()
    except ValueError:
        return None
    if not hmac.compare_digest(given, expected):
        return None
    try:
        userid, expires, nonce = json.loads(links.b64d(payload))
    except ValueError:
        return None  # a cookie from before sessions had a nonce: its guide signs in again
    if not isinstance(userid, str) or not isinstance(expires, int) or not isinstance(nonce, str):
        return None
    if expires <= now.timestamp():
        return None
    return userid, datetime.fromtimestamp(expires, UTC), f"guide:{nonce}"


def read_session(secret_key: str, value: str | None, now: datetime) -> str | None:
    """The userid of a valid, unexpired guide cookie (revocation is checked by current_guide)."""
    claims = read_session_claims(secret_key, value, now)
    return claims[0] if claims is not None else None


def _set_session(response: web.StreamResponse, request: web.Request, userid: str) -> None:
    app = request.app
    response.set_cookie(
        SESSION_COOKIE,
        mint_session(app[SETTINGS].secret_key, userid, app[CLOCK].now()),
        max_age=int(SESSION_TTL.total_seconds()),
        path="/",  # the sidebar page calls /api/v1 for the guide's own customers and numbers
        httponly=True,
        samesite="Lax",
        secure=app[SETTINGS].public_url.startswith("https://"),
    )


async def current_guide(request: web.Request) -> Guide | None:
    app = request.app
    claims = read_session_claims(
        app[SETTINGS].secret_key, request.cookies.get(SESSION_COOKIE), app[CLOCK].now()
    )
    if claims is None:
        return None
    userid, _expires, revocation_key = claims
    async with app[SESSIONS]() as session:
        if await is_revoked(session, revocation_key):
            return None
        guide = await session.get(Guide, userid)
    return guide if guide is not None and guide.status == GuideStatus.ACTIVE else None


def _next_path(raw: str | None) -> str:
    # Only our own sidebar: never an open redirect.
    if raw and raw.startswith("/sidebar") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return "/sidebar"


async def is_simulated(app: web.Application) -> bool:
    """True only while the WeCom API base is our simulator (see the module docstring)."""
    settings = app[SETTINGS]
    host = (urlsplit(settings.wecom_api_base).hostname or "").lower()
    if host == "weixin.qq.com" or host.endswith(".weixin.qq.com"):
        return False
    state = app[SIDEBAR]
    if state.simulator_confirmed:
        return True
    try:
        async with app[HTTP].get(
            f"{settings.wecom_api_base.rstrip('/')}/_sim/config",
            timeout=aiohttp.ClientTimeout(total=3),
        ) as response:
            answer = await response.json() if response.status == 200 else {}
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return False
    state.simulator_confirmed = (
        isinstance(answer, dict) and answer.get("corp_id") == settings.corp_id
    )
    return state.simulator_confirmed


def _same_origin(request: web.Request) -> bool:
    """No Origin at all (browsers send one with every cross-site POST) or our own: the Host the
    request reached, or the public URL's host, which the browser saw if a proxy rewrote Host."""
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    ours = {request.host.lower(), urlsplit(request.app[SETTINGS].public_url).netloc.lower()}
    return urlsplit(origin).netloc.lower() in ours


# ---- sign-in ---------------------------------------------------------------------------------


async def page(request: web.Request) -> web.StreamResponse:
    app = request.app
    guide = await current_guide(request)
    simulated = await is_simulated(app)
    if guide is None:
        if simulated:
            async with app[SESSIONS]() as session:
                guides = list(
                    await session.scalars(
                        select(Guide)
                        .where(Guide.status == GuideStatus.ACTIVE)
                        .order_by(Guide.userid)
                        .limit(200)
                    )
                )
            return render(
                request, "sidebar_login.html", {"guides": guides, "next": request.path_qs}
            )
        return _oauth_redirect(request)
    now = app[CLOCK].now()
    raw_task = request.query.get("task", "")
    task_id = _bounded_id(raw_task, INT64_MAX) if raw_task else None
    if raw_task and task_id is None:  # a link we made names a task row; this names none
        raise web.HTTPBadRequest(
            text=f"任务编号无效 / 'task' must be a task id, got {raw_task[:40]!r}"
        )
    customer = request.query.get("customer") or None
    async with app[SESSIONS]() as session:
        store = await service.guide_store(session, guide.userid, now)
        # A link to a task (the bot, a reminder) names its customer through the task.
        task = await tasks.get_task(session, task_id) if task_id else None
    if task is None or task.guide_userid != guide.userid:
        task_id = None
    elif customer is None:
        customer = task.external_userid
    config = {
        "guide": {"userid": guide.userid, "name": guide.name},
        "store": {"code": store.code, "name": store.name} if store else None,
        "corpId": app[SETTINGS].corp_id,
        "agentId": app[SETTINGS].agent_id,
        "customer": customer,
        "task": task_id,
        "timezone": store.timezone if store and store.timezone else app[SETTINGS].timezone,
        "simulated": simulated,
    }
    response = render(
        request,
        "sidebar.html",
        {
            "guide": guide,
            "store": store,
            # Inside <script>: no "<" at all, so nothing in it can end or open a tag.
            "config": json.dumps(config, ensure_ascii=False).replace("<", "\\u003c"),
            "sdk_url": "/sidebar/static/ww-shim.js" if simulated else SDK_URL,
            "simulated": simulated,
        },
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def mint_oauth_state(secret_key: str, now: datetime) -> str:
    """The OAuth `state`: when it was issued and a nonce, signed. WeCom allows a-zA-Z0-9 only,
    at most 128 bytes: 10 digits, 16 hex, 32 hex."""
    payload = f"{int(now.timestamp()):010d}{secrets.token_hex(8)}"
    return payload + _oauth_mac(secret_key, payload)


def oauth_state_valid(secret_key: str, state: str, now: datetime) -> bool:
    if len(state) != 58 or not state.isascii() or not state.isalnum():
        return False
    payload, mac = state[:26], state[26:]
    if not hmac.compare_digest(mac, _oauth_mac(secret_key, payload)):
        return False
    issued = int(payload[:10])
    return now.timestamp() - OAUTH_STATE_TTL.total_seconds() <= issued <= now.timestamp() + 60


def _oauth_mac(secret_key: str, payload: str) -> str:
    key = links.derive_key(secret_key, _OAUTH_PURPOSE)
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()[:32]


def _oauth_redirect(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    state = mint_oauth_state(settings.secret_key, request.app[CLOCK].now())
    back = f"{settings.public_url}/sidebar/oauth?next={quote(request.path_qs, safe='')}"
    query = urlencode(
        {
            "appid": settings.corp_id,
            "redirect_uri": back,
            "response_type": "code",
            "scope": "snsapi_base",
            "state": state,
            "agentid": settings.agent_id,
        }
    )
    response = web.Response(
        status=302, headers={"Location": f"{OAUTH_URL}?{query}#wechat_redirect"}
    )
    response.set_cookie(
        OAUTH_COOKIE,
        state,
        max_age=int(OAUTH_STATE_TTL.total_seconds()),
        path="/sidebar",
        httponly=True,
        samesite="Lax",
        secure=settings.public_url.startswith("https://"),
    )
    return response


async def oauth_return(request: web.Request) -> web.StreamResponse:
    """WeCom's OAuth comes back here with a code: the member's userid, then a session.

    Only a state we signed within the last 10 minutes, matching this browser's cookie, gets as
    far as WeCom, and each client address gets `OAUTH_PER_ADDRESS` exchanges that did not end
    in a session per 15 minutes (counted before the call, on every instance)."""
    app = request.app
    settings, now = app[SETTINGS], app[CLOCK].now()
    state, expected = request.query.get("state", ""), request.cookies.get(OAUTH_COOKIE, "")
    code = request.query.get("code", "")
    if (
        not code
        or len(code) > 512
        or not expected
        or not hmac.compare_digest(state.encode(), expected.encode())
        or not oauth_state_valid(settings.secret_key, state, now)
    ):
        return render(request, "sidebar_denied.html", {"reason": "sign-in expired"}, status=403)
    address = request_address(request, settings.trusted_proxies)
    limit = app[OAUTH_LIMIT]
    try:
        async with app[SIGN_IN_GATE].turn(), app[SESSIONS]() as session, session.begin():
            reservation = await limit.reserve(session, [f"oauth:{address}"[:200]], now)
    except Busy:
        return render(request, "sidebar_denied.html", {"reason": _BUSY}, status=503)
    if reservation.wait is not None:
        minutes = math.ceil(reservation.wait.total_seconds() / 60)
        log.warning("sidebar sign-in refused: too many OAuth exchanges from %s", address)
        response = render(
            request,
            "sidebar_denied.html",
            {
                "reason": f"登录过于频繁，请 {minutes} 分钟后再试 · too many sign-ins; "
                f"try again in {minutes} minute(s)"
            },
            status=429,
        )
        response.headers["Retry-After"] = str(math.ceil(reservation.wait.total_seconds()))
        return response
    try:
        answer = await app[WECOM].call("GET", "auth/getuserinfo", params={"code": code})
    except WeComError as exc:
        log.warning("sidebar sign-in: auth/getuserinfo failed: %s", exc)
        return render(request, "sidebar_denied.html", {"reason": "WeCom sign-in failed"}, 502)
    userid = answer.get("userid") or answer.get("UserId")
    async with app[SESSIONS]() as session, session.begin():
        guide = await session.get(Guide, userid) if isinstance(userid, str) else None
        if guide is not None and guide.status == GuideStatus.ACTIVE:
            await limit.release(session, reservation)  # a guide signed in: no abuse
    if guide is None or guide.status != GuideStatus.ACTIVE:
        return render(request, "sidebar_denied.html", {"reason": "not a guide"}, status=403)
    response = web.Response(status=302, headers={"Location": _next_path(request.query.get("next"))})
    _set_session(response, request, guide.userid)
    response.del_cookie(OAUTH_COOKIE, path="/sidebar")
    return response


async def dev_login(request: web.Request) -> web.StreamResponse:
    """Demo and tests only (404 unless simulated): sign in as an active guide by userid."""
    app = request.app
    if not await is_simulated(app):
        raise web.HTTPNotFound()
    userid = request.query.get("userid", "")
    async with app[SESSIONS]() as session:
        guide = await session.get(Guide, userid) if userid else None
    if guide is None or guide.status != GuideStatus.ACTIVE:
        return render(request, "sidebar_denied.html", {"reason": "not a guide"}, status=403)
    response = web.Response(status=302, headers={"Location": _next_path(request.query.get("next"))})
    _set_session(response, request, guide.userid)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    """Ends the session everywhere: its cookie is revoked in the database, then deleted."""
    app = request.app
    now = app[CLOCK].now()
    claims = read_session_claims(app[SETTINGS].secret_key, request.cookies.get(SESSION_COOKIE), now)
    if claims is not None:
        _userid, expires_at, revocation_key = claims
        async with app[SESSIONS]() as session, session.begin():
            await revoke(session, revocation_key, expires_at, now)
    response = web.Response(status=302, headers={"Location": "/sidebar"})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC_FILES or (name == "ww-shim.js" and not await is_simulated(request.app)):
        raise web.HTTPNotFound()
    return web.Response(
        body=(STATIC / name).read_bytes(),
        headers={"Content-Type": STATIC_FILES[name], "Cache-Control": "no-cache"},
    )


# ---- the JS-SDK ------------------------------------------------------------------------------


def _hosts(request: web.Request) -> set[str]:
    return {request.host, urlsplit(request.app[SETTINGS].public_url).netloc}


async def jsapi_config(request: web.Request) -> web.Response:
    """Corp and app signatures for `ww.register`, for one page URL of ours."""
    if await current_guide(request) is None:
        return _json_error(401, "unauthorized", "sign in first")
    try:
        url = jsapi.page_url(request.query.get("url", ""), _hosts(request))
    except jsapi.BadPageUrl as exc:
        return _json_error(400, "bad_request", str(exc))
    try:
        config = await jsapi.config_for(request.app[WECOM], url, int(request.app[CLOCK].time()))
    except WeComError as exc:
        log.warning("sidebar: JS-SDK ticket unavailable: %s", exc)
        return _json_error(502, "wecom_error", "WeCom did not give a JS-SDK ticket")
    return web.json_response(config)


async def dev_verify(request: web.Request) -> web.Response:
    """Simulated only: the shim's ww.register checks both signatures with the simulator, the
    way the WeCom client checks them against live tickets."""
    app = request.app
    if not await is_simulated(app):
        raise web.HTTPNotFound()
    if await current_guide(request) is None:
        return _json_error(401, "unauthorized", "sign in first")
    body = await _json_object(request) or {}
    url = body.get("url")
    results: dict[str, Any] = {}
    for name, kind in (("config", "jsapi"), ("agentConfig", "agent_config")):
        signed = body.get(name)
        if not isinstance(url, str) or not isinstance(signed, dict):
            return _json_error(400, "bad_request", "url, config and agentConfig are required")
        payload = {
            "type": kind,
            "url": url,
            "timestamp": signed.get("timestamp"),
            "noncestr": signed.get("nonceStr"),
            "signature": signed.get("signature"),
        }
        try:
            async with app[HTTP].post(
                f"{app[SETTINGS].wecom_api_base.rstrip('/')}/_sim/jsapi/verify", json=payload
            ) as response:
                results[name] = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return _json_error(502, "wecom_error", f"the simulator did not answer: {exc}")
    valid = all(r.get("valid") is True for r in results.values())
    return web.json_response({"valid": valid, **results})


# ---- data for the page -----------------------------------------------------------------------


async def my_customers(request: web.Request) -> web.Response:
    guide = await current_guide(request)
    if guide is None:
        return _json_error(401, "unauthorized", "sign in first")
    async with request.app[SESSIONS]() as session:
        rows = await session.execute(
            select(Relation, Customer)
            .join(Customer, Customer.external_userid == Relation.external_userid)
            .where(Relation.guide_userid == guide.userid, Relation.status == RelationStatus.ACTIVE)
            .order_by(Customer.name, Customer.external_userid)
            .limit(500)
        )
        customers = [
            {"external_userid": c.external_userid, "name": c.name, "remark": r.remark}
            for r, c in rows
        ]
    return web.json_response({"customers": customers})


async def customer_profile(request: web.Request) -> web.Response:
    guide = await current_guide(request)
    if guide is None:
        return _json_error(401, "unauthorized", "sign in first")
    ext = request.query.get("external_userid", "")
    async with request.app[SESSIONS]() as session:
        relation = await session.scalar(
            select(Relation).where(
                Relation.guide_userid == guide.userid, Relation.external_userid == ext
            )
        )
        customer = await session.get(Customer, ext) if relation is not None else None
        if relation is None or customer is None:
            return _json_error(404, "not_found", "not one of your customers")
        store = await session.get(Department, relation.store_id) if relation.store_id else None
        # The day the relation began, on its store's calendar (not the guide's store now).
        dated = store or await service.guide_store(session, guide.userid, request.app[CLOCK].now())
        zone = ZoneInfo(
            dated.timezone if dated and dated.timezone else request.app[SETTINGS].timezone
        )
        since_day = (
            relation.created_at.astimezone(zone).date().isoformat() if relation.created_at else None
        )
        open_tasks = await tasks.open_tasks(session, guide.userid, customer=ext)
        enrolled = await tasks.enrollments(session, guide.userid, ext)
        opens = await service.recent_opens(session, guide=guide.userid, customer=ext, limit=5)
        forwards = await session.execute(
            select(ContentForward, ContentItem)
            .join(ContentItem, ContentItem.id == ContentForward.item_id)
            .where(
                ContentForward.guide_userid == guide.userid,
                ContentForward.external_userid == ext,
            )
            .order_by(ContentForward.sent_at.desc(), ContentForward.id.desc())
            .limit(5)
        )
        sent = [{"item": i.id, "title": i.title, "sent_at": iso(f.sent_at)} for f, i in forwards]
    return web.json_response(
        {
            "customer": {
                "external_userid": customer.external_userid,
                "name": customer.name,
                "avatar": customer.avatar,
                "gender": customer.gender,
            },
            "relation": {
                "status": relation.status,
                "remark": relation.remark,
                "since": iso(relation.created_at),
                "since_day": since_day,
                "tags": [t.get("name") or t.get("id") for t in relation.tags or []],
                "store": {"code": store.code, "name": store.name} if store else None,
            },
            "enrollments": enrolled,
            "tasks": [t.as_json() for t in open_tasks],
            "recent_opens": [
                {"item": i.id, "title": i.title, "opened_at": iso(o.opened_at)} for o, i in opens
            ],
            "recent_forwards": sent,
        }
    )


async def content_list(request: web.Request) -> web.Response:
    guide = await current_guide(request)
    if guide is None:
        return _json_error(401, "unauthorized", "sign in first")
    now = request.app[CLOCK].now()
    async with request.app[SESSIONS]() as session:
        store = await service.guide_store(session, guide.userid, now)
        items, total = await service.search_items(
            session,
            words=request.query.get("q"),
            tag=request.query.get("tag") or None,
            live_at=now,
            store_code=store.code if store else None,
            restrict_store=True,
            limit=30,
        )
    return web.json_response(
        {
            "items": [
                {
                    "id": i.id,
                    "key": i.key,
                    "kind": i.kind,
                    "title": i.title,
                    "summary": i.summary,
                    "cover_url": i.cover_url,
                    "tags": i.tags or [],
                }
                for i in items
            ],
            "total": total,
        }
    )


def chat_message(item: ContentItem, url: str, media_id: str | None) -> dict[str, Any]:
    """The arguments of ww.sendChatMessage for an item (reference §5)."""
    if item.kind == ContentKind.TEXT:
        return {"msgtype": "text", "text": {"content": item.body or item.title}}
    if item.kind == ContentKind.LINK:
        news = {"link": url, "title": item.title, "desc": item.summary or "", "imgUrl": ""}
        if item.cover_url:
            news["imgUrl"] = item.cover_url
        return {"msgtype": "news", "news": news}
    if item.kind == ContentKind.IMAGE:
        return {"msgtype": "image", "image": {"mediaid": media_id}}
    if item.kind == ContentKind.FILE:
        return {"msgtype": "file", "file": {"mediaid": media_id}}
    return {
        "msgtype": "miniprogram",
        "miniprogram": {
            "appid": item.miniprogram_appid,
            "title": item.title,
            "imgUrl": item.cover_url or "",
            "page": item.miniprogram_page,
        },
    }


async def _is_active_customer(session: AsyncSession, guide: str, ext: str) -> bool:
    relation = await session.scalar(
        select(Relation.id).where(
            Relation.guide_userid == guide,
            Relation.external_userid == ext,
            Relation.status == RelationStatus.ACTIVE,
        )
    )
    return relation is not None


async def _json_object(request: web.Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _is_id(value: Any, hi: int) -> bool:
    """A row id: an integer (not a boolean) 1..hi, so nothing beyond its column is queried."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= hi


def _bounded_id(raw: str, hi: int) -> int | None:
    if raw.isascii() and raw.isdigit() and len(raw) <= len(str(hi)) and 1 <= int(raw) <= hi:
        return int(raw)
    return None


GuideWrite = Callable[[web.Request, Guide, dict[str, Any]], Awaitable[web.Response]]


def guide_write(handler: GuideWrite) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A write from the sidebar page: same origin only (the session cookie alone is not
    consent), by a signed-in guide, with a JSON object for a body."""

    @functools.wraps(handler)
    async def checked(request: web.Request) -> web.Response:
        if not _same_origin(request):
            return _json_error(403, "forbidden", "cross-origin request")
        guide = await current_guide(request)
        if guide is None:
            return _json_error(401, "unauthorized", "sign in first")
        body = await _json_object(request)
        if body is None:
            return _json_error(400, "bad_request", "body must be a JSON object")
        return await handler(request, guide, body)

    return checked


@guide_write
async def prepare(request: web.Request, guide: Guide, body: dict[str, Any]) -> web.Response:
    """The sendChatMessage arguments for an item, with a fresh tracked link and its reference."""
    app = request.app
    item_id, ext, task_id = body.get("item_id"), body.get("external_userid"), body.get("task_id")
    if not _is_id(item_id, INT32_MAX) or not isinstance(ext, str):
        return _json_error(400, "bad_request", "item_id and external_userid are required")
    if task_id is not None and not _is_id(task_id, INT64_MAX):
        return _json_error(400, "bad_request", "task_id must be a task id")
    now = app[CLOCK].now()
    step = None
    async with app[SESSIONS]() as session:
        if not await _is_active_customer(session, guide.userid, ext):
            return _json_error(403, "forbidden", "not one of your active customers")
        store = await service.guide_store(session, guide.userid, now)
        item = await session.get(ContentItem, item_id)
        allowed = (
            item is not None
            and service.is_live(item, now)
            and (not item.stores or (store is not None and store.code in item.stores))
        )
        if not allowed:
            return _json_error(404, "not_found", "no such content for your store")
        if task_id is not None:
            task = await tasks.get_task(session, task_id)
            if task is None or task.guide_userid != guide.userid or task.external_userid != ext:
                return _json_error(400, "bad_request", "that task is not yours for this customer")
            step = task.step_id
    try:
        media_id = await service.ensure_media(app[SESSIONS], app[WECOM], item_id, now)
    except (WeComError, ContentError) as exc:
        log.warning("sidebar: media for item %s unavailable: %s", item_id, exc)
        return _json_error(502, "wecom_error", "the item's media could not be uploaded to WeCom")
    token, _ = links.mint(
        app[SETTINGS].secret_key,
        item_id=item_id,
        guide=guide.userid,
        customer=ext,
        task_id=task_id,
        step=step,
        now=now,
    )
    url = links.link_url(app[SETTINGS].public_url, token)
    return web.json_response(
        {"message": chat_message(item, url, media_id), "ref": token, "url": url}
    )


@guide_write
async def record_forward(request: web.Request, guide: Guide, body: dict[str, Any]) -> web.Response:
    """The page saw sendChatMessage:ok: log the forward once and complete its task."""
    app = request.app
    ref = body.get("ref")
    claims = links.verify(app[SETTINGS].secret_key, ref) if isinstance(ref, str) else None
    if claims is None or claims.customer is None:
        return _json_error(400, "bad_request", "not a reference this server prepared")
    if claims.guide != guide.userid:
        return _json_error(403, "forbidden", "prepared for another guide")
    now = app[CLOCK].now()
    if now - claims.issued_at > REF_TTL:
        return _json_error(400, "bad_request", "this message was prepared too long ago")
    completed = False
    async with app[SESSIONS]() as session, session.begin():
        created = await service.record_forward(
            session,
            ref=f"l:{claims.nonce}",
            item_id=claims.item_id,
            guide=guide.userid,
            customer=claims.customer,
            via=ForwardVia.SIDEBAR,
            sent_at=now,
            now=now,
            task_id=claims.task_id,
        )
        if created and claims.task_id:
            completed = await tasks.forward_completed_task(session, claims.task_id, guide.userid)
    return web.json_response(
        {"recorded": created, "task_completed": completed}, status=201 if created else 200
    )


@guide_write
async def mark_replied(request: web.Request, guide: Guide, body: dict[str, Any]) -> web.Response:
    """The guide says the customer wrote back: playbooks waiting for a reply stop or score."""
    app = request.app
    ext = body.get("external_userid")
    if not isinstance(ext, str) or not ext:
        return _json_error(400, "bad_request", "external_userid is required")
    now = app[CLOCK].now()
    async with app[SESSIONS]() as session, session.begin():
        if not await _is_active_customer(session, guide.userid, ext):
            return _json_error(403, "forbidden", "not one of your active customers")
        stopped, credited = await record_reply(
            session, external_userid=ext, guide_userid=guide.userid, at=now
        )
    log.info("sidebar: %s marked a reply; %d enrollment(s) stopped", guide.userid, len(stopped))
    return web.json_response({"stopped": len(stopped), "goals_met": credited})


def setup_routes(app: web.Application) -> None:
    app[SIDEBAR] = SidebarState()
    app[OAUTH_LIMIT] = AttemptLimit({"oauth": OAUTH_PER_ADDRESS})
    app.router.add_get("/sidebar", page)
    app.router.add_get("/sidebar/login", dev_login)
    app.router.add_get("/sidebar/oauth", oauth_return)
    app.router.add_get("/sidebar/logout", logout)
    app.router.add_get("/sidebar/static/{name}", static)
    app.router.add_get("/sidebar/jsapi-config", jsapi_config)
    app.router.add_post("/sidebar/dev/jsapi-verify", dev_verify)
    app.router.add_get("/sidebar/api/customers", my_customers)
    app.router.add_get("/sidebar/api/customer", customer_profile)
    app.router.add_get("/sidebar/api/content", content_list)
    app.router.add_post("/sidebar/api/prepare", prepare)
    app.router.add_post("/sidebar/api/forwards", record_forward)
    app.router.add_post("/sidebar/api/replied", mark_replied)
