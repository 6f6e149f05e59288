"""How a guide signs in to the chat sidebar, and whether guidebot talks to its simulator.

Signing in
----------
In WeCom the page opens inside the chat toolbar. Without a session it sends the guide through
WeCom's OAuth (`open.weixin.qq.com/connect/oauth2/authorize`, snsapi_base) with a signed,
10-minute `state` that is also set as a cookie; `/sidebar/oauth` checks both, counts the
exchange against the client address (guidebot.web.throttle), turns the code into the member's
userid with `auth/getuserinfo` and sets the guide's session cookie (`gb_guide`, see
guidebot.web.auth). Only active guides get a session; `/sidebar/logout` revokes it on every
instance (guidebot.web.revoked).

The simulated WeCom has no OAuth (`auth/getuserinfo` is not simulated). For the demo and the
tests, `/sidebar/login?userid=` mints the same cookie for any active guide, and the page
loads a stand-in for the JS-SDK (`ww-shim.js`). Both exist only while guidebot talks to the
simulator: GUIDEBOT_WECOM_API_BASE is not a weixin.qq.com host AND that API base answers the
simulator's control endpoint (`/_sim/config`) with our corp id. Against real WeCom (or anything
that is not our simulator) they answer 404, whatever the configuration says.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
from aiohttp import web

from guidebot import i18n
from guidebot.contacts.models import Guide, GuideStatus
from guidebot.content import links
from guidebot.web.auth import SESSION_COOKIE, read_session_claims, set_guide_session
from guidebot.web.keys import CLOCK, HTTP, OAUTH_LIMIT, SESSIONS, SETTINGS, SIGN_IN_GATE, WECOM
from guidebot.web.responses import render
from guidebot.web.revoked import revoke
from guidebot.web.throttle import Busy, request_address
from guidebot.wecom.client import WeComError

log = logging.getLogger(__name__)

OAUTH_URL = "https://open.weixin.qq.com/connect/oauth2/authorize"
OAUTH_COOKIE = "gb_oauth"
OAUTH_STATE_TTL = timedelta(minutes=10)
OAUTH_PER_ADDRESS = 30  # WeCom code exchanges that end in no session, per client address
_OAUTH_PURPOSE = b"guidebot/oauth-state/v1"
_BUSY = i18n.N_("Sign-in is busy; please try again shortly.")


@dataclass(slots=True)
class SidebarState:
    simulator_confirmed: bool = False


SIDEBAR = web.AppKey("content_sidebar", SidebarState)


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


def _next_path(raw: str | None) -> str:
    # Only our own sidebar: never an open redirect.
    if raw and raw.startswith("/sidebar") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return "/sidebar"


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


def oauth_redirect(request: web.Request) -> web.StreamResponse:
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
        return render(
            request,
            "sidebar_denied.html",
            {"reason": i18n.both("The sign-in expired", " · ")},
            status=403,
        )
    address = request_address(request, settings.trusted_proxies)
    limit = app[OAUTH_LIMIT]
    try:
        async with app[SIGN_IN_GATE].turn(), app[SESSIONS]() as session, session.begin():
            reservation = await limit.reserve(session, [f"oauth:{address}"[:200]], now)
    except Busy:
        return render(
            request, "sidebar_denied.html", {"reason": i18n.both(_BUSY, " · ")}, status=503
        )
    if reservation.wait is not None:
        minutes = math.ceil(reservation.wait.total_seconds() / 60)
        log.warning("sidebar sign-in refused: too many OAuth exchanges from %s", address)
        response = render(
            request,
            "sidebar_denied.html",
            {
                "reason": " · ".join(
                    i18n.ngettext(
                        "Too many sign-ins; try again in %(num)s minute.",
                        "Too many sign-ins; try again in %(num)s minutes.",
                        minutes,
                        lang,
                    )
                    for lang in i18n.LANGUAGES
                )
            },
            status=429,
        )
        response.headers["Retry-After"] = str(math.ceil(reservation.wait.total_seconds()))
        return response
    try:
        answer = await app[WECOM].call("GET", "auth/getuserinfo", params={"code": code})
    except WeComError as exc:
        log.warning("sidebar sign-in: auth/getuserinfo failed: %s", exc)
        return render(
            request,
            "sidebar_denied.html",
            {"reason": i18n.both("The WeCom sign-in failed", " · ")},
            502,
        )
    userid = answer.get("userid") or answer.get("UserId")
    async with app[SESSIONS]() as session, session.begin():
        guide = await session.get(Guide, userid) if isinstance(userid, str) else None
        if guide is not None and guide.status == GuideStatus.ACTIVE:
            await limit.release(session, reservation)  # a guide signed in: no abuse
    if guide is None or guide.status != GuideStatus.ACTIVE:
        return render(
            request,
            "sidebar_denied.html",
            {"reason": i18n.both("Not a guide of this company", " · ")},
            status=403,
        )
    response = web.Response(status=302, headers={"Location": _next_path(request.query.get("next"))})
    set_guide_session(response, request, guide.userid)
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
        return render(
            request,
            "sidebar_denied.html",
            {"reason": i18n.both("Not a guide of this company", " · ")},
            status=403,
        )
    response = web.Response(status=302, headers={"Location": _next_path(request.query.get("next"))})
    set_guide_session(response, request, guide.userid)
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
