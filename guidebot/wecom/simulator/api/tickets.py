"""The access token and the JS-SDK tickets (gettoken, get_jsapi_ticket, ticket/get)."""

from __future__ import annotations

import hashlib
from typing import Any

from ..errors import ApiError
from ..state import SimState
from .call import ApiCall


def gettoken(state: SimState, call: ApiCall) -> dict[str, Any]:
    token, ttl = state.issue_token(call.query.get("corpid", ""), call.query.get("corpsecret", ""))
    return {"access_token": token, "expires_in": ttl}


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
