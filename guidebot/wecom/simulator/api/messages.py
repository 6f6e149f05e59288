"""Messages: the welcome to a new customer, app messages to members, and the text and
attachments a welcome or mass message carries, checked as WeCom checks them."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from ..errors import ApiError
from ..state import SimState
from .call import ApiCall, param_bool, param_int, param_str

MESSAGE_TYPES = ("text", "textcard", "news", "markdown")
ATTACHMENT_TYPES = ("image", "link", "miniprogram", "video", "file")


def message_content(
    state: SimState, body: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """text + attachments of a welcome or mass message, checked as WeCom checks them."""
    text = body.get("text")
    if text is not None:
        if not isinstance(text, dict) or not isinstance(text.get("content", ""), str):
            raise ApiError(40058, 'text must be {"content": string}')
        if len(text.get("content", "").encode()) > 4000:
            raise ApiError(45002, "text.content is over 4000 bytes")
        if not text.get("content"):
            text = None
    attachments = body.get("attachments") or []
    if not isinstance(attachments, list):
        raise ApiError(40058, "attachments must be a list")
    if len(attachments) > 9:
        raise ApiError(41064)
    for item in attachments:
        check_attachment(state, item)
    if text is None and not attachments:
        raise ApiError(44004, "text and attachments are both empty")
    return text, attachments


def check_attachment(state: SimState, item: Any) -> None:
    msgtype = item.get("msgtype") if isinstance(item, dict) else None
    if msgtype not in ATTACHMENT_TYPES:
        raise ApiError(41065, f"invalid attachment msgtype {msgtype!r}")
    payload = item.get(msgtype)
    if not isinstance(payload, dict):
        raise ApiError(40058, f"attachment {msgtype} needs a {msgtype!r} object")
    if msgtype == "image":
        if payload.get("media_id"):
            state.live_media(param_str(payload, "media_id"), "image")
        elif not payload.get("pic_url"):
            raise ApiError(40058, "image needs media_id or pic_url")
    elif msgtype == "link":
        param_str(payload, "title", missing=41016, max_len=128)
        param_str(payload, "url", missing=41010)
    elif msgtype == "miniprogram":
        for key in ("title", "appid", "page"):
            param_str(payload, key, missing=40058)
        state.live_media(param_str(payload, "pic_media_id", missing=41006), "image")
    else:
        state.live_media(param_str(payload, "media_id", missing=41006), msgtype)


def send_welcome_msg(state: SimState, call: ApiCall) -> dict[str, Any]:
    code = param_str(call.body, "welcome_code", missing=41049)
    text, attachments = message_content(state, call.body)  # a bad message spends no code
    welcome = state.use_welcome_code(code)
    state.welcomes.append(
        {
            "welcome_code": code,
            "userid": welcome.userid,
            "external_userid": welcome.external_userid,
            "text": text,
            "attachments": attachments,
            # When WeCom handed the code out (the add event) and when the welcome reached it.
            "issued_at": welcome.issued_at,
            "time": welcome.used_at,
        }
    )
    # The welcome is the member's message in the one-to-one chat (contact statistics count it).
    state.record_chat(welcome.userid, welcome.external_userid, "member")
    return {}


# ---- app messages ------------------------------------------------------------------------


def _message_payload(body: Mapping[str, Any], msgtype: str) -> dict[str, Any]:
    payload = body.get(msgtype)
    if not isinstance(payload, dict):
        raise ApiError(40058, f"{msgtype} must be an object")
    if msgtype in ("text", "markdown"):
        content = param_str(payload, "content", missing=44004)
        if len(content.encode()) > 2048:
            raise ApiError(45002, "content is over 2048 bytes")
    elif msgtype == "textcard":
        param_str(payload, "title", missing=41016)
        param_str(payload, "description", missing=41033)
        param_str(payload, "url", missing=41010)
    else:  # news
        articles = payload.get("articles")
        if not isinstance(articles, list) or not articles:
            raise ApiError(40058, "news.articles must hold 1-8 articles")
        if len(articles) > 8:
            raise ApiError(45008)
        for article in articles:
            param_str(article if isinstance(article, dict) else {}, "title", missing=41016)
    return payload


def message_send(state: SimState, call: ApiCall) -> dict[str, Any]:
    body = call.body
    agentid = param_int(body, "agentid", missing=41011)
    if agentid != state.config.identity.agent_id:
        raise ApiError(40056)
    msgtype = param_str(body, "msgtype", missing=40008)
    if msgtype not in MESSAGE_TYPES:
        raise ApiError(40008, f"msgtype {msgtype!r} is not simulated ({', '.join(MESSAGE_TYPES)})")
    payload = _message_payload(body, msgtype)

    recipients: dict[str, None] = {}
    invalid_users: list[str] = []
    invalid_parties: list[str] = []
    touser = param_str(body, "touser")
    if touser == "@all":
        recipients.update(dict.fromkeys(state.members))
    elif touser:
        names = [u for u in touser.split("|") if u]
        if len(names) > 1000:
            raise ApiError(40032)
        for name in names:
            if name in state.members:
                recipients[name] = None
            else:
                invalid_users.append(name)
    for part in (p for p in param_str(body, "toparty").split("|") if p):
        if part.isdigit() and int(part) in state.departments:
            recipients.update(
                dict.fromkeys(m.userid for m in state.members_in(int(part), fetch_child=True))
            )
        else:
            invalid_parties.append(part)
    invalid_tags = [
        t for t in param_str(body, "totag").split("|") if t
    ]  # member tags: not simulated
    if not recipients:
        raise ApiError(81013)

    window = None
    if param_bool(body, "enable_duplicate_check", False):
        window = float(param_int(body, "duplicate_check_interval", default=1800))
    outcomes: dict[str, list[str]] = {"sent": [], "dropped": [], "duplicate": []}
    for userid in recipients:
        outcomes[state.deliver_app_message(userid, msgtype, payload, window)].append(userid)
    call.notes["delivered_to"] = outcomes["sent"]
    call.notes["dropped"] = outcomes["dropped"]  # over the per-member minute limit
    if outcomes["duplicate"]:
        call.notes["duplicate_skipped"] = outcomes["duplicate"]

    out: dict[str, Any] = {}
    if invalid_users:
        out["invaliduser"] = "|".join(invalid_users)
    if invalid_parties:
        out["invalidparty"] = "|".join(invalid_parties)
    if invalid_tags:
        out["invalidtag"] = "|".join(invalid_tags)
    out["msgid"] = secrets.token_urlsafe(24)
    return out
