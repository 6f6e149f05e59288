"""The chat-sidebar page `/sidebar`, its static files and the JS-SDK's signatures.

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

import json
import logging
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from guidebot.contacts import queries
from guidebot.content import jsapi, service
from guidebot.sop import queries as tasks
from guidebot.web.api.common import INT64_MAX
from guidebot.web.auth import current_guide
from guidebot.web.keys import CLOCK, HTTP, SESSIONS, SETTINGS, WECOM
from guidebot.web.responses import TEMPLATES, error_response, json_object, render
from guidebot.web.sidebar.signin import is_simulated, oauth_redirect
from guidebot.web.sidebar.words import sidebar_words
from guidebot.wecom.client import WeComError

log = logging.getLogger(__name__)

STATIC = TEMPLATES / "static" / "sidebar"
SDK_URL = "https://wwcdn.weixin.qq.com/node/open/js/wecom-jssdk-2.3.4.js"
STATIC_FILES = {
    "sidebar.css": "text/css",
    "sidebar.js": "application/javascript",
    "ww-shim.js": "application/javascript",  # only while simulated
    # The demo library's covers (guidebot.content.demo_content.yaml): served by guidebot itself.
    **{
        f"cover-{name}.png": "image/png"
        for name in ("spring", "lookbook", "care", "member", "mall")
    },
}


async def page(request: web.Request) -> web.StreamResponse:
    app = request.app
    guide = await current_guide(request)
    simulated = await is_simulated(app)
    if guide is None:
        if simulated:
            async with app[SESSIONS]() as session:
                guides = await queries.active_guides(session, limit=200)
            return render(
                request, "sidebar_login.html", {"guides": guides, "next": request.path_qs}
            )
        return oauth_redirect(request)
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
        "words": sidebar_words(),
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


def _bounded_id(raw: str, hi: int) -> int | None:
    if raw.isascii() and raw.isdigit() and len(raw) <= len(str(hi)) and 1 <= int(raw) <= hi:
        return int(raw)
    return None


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC_FILES or (name == "ww-shim.js" and not await is_simulated(request.app)):
        raise web.HTTPNotFound()
    return web.Response(
        body=(STATIC / name).read_bytes(),
        headers={"Content-Type": STATIC_FILES[name], "Cache-Control": "no-cache"},
    )


def _hosts(request: web.Request) -> set[str]:
    return {request.host, urlsplit(request.app[SETTINGS].public_url).netloc}


async def jsapi_config(request: web.Request) -> web.Response:
    """Corp and app signatures for `ww.register`, for one page URL of ours."""
    if await current_guide(request) is None:
        return error_response(401, "unauthorized", "sign in first")
    try:
        url = jsapi.page_url(request.query.get("url", ""), _hosts(request))
    except jsapi.BadPageUrl as exc:
        return error_response(400, "bad_request", str(exc))
    try:
        config = await jsapi.config_for(request.app[WECOM], url, int(request.app[CLOCK].time()))
    except WeComError as exc:
        log.warning("sidebar: JS-SDK ticket unavailable: %s", exc)
        return error_response(502, "wecom_error", "WeCom did not give a JS-SDK ticket")
    return web.json_response(config)


async def dev_verify(request: web.Request) -> web.Response:
    """Simulated only: the shim's ww.register checks both signatures with the simulator, the
    way the WeCom client checks them against live tickets."""
    app = request.app
    if not await is_simulated(app):
        raise web.HTTPNotFound()
    if await current_guide(request) is None:
        return error_response(401, "unauthorized", "sign in first")
    body = await json_object(request) or {}
    url = body.get("url")
    results: dict[str, Any] = {}
    for name, kind in (("config", "jsapi"), ("agentConfig", "agent_config")):
        signed = body.get(name)
        if not isinstance(url, str) or not isinstance(signed, dict):
            return error_response(400, "bad_request", "url, config and agentConfig are required")
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
            return error_response(502, "wecom_error", f"the simulator did not answer: {exc}")
    valid = all(r.get("valid") is True for r in results.values())
    return web.json_response({"valid": valid, **results})
