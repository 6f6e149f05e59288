"""The corp's tag library and tagging customers (mark_tag, *_corp_tag) and remarks."""

from __future__ import annotations

from typing import Any

from ..errors import ApiError
from ..records import TagGroup
from ..state import SimState
from .call import ApiCall, param_int, param_str, param_str_list


def render_tag_group(group: TagGroup, tag_ids: set[str] | None = None) -> dict[str, Any]:
    tags = [t for t in group.tags.values() if tag_ids is None or t.id in tag_ids]
    tags.sort(key=lambda t: (-t.order, t.create_time, t.id))  # bigger order first
    return {
        "group_id": group.group_id,
        "group_name": group.group_name,
        "create_time": group.create_time,
        "order": group.order,
        "deleted": False,
        "tag": [
            {
                "id": t.id,
                "name": t.name,
                "create_time": t.create_time,
                "order": t.order,
                "deleted": False,
            }
            for t in tags
        ],
    }


def mark_tag(state: SimState, call: ApiCall) -> dict[str, Any]:
    body = call.body
    state.mark_tag(
        param_str(body, "userid", missing=41009),
        param_str(body, "external_userid", missing=41035),
        param_str_list(body, "add_tag"),
        param_str_list(body, "remove_tag"),
    )
    return {}


def get_corp_tag_list(state: SimState, call: ApiCall) -> dict[str, Any]:
    tag_ids = set(param_str_list(call.body, "tag_id"))
    group_ids = set(param_str_list(call.body, "group_id"))
    groups = sorted(state.tag_groups.values(), key=lambda g: (-g.order, g.create_time, g.group_id))
    if group_ids:  # group_id wins over tag_id
        rendered = [render_tag_group(g) for g in groups if g.group_id in group_ids]
    elif tag_ids:
        rendered = [render_tag_group(g, tag_ids) for g in groups if tag_ids.intersection(g.tags)]
    else:
        rendered = [render_tag_group(g) for g in groups]
    return {"tag_group": rendered}


def add_corp_tag(state: SimState, call: ApiCall) -> dict[str, Any]:
    body = call.body
    raw_tags = body.get("tag")
    if not isinstance(raw_tags, list) or not raw_tags:
        raise ApiError(40058, "tag must be a non-empty list of {name, order}")
    tags = []
    for item in raw_tags:
        if not isinstance(item, dict):
            raise ApiError(40058, "each tag must be an object")
        tags.append(
            (param_str(item, "name", missing=41018), param_int(item, "order", default=0), None)
        )
    group, added = state.add_tags(
        tags,
        group_id=param_str(body, "group_id") or None,
        group_name=param_str(body, "group_name") or None,
        group_order=param_int(body, "order", default=0),
    )
    return {"tag_group": render_tag_group(group, {t.id for t in added})}


def edit_corp_tag(state: SimState, call: ApiCall) -> dict[str, Any]:
    body = call.body
    target = param_str(body, "id", missing=40068)
    name = param_str(body, "name", max_len=30) or None
    order = body.get("order")
    if target in state.tag_groups:
        group = state.tag_groups[target]
        group.group_name = name or group.group_name
        group.order = param_int(body, "order") if order is not None else group.order
    elif target in state.tag_index:
        group, tag = state.tag(target)
        if name and any(t.name == name and t.id != target for t in group.tags.values()):
            raise ApiError(40071)
        tag.name = name or tag.name
        tag.order = param_int(body, "order") if order is not None else tag.order
    else:
        raise ApiError(40068)
    return {}


def del_corp_tag(state: SimState, call: ApiCall) -> dict[str, Any]:
    tag_ids, group_ids = param_str_list(call.body, "tag_id"), param_str_list(call.body, "group_id")
    if not tag_ids and not group_ids:
        raise ApiError(40058, "tag_id and group_id are both empty")
    state.delete_tags(tag_ids, group_ids)
    return {}


def remark(state: SimState, call: ApiCall) -> dict[str, Any]:
    body = call.body
    relation = state.pair(
        param_str(body, "userid", missing=41009), param_str(body, "external_userid", missing=41035)
    )
    fields = ("remark", "description", "remark_company", "remark_mobiles", "remark_pic_mediaid")
    if all(body.get(k) in (None, "", []) for k in fields):
        raise ApiError(40058, "remark, description, remark_company, ... are all empty")
    if "remark" in body:
        relation.remark = param_str(body, "remark", max_len=20)
    if "description" in body:
        relation.description = param_str(body, "description", max_len=150)
    if "remark_company" in body:
        relation.remark_corp_name = param_str(body, "remark_company", max_len=20)
    if "remark_mobiles" in body:
        mobiles = param_str_list(body, "remark_mobiles")
        relation.remark_mobiles = [m for m in mobiles if m]  # [""] clears
    return {}  # API edits produce no callback (reference §2.4)
