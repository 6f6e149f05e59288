"""Customer groups: groupchat/list and groupchat/get (doc 93414, 96338), the 「加入群聊」 join
ways (doc 99547 / 92229) and the group welcome templates (doc 96357)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from ..errors import ApiError
from ..records import DAY, day_start, keyset_page
from ..state import SimState
from ..state.groups import JOIN_WAY_CHATS, WELCOME_TEMPLATES, SimGroup
from .call import ApiCall, param_int, param_str, param_str_list

LIST_LIMIT = 1000  # doc 93414: limit 1..1000
OWNER_FILTER = 100  # doc 93414: owner_filter.userid_list ≤ 100
VISIBLE_RANGE = 1000  # doc 93414: without owner_filter, a visible range over 1000 people → 81017


# ---- groupchat/list and groupchat/get --------------------------------------------------------


def _owner_filter(state: SimState, body: Mapping[str, Any]) -> list[str] | None:
    raw = body.get("owner_filter")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ApiError(40058, "owner_filter must be an object")
    owners = param_str_list(raw, "userid_list", max_items=OWNER_FILTER)
    for userid in owners:
        if userid not in state.members and userid not in state.resigned:
            raise ApiError(60011, f"userid {userid!r} is outside the app's visible range")
    return owners or None


def groupchat_list(state: SimState, call: ApiCall) -> dict[str, Any]:
    body = call.body
    # doc 93414: limit is required, 1-1000. Over 1000 is not documented; 40058 (the generic
    # "parameter out of range") is the simulator's choice.
    limit = param_int(body, "limit")
    if not 1 <= limit <= LIST_LIMIT:
        raise ApiError(40058, f"limit must be 1-{LIST_LIMIT}")
    status_filter = param_int(body, "status_filter", default=0)
    if status_filter not in (0, 1, 2, 3):
        raise ApiError(40058, "status_filter must be 0-3")
    owners = _owner_filter(state, body)
    if owners is None and len(state.members) > VISIBLE_RANGE:
        raise ApiError(81017)
    rows = []
    for group in sorted(state.groups.values(), key=lambda g: (g.create_time, g.chat_id)):
        status = state.owner_status(group)
        if group.dismissed:
            continue
        if owners is None and status != 0:
            continue  # doc 93414 (2025/01/13): resigned owners' groups only via owner_filter
        if owners is not None and group.owner not in owners:
            continue
        if status_filter and status != status_filter:
            continue
        key = (group.create_time, group.chat_id)
        rows.append((key, {"chat_id": group.chat_id, "status": status}))
    page, next_cursor = keyset_page(rows, param_str(body, "cursor"), limit)
    return {"group_chat_list": page, "next_cursor": next_cursor}


def _member_view(state: SimState, member: Mapping[str, Any], need_name: bool) -> dict[str, Any]:
    view: dict[str, Any] = {
        "userid": member["userid"],
        "type": member["type"],
        "join_time": member["join_time"],
        "join_scene": member["join_scene"],
        "group_nickname": member["group_nickname"],
    }
    if member["type"] == 2:
        customer = state.customers.get(member["userid"])
        # doc 96338: unionid only for WeChat users, and only when the corp has bound one.
        if customer is not None and customer.type == 1 and customer.unionid:
            view["unionid"] = customer.unionid
    if member["invitor"]:
        view["invitor"] = {"userid": member["invitor"]}
    if member["state"]:
        view["state"] = member["state"]  # only for joins through a join way's code
    if need_name:
        view["name"] = _display_name(state, member)
    return view


def _display_name(state: SimState, member: Mapping[str, Any]) -> str:
    member_id = member["userid"]
    if member["type"] == 1:
        found = state.members.get(member_id) or state.resigned.get(member_id)
        return found.name if found else member_id
    customer = state.customers.get(member_id)
    return customer.name if customer else member_id


def render_group(state: SimState, group: SimGroup, need_name: bool) -> dict[str, Any]:
    return {
        "chat_id": group.chat_id,
        "name": group.name,
        "owner": group.owner,
        "create_time": group.create_time,
        "notice": group.notice,
        "member_list": [_member_view(state, m, need_name) for m in group.members.values()],
        "admin_list": [{"userid": u} for u in group.admin_list],
        "member_version": group.member_version,
    }


def groupchat_get(state: SimState, call: ApiCall) -> dict[str, Any]:
    group = state.group(param_str(call.body, "chat_id"))
    need_name = param_int(call.body, "need_name", default=0)
    if need_name not in (0, 1):
        raise ApiError(40058, "need_name must be 0 or 1")
    return {"group_chat": render_group(state, group, need_name == 1)}


# ---- join ways (「加入群聊」) ------------------------------------------------------------------


def _join_way_fields(state: SimState, body: Mapping[str, Any]) -> dict[str, Any]:
    """The whole way as add or update gives it: update overwrites (doc 99547), so what is
    left out falls back to its default."""
    scene = param_int(body, "scene")
    if scene not in (1, 2):
        raise ApiError(40058, "scene must be 1 (mini program) or 2 (QR code)")
    chats = param_str_list(body, "chat_id_list")
    if not chats:
        raise ApiError(40058, "missing chat_id_list")
    if len(chats) > JOIN_WAY_CHATS:
        raise ApiError(41091)
    for chat_id in chats:
        state.group(chat_id)
    remark = body.get("remark")
    if remark is not None and not isinstance(remark, str):
        raise ApiError(40058, "remark must be a string")
    auto_create = param_int(body, "auto_create_room", default=1)
    if auto_create not in (0, 1):
        raise ApiError(40058, "auto_create_room must be 0 or 1")
    return {
        "scene": scene,
        # doc 99547: a remark beyond 30 characters is cut, not refused.
        "remark": (remark or "")[:30],
        "auto_create_room": auto_create,
        "room_base_name": param_str(body, "room_base_name", max_len=40) if auto_create else "",
        "room_base_id": param_int(body, "room_base_id", default=0) if auto_create else 0,
        "chat_id_list": chats,
        "state": param_str(body, "state", max_len=30),
    }


def add_join_way(state: SimState, call: ApiCall) -> dict[str, Any]:
    fields = _join_way_fields(state, call.body)
    config_id = secrets.token_hex(16)
    state.join_ways[config_id] = {"config_id": config_id, **fields}
    return {"config_id": config_id}


def _join_way(state: SimState, body: Mapping[str, Any]) -> dict[str, Any]:
    config_id = param_str(body, "config_id", missing=41043)
    way = state.join_ways.get(config_id)
    if way is None:
        raise ApiError(41044)
    return way


def get_join_way(state: SimState, call: ApiCall) -> dict[str, Any]:
    way = dict(_join_way(state, call.body))
    if way["scene"] == 2:  # doc 99547: qr_code only for the QR scene
        way["qr_code"] = f"https://wecom-simulator.invalid/groupqr/{way['config_id']}"
    return {"join_way": way}


def update_join_way(state: SimState, call: ApiCall) -> dict[str, Any]:
    way = _join_way(state, call.body)
    way.update(_join_way_fields(state, call.body))
    return {}


def del_join_way(state: SimState, call: ApiCall) -> dict[str, Any]:
    way = _join_way(state, call.body)
    del state.join_ways[way["config_id"]]
    return {}


# ---- group welcome templates (入群欢迎语素材) -----------------------------------------------

_BLOCKS = ("image", "link", "miniprogram", "file", "video")  # doc 96357's priority order


def _block(body: Mapping[str, Any], key: str, required: tuple[str, ...]) -> dict[str, Any] | None:
    raw = body.get(key)
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ApiError(40058, f"{key} must be an object")
    for name in required:
        if not isinstance(raw.get(name), str) or not raw[name]:
            raise ApiError(40058, f"missing {key}.{name}")
    return dict(raw)


def _template_content(body: Mapping[str, Any], text_bytes: int) -> dict[str, Any]:
    content: dict[str, Any] = {}
    text = _block(body, "text", ())
    if text is not None:
        value = text.get("content", "")
        if not isinstance(value, str):
            raise ApiError(40058, "text.content must be a string")
        if len(value.encode()) > text_bytes:
            raise ApiError(40058, f"text.content is longer than {text_bytes} bytes")
        content["text"] = {"content": value}
    image = _block(body, "image", ())
    if image is not None:
        if not image.get("media_id") and not image.get("pic_url"):
            raise ApiError(40058, "image needs media_id or pic_url")
        # doc 96357: get gives the image back as pic_url only.
        url = image.get("pic_url") or f"https://wecom-simulator.invalid/pic/{image['media_id']}"
        content["image"] = {"pic_url": url}
    for key, required in (
        ("link", ("title", "url")),
        ("miniprogram", ("title", "pic_media_id", "appid", "page")),
        ("file", ("media_id",)),
        ("video", ("media_id",)),
    ):
        block = _block(body, key, required)
        if block is not None:
            content[key] = block
    if not content or content == {"text": {"content": ""}}:
        raise ApiError(40058, "text and every attachment are empty")
    # doc 96357: only one non-text block takes effect, by priority.
    kept = next((k for k in _BLOCKS if k in content), None)
    return {k: v for k, v in content.items() if k == "text" or k == kept}


def group_welcome_add(state: SimState, call: ApiCall) -> dict[str, Any]:
    if len(state.group_welcome_templates) >= WELCOME_TEMPLATES:
        raise ApiError(41055)
    content = _template_content(call.body, 3000)  # doc 96357 add: 3000 bytes
    notify = param_int(call.body, "notify", default=1)  # doc 96357: omitted means notify
    template_id = "msg" + secrets.token_hex(12)
    state.group_welcome_templates[template_id] = {
        "content": content,
        "notify": notify,
        "by_app": True,
    }
    return {"template_id": template_id}


def _own_template(state: SimState, body: Mapping[str, Any]) -> dict[str, Any]:
    template_id = param_str(body, "template_id", missing=40058)
    template = state.group_welcome_templates.get(template_id)
    if template is None:
        raise ApiError(40058, f"invalid template_id {template_id!r}")
    if not template["by_app"]:
        raise ApiError(41058)  # doc 96357: only the app's own templates
    return template


def group_welcome_edit(state: SimState, call: ApiCall) -> dict[str, Any]:
    template = _own_template(state, call.body)
    template["content"] = _template_content(call.body, 4000)  # doc 96357 edit: 4000 bytes
    return {}


def group_welcome_get(state: SimState, call: ApiCall) -> dict[str, Any]:
    template_id = param_str(call.body, "template_id", missing=40058)
    template = state.group_welcome_templates.get(template_id)
    if template is None:
        raise ApiError(40058, f"invalid template_id {template_id!r}")
    return dict(template["content"])


def group_welcome_del(state: SimState, call: ApiCall) -> dict[str, Any]:
    template = _own_template(state, call.body)
    state.group_welcome_templates = {
        k: v for k, v in state.group_welcome_templates.items() if v is not template
    }
    return {}


# ---- groupchat/statistic and statistic_group_by_day (doc 92133 / 96359) -------------------

STAT_OWNERS = 100  # owner_filter.userid_list ≤ 100
STAT_SPAN_DAYS = 30  # [day_begin_time, day_end_time] spans at most 30 days
STAT_RETENTION_DAYS = 180  # yesterday back to 180 days ago
STAT_LIMIT, STAT_DEFAULT_LIMIT = 1000, 500
STAT_ORDER = {1: "new_chat_cnt", 2: "chat_total", 3: "new_member_cnt", 4: "member_total"}


def _stat_days(state: SimState, body: Mapping[str, Any]) -> list[int]:
    """The China days asked for. Doc 92133: times are floored to their day's 00:00; the range
    runs from yesterday back to 180 days ago and spans at most 30 days; outside it 600018
    ("invalid start endtime", also for today, the community thread of 2022-08-29)."""
    begin = day_start(param_int(body, "day_begin_time"))
    end = day_start(param_int(body, "day_end_time", default=begin))
    today = day_start(state.now())
    if begin > end or end >= today or begin < today - STAT_RETENTION_DAYS * DAY:
        raise ApiError(600018)
    if end - begin > (STAT_SPAN_DAYS - 1) * DAY:
        raise ApiError(600018, "day_begin_time..day_end_time spans more than 30 days")
    return list(range(begin, end + DAY, DAY))


def _stat_owners(state: SimState, body: Mapping[str, Any]) -> set[str]:
    """Doc 92133: owner_filter.userid_list (≤100); without it every owner in the visible
    range, which fails with 81017 over 1000 people."""
    raw = body.get("owner_filter")
    if raw is not None and not isinstance(raw, dict):
        raise ApiError(40058, "owner_filter must be an object")
    owners = param_str_list(raw or {}, "userid_list", max_items=STAT_OWNERS)
    for userid in owners:
        if userid not in state.members and userid not in state.resigned:
            raise ApiError(60011, f"userid {userid!r} is outside the app's visible range")
    if not owners:
        if len(state.members) > VISIBLE_RANGE:
            raise ApiError(81017)
        owners = list(state.members)
    return set(owners)


def groupchat_statistic(state: SimState, call: ApiCall) -> dict[str, Any]:
    """By owner: one row per owner over the days. How the "as of that day" totals add up over
    several days is not documented; the simulator sums the new_* counts and gives the others
    as of the last day."""
    body = call.body
    days, owners = _stat_days(state, body), _stat_owners(state, body)
    order_by = param_int(body, "order_by", default=1)
    order_asc = param_int(body, "order_asc", default=0)
    offset = param_int(body, "offset", default=0)
    limit = param_int(body, "limit", default=STAT_DEFAULT_LIMIT)
    if order_by not in STAT_ORDER or order_asc not in (0, 1) or offset < 0:
        raise ApiError(40058, "order_by must be 1-4, order_asc 0 or 1, offset ≥ 0")
    if not 1 <= limit <= STAT_LIMIT:  # the range is documented, its errcode is not
        raise ApiError(40058, f"limit must be 1-{STAT_LIMIT}")
    items = []
    for owner in owners:
        per_day = [state.group_day_figures({owner}, day) for day in days]
        data = dict(per_day[-1])
        for key in ("new_chat_cnt", "new_member_cnt"):
            data[key] = sum(d[key] for d in per_day)
        items.append({"owner": owner, "data": data})
    key = STAT_ORDER[order_by]
    items.sort(key=lambda i: i["owner"])
    items.sort(key=lambda i: i["data"][key], reverse=not order_asc)
    page = items[offset : offset + limit]
    # Paging is done when next_offset == total.
    return {"total": len(items), "next_offset": min(offset + limit, len(items)), "items": page}


def groupchat_statistic_by_day(state: SimState, call: ApiCall) -> dict[str, Any]:
    """Per natural day, the listed owners' groups together (doc 92133)."""
    days, owners = _stat_days(state, call.body), _stat_owners(state, call.body)
    return {
        "items": [{"stat_time": day, "data": state.group_day_figures(owners, day)} for day in days]
    }
