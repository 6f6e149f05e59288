"""Customers (externalcontact/get, list, batch/get_by_user, get_follow_user_list) and each
member's contact statistics (get_user_behavior_data)."""

from __future__ import annotations

from typing import Any

from ..errors import ApiError
from ..records import (
    DAY,
    MAX_FOLLOW_USERS_PER_PAGE,
    Customer,
    Relation,
    day_start,
    keyset_page,
)
from ..state import SimState
from .call import (
    ApiCall,
    param_int,
    param_limit,
    param_str,
    param_str_list,
)


def render_external_contact(customer: Customer) -> dict[str, Any]:
    out: dict[str, Any] = {
        "external_userid": customer.external_userid,
        "name": customer.name,
        "avatar": customer.avatar,
        "type": customer.type,
        "gender": customer.gender,
    }
    if customer.unionid:
        out["unionid"] = customer.unionid
    if customer.type == 2:
        out.update(
            position=customer.position,
            corp_name=customer.corp_name,
            corp_full_name=customer.corp_full_name,
        )
    return out


def render_follow(state: SimState, relation: Relation, *, tag_ids_only: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "userid": relation.userid,
        "remark": relation.remark,
        "description": relation.description,
        "createtime": relation.createtime,
    }
    if tag_ids_only:
        out["tag_id"] = list(relation.tag_ids)
    else:
        tags = []
        for tag_id in relation.tag_ids:
            group, tag = state.tag(tag_id)
            tags.append(
                {"group_name": group.group_name, "tag_name": tag.name, "type": 1, "tag_id": tag_id}
            )
        out["tags"] = tags
    if relation.remark_corp_name:
        out["remark_corp_name"] = relation.remark_corp_name
    out["remark_mobiles"] = list(relation.remark_mobiles)
    out["oper_userid"] = relation.oper_userid
    out["add_way"] = relation.add_way
    if relation.state:  # WeCom omits state when the add carried none
        out["state"] = relation.state
    return out


def externalcontact_get(state: SimState, call: ApiCall) -> dict[str, Any]:
    customer = state.customer(param_str(call.query, "external_userid", missing=41035))
    followers = state.followers(customer.external_userid)
    if not followers:
        raise ApiError(84061)
    page, next_cursor = keyset_page(
        [((r.createtime, r.userid), r) for r in followers],
        call.query.get("cursor", ""),
        MAX_FOLLOW_USERS_PER_PAGE,
    )
    out: dict[str, Any] = {
        "external_contact": render_external_contact(customer),
        "follow_user": [render_follow(state, r, tag_ids_only=False) for r in page],
    }
    if next_cursor:
        out["next_cursor"] = next_cursor
    return out


def externalcontact_list(state: SimState, call: ApiCall) -> dict[str, Any]:
    member = state.member(param_str(call.query, "userid", missing=41009))
    relations = state.customers_of(member.userid)
    if not relations:
        raise ApiError(84061)  # WeCom answers "not external contact" for an empty list
    return {"external_userid": [r.external_userid for r in relations]}


def batch_get_by_user(state: SimState, call: ApiCall) -> dict[str, Any]:
    userids = param_str_list(call.body, "userid_list")
    if not userids or len(userids) > 100:
        raise ApiError(40058, "userid_list must hold 1-100 userids")
    limit = param_limit(call.body, 50, 100, over=100)  # doc 92994: 超过最大值时取最大值
    items = []
    for index, userid in enumerate(userids):
        state.member(userid)
        items += [((index, r.createtime, r.external_userid), r) for r in state.customers_of(userid)]
    page, next_cursor = keyset_page(items, param_str(call.body, "cursor"), limit)
    return {
        "external_contact_list": [
            {
                "external_contact": render_external_contact(state.customers[r.external_userid]),
                "follow_info": render_follow(state, r, tag_ids_only=True),
            }
            for r in page
        ],
        "next_cursor": next_cursor,
    }


def get_follow_user_list(state: SimState, call: ApiCall) -> dict[str, Any]:
    return {"follow_user": list(state.members)}


# ---- statistics --------------------------------------------------------------------------


def get_user_behavior_data(state: SimState, call: ApiCall) -> dict[str, Any]:
    body = call.body
    userids = param_str_list(body, "userid", max_items=100)
    party = body.get("partyid") or []
    if not isinstance(party, list) or not all(isinstance(p, int) for p in party):
        raise ApiError(40058, "partyid must be a list of department ids")
    if len(party) > 100:
        raise ApiError(40058, "partyid has more than 100 items")
    if not userids and not party:
        raise ApiError(40058, "userid and partyid are both empty")
    # Doc 92132: times are floored to their day's 00:00; [start, end] is closed and spans at
    # most 30 days; only the last 180 days (today and the 179 before it) can be read.
    start = day_start(param_int(body, "start_time"))
    end = day_start(param_int(body, "end_time"))
    if start > end or end - start > 30 * DAY:
        raise ApiError(40058, "start_time..end_time must span at most 30 days")
    if start < day_start(state.now()) - 179 * DAY:
        raise ApiError(40058, "only the last 180 days can be queried")
    wanted = {state.member(u).userid for u in userids}
    for dept in party:
        wanted.update(m.userid for m in state.members_in(dept, fetch_child=True))
    return {"behavior_data": state.behavior_data(wanted, start, end)}
