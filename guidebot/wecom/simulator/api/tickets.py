"""The access token, the app itself and the JS-SDK tickets (gettoken, agent/get,
get_jsapi_ticket, ticket/get)."""

from __future__ import annotations

import hashlib
from typing import Any

from ..errors import ApiError
from ..state import SimState
from .call import ApiCall


def gettoken(state: SimState, call: ApiCall) -> dict[str, Any]:
    token, ttl = state.issue_token(call.query.get("corpid", ""), call.query.get("corpsecret", ""))
    return {"access_token": token, "expires_in": ttl}


def agent_get(state: SimState, call: ApiCall) -> dict[str, Any]:
    """doc 90227 获取指定的应用详情: a self-built app's token reads its own app only (301002
    for another agentid); redirect_domain is its verified 可信域名. Visible range: the corp."""
    raw = call.query.get("agentid", "")
    if not raw:
        raise ApiError(41011)
    if not raw.isdigit():
        raise ApiError(40056)
    identity = state.config.identity
    if int(raw) != identity.agent_id:
        raise ApiError(301002)
    return {
        "agentid": identity.agent_id,
        "name": "guidebot",
        "square_logo_url": "",
        "description": "",
        "allow_userinfos": {"user": []},
        "allow_partys": {"partyid": [1]},
        "allow_tags": {"tagid": []},
        "close": 0,
        "redirect_domain": state.config.trusted_domain,
        "report_location_flag": 0,
        "isreportenter": 0,
        "home_url": "",
        "customized_publish_status": 1,
    }


def get_jsapi_ticket(state: SimState, call: ApiCall) -> dict[str, Any]:
    return {"ticket": state.issue_ticket("jsapi"), "expires_in": 7200}


def ticket_get(state: SimState, call: ApiCall) -> dict[str, Any]:
    if call.query.get("type") != "agent_config":
        raise ApiError(40058, "type must be agent_config")
    return {"ticket": state.issue_ticket("agent_config"), "expires_in": 7200}


def jsapi_signature(ticket: str, noncestr: str, timestamp: str | int, url: str) -> str:
    """WeCom's JS-SDK signature: fixed field order, no URL encoding (reference §5)."""
    raw = f"jsapi_ticket={ticket}&noncestr={noncestr}&timestamp={timestamp}&url={url}"
    return hashlib.sha1(raw.encode()).hexdigest()
