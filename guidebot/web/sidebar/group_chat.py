"""The sidebar opened from a customer group's toolbar (WeCom entry `group_chat_tools`).

`ww.getContext` says the entry and `ww.getCurExternalChat` names the group (its chat_id). The
page shows the group (name, owner, size) and its members who are the guide's own customers, and
sends library content into the group: `prepare` mints a tracked link that carries the group
(content.links, version 2), `ww.sendChatMessage` sends it, and `forwards` records the forward
against the group once per link. Opens of that link, and the orders they lead to, count for
the group. A guide sees only the live groups they own or are in (403 `not_your_group`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from guidebot.contacts.models import Guide
from guidebot.content import links, service
from guidebot.content.errors import ContentError
from guidebot.content.models import ContentItem, ForwardVia
from guidebot.groups import queries as groups
from guidebot.web.api.common import INT32_MAX, iso
from guidebot.web.auth import current_guide
from guidebot.web.keys import CLOCK, SESSIONS, SETTINGS, WECOM
from guidebot.web.responses import error_response
from guidebot.web.sidebar.writes import _is_id, chat_message, guide_write, prepared_claims
from guidebot.wecom.client import WeComError

NOT_YOURS = "这不是你的客户群 · not a group you own or are in"
CHAT_ID_MAX = 64


def not_your_group() -> web.Response:
    return error_response(403, "not_your_group", NOT_YOURS)


def _chat_id(value: Any) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= CHAT_ID_MAX and value.isprintable():
        return value
    return None


async def group_view(request: web.Request) -> web.Response:
    """The group the sidebar was opened in, as the guide may see it."""
    guide = await current_guide(request)
    if guide is None:
        return error_response(401, "unauthorized", "请先登录 · sign in first")
    chat_id = _chat_id(request.query.get("chat_id"))
    if chat_id is None:
        return error_response(400, "bad_request", "缺少群 ID · chat_id is required")
    async with request.app[SESSIONS]() as session:
        view = await groups.guide_group(session, guide.userid, chat_id)
    if view is None:
        return not_your_group()
    group = view.summary.group
    return web.json_response(
        {
            "group": {
                "chat_id": group.chat_id,
                "name": group.name,
                "owner": {"userid": group.owner_userid, "name": view.owner_name},
                "mine": group.owner_userid == guide.userid,
                "members": view.summary.members,
                "customers": view.summary.customers,
            },
            "my_customers": [
                {
                    "external_userid": member.member_id,
                    "name": name or member.name or member.group_nickname,
                    "remark": remark,
                    "joined_at": iso(member.joined_at),
                }
                for member, name, remark in view.customers
            ],
        }
    )


async def my_groups(request: web.Request) -> web.Response:
    """The groups a guide owns or is in: the picker when the page is not in a group."""
    guide = await current_guide(request)
    if guide is None:
        return error_response(401, "unauthorized", "请先登录 · sign in first")
    async with request.app[SESSIONS]() as session:
        found = await groups.guide_groups(session, guide.userid)
    return web.json_response(
        {
            "groups": [
                {"chat_id": s.group.chat_id, "name": s.group.name, "members": s.members}
                for s in found
            ]
        }
    )


@guide_write
async def prepare(request: web.Request, guide: Guide, body: dict[str, Any]) -> web.Response:
    """The sendChatMessage arguments for an item sent into a group, with a link carrying it."""
    app = request.app
    item_id, chat_id = body.get("item_id"), _chat_id(body.get("chat_id"))
    if not _is_id(item_id, INT32_MAX) or chat_id is None:
        return error_response(400, "bad_request", "缺少内容或群 · item_id and chat_id are required")
    now = app[CLOCK].now()
    async with app[SESSIONS]() as session:
        if not await groups.can_see_group(session, guide.userid, chat_id):
            return not_your_group()
        store = await service.guide_store(session, guide.userid, now)
        item = await session.get(ContentItem, item_id)
        allowed = (
            item is not None
            and service.is_live(item, now)
            and (not item.stores or (store is not None and store.code in item.stores))
        )
    if not allowed or item is None:
        return error_response(
            404, "not_found", "你的门店没有这个内容 · no such content for your store"
        )
    try:
        media_id = await service.ensure_media(app[SESSIONS], app[WECOM], item_id, now)
    except (WeComError, ContentError):
        return error_response(
            502,
            "wecom_error",
            "素材未能上传到企业微信 · the item's media could not be uploaded to WeCom",
        )
    token, _ = links.mint(
        app[SETTINGS].secret_key, item_id=item_id, guide=guide.userid, chat_id=chat_id, now=now
    )
    url = links.link_url(app[SETTINGS].public_url, token)
    return web.json_response(
        {"message": chat_message(item, url, media_id), "ref": token, "url": url}
    )


@guide_write
async def record_forward(request: web.Request, guide: Guide, body: dict[str, Any]) -> web.Response:
    """The page saw sendChatMessage:ok in the group: log the forward against it, once."""
    app = request.app
    claims = prepared_claims(app, body, guide, into_group=True)
    if isinstance(claims, web.Response):
        return claims
    now = app[CLOCK].now()
    async with app[SESSIONS]() as session, session.begin():
        if not await groups.can_see_group(session, guide.userid, claims.chat_id):
            return not_your_group()
        created = await service.record_forward(
            session,
            ref=f"l:{claims.nonce}",
            item_id=claims.item_id,
            guide=guide.userid,
            customer=None,
            chat_id=claims.chat_id,
            via=ForwardVia.SIDEBAR,
            sent_at=now,
            now=now,
        )
    return web.json_response({"recorded": created}, status=201 if created else 200)
