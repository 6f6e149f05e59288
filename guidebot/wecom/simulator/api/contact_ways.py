"""Contact ways (「联系我」): add, get, update, delete and list."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from ..errors import ApiError
from ..records import DAY, keyset_page
from ..state import SimState
from .call import (
    ApiCall,
    param_bool,
    param_int,
    param_limit,
    param_str,
    param_str_list,
)


def _contact_way_fields(state: SimState, body: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if "style" in body:
        fields["style"] = param_int(body, "style")
    if "remark" in body:
        fields["remark"] = param_str(body, "remark", max_len=30)
    if "skip_verify" in body:
        fields["skip_verify"] = param_bool(body, "skip_verify", True)
    if "state" in body:
        fields["state"] = param_str(body, "state", max_len=30)
    if "user" in body:
        users = param_str_list(body, "user")
        for userid in users:
            state.member(userid)
        fields["user"] = users
    if "party" in body:
        party = body["party"]
        if not isinstance(party, list) or not all(isinstance(p, int) for p in party):
            raise ApiError(40058, "party must be a list of department ids")
        for dept in party:
            if dept not in state.departments:
                raise ApiError(60123)
        fields["party"] = party
    for key in ("is_temp", "is_exclusive"):
        if key in body:
            fields[key] = param_bool(body, key, False)
    for key in ("expires_in", "chat_expires_in"):
        if key in body:
            fields[key] = param_int(body, key)
    for key in ("unionid", "conclusions"):
        if key in body:
            fields[key] = body[key]
    return fields


# The appendix of doc 92228 (配置客户联系「联系我」方式): the mini-program button styles,
# 1-3 for a single-member way, 1-2 for a multi-member one.
CONTACT_WAY_STYLES = {1: (1, 2, 3), 2: (1, 2)}


def _check_way(way: Mapping[str, Any]) -> None:
    """The whole way (as added, or as an update would leave it) against WeCom's rules."""
    if way["style"] not in CONTACT_WAY_STYLES[way["type"]]:
        raise ApiError(41042, f"invalid style {way['style']!r} for a type {way['type']} way")
    users, party = way.get("user") or [], way.get("party") or []
    if not users and not party:
        raise ApiError(40058, "user and party are both empty")
    if way["type"] == 1 and (len(users) != 1 or party):
        raise ApiError(40058, "a type 1 contact way has exactly one user")
    if len(users) > 100:
        raise ApiError(41041)


def add_contact_way(state: SimState, call: ApiCall) -> dict[str, Any]:
    body = call.body
    way_type = param_int(body, "type", missing=41037)
    scene = param_int(body, "scene", missing=41038)
    if way_type not in (1, 2):
        raise ApiError(41039)
    if scene not in (1, 2):
        raise ApiError(41040)
    fields = _contact_way_fields(state, body)
    config_id = secrets.token_hex(16)
    way = {
        "config_id": config_id,
        "type": way_type,
        "scene": scene,
        "style": 1,
        "remark": "",
        "skip_verify": True,
        "state": "",
        "user": [],
        "party": [],
        "is_temp": False,
        "expires_in": 7 * DAY,
        "chat_expires_in": DAY,
        "create_time": int(state.now()),
        **fields,
    }
    _check_way(way)
    if scene == 2:  # only QR ways have a code picture
        way["qr_code"] = f"https://wecom-simulator.invalid/qr/{config_id}"
    state.contact_ways[config_id] = way
    out = {"config_id": config_id}
    if scene == 2:
        out["qr_code"] = way["qr_code"]
    return out


def _contact_way(state: SimState, body: Mapping[str, Any]) -> dict[str, Any]:
    config_id = param_str(body, "config_id", missing=41043)
    way = state.contact_ways.get(config_id)
    if way is None:
        raise ApiError(41044)
    return way


def get_contact_way(state: SimState, call: ApiCall) -> dict[str, Any]:
    way = _contact_way(state, call.body)
    return {"contact_way": {k: v for k, v in way.items() if k != "create_time"}}


def update_contact_way(state: SimState, call: ApiCall) -> dict[str, Any]:
    way = _contact_way(state, call.body)
    updated = {**way, **_contact_way_fields(state, call.body)}
    _check_way(updated)  # validate the whole way before changing any of it
    way.update(updated)
    return {}


def del_contact_way(state: SimState, call: ApiCall) -> dict[str, Any]:
    way = _contact_way(state, call.body)
    del state.contact_ways[way["config_id"]]
    return {}


def list_contact_way(state: SimState, call: ApiCall) -> dict[str, Any]:
    now = int(state.now())
    end = param_int(call.body, "end_time", default=now)
    start = param_int(call.body, "start_time", default=end - 90 * DAY)
    if start > end or end - start > 90 * DAY:
        raise ApiError(40058, "start_time..end_time must span at most 90 days")
    limit = param_limit(call.body, 100, 1000, over=1000)  # doc 92228: 默认为100条，最多支持1000条
    ways = sorted(
        (w for w in state.contact_ways.values() if start <= w["create_time"] <= end),
        key=lambda w: (w["create_time"], w["config_id"]),
    )
    page, next_cursor = keyset_page(
        [((w["create_time"], w["config_id"]), {"config_id": w["config_id"]}) for w in ways],
        param_str(call.body, "cursor"),
        limit,
    )
    return {"contact_way": page, "next_cursor": next_cursor}
