"""The /_sim inspection and runtime endpoints: faults to inject, the call log, what WeCom sent and
saw, the runtime config, token revocation and the JS-SDK signature check.

The whole control API is listed in guidebot.wecom.simulator.control.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .api.tickets import jsapi_signature
from .control_io import (
    field_bool,
    field_int,
    field_str,
    json_answer,
    read_body,
    relation_view,
    sim_state,
)
from .errors import ControlError
from .records import Fault
from .state import SimState

routes = web.RouteTableDef()
CONFIG_FIELDS = (
    "callback_url",
    "token_ttl",
    "welcome_code_ttl",
    "api_limit_per_minute",
    "api_limit_per_hour",
    "member_messages_per_minute",
    "member_messages_per_hour",
    "callback_timeout",
    "callback_tries",
    "call_log_limit",
    "customer_contact",
    "trusted_ips",
    "trusted_domain",
)


@routes.post("/faults")
async def post_fault(request: web.Request) -> web.Response:
    body = await read_body(request)
    api = field_str(body, "api").removeprefix("/").removeprefix("cgi-bin/").strip("/")
    if not api:
        raise ControlError("'api' must name an API path or '*'")
    errcode = body.get("errcode")
    if errcode is not None and (isinstance(errcode, bool) or not isinstance(errcode, int)):
        raise ControlError("'errcode' must be an integer")
    http_status = body.get("http_status")
    if http_status is not None and (
        isinstance(http_status, bool)
        or not isinstance(http_status, int)
        or not 100 <= http_status <= 599
    ):
        raise ControlError("'http_status' must be an HTTP status code")
    latency = body.get("latency", 0)
    if isinstance(latency, bool) or not isinstance(latency, int | float) or latency < 0:
        raise ControlError("'latency' must be a non-negative number of seconds")
    timeout = field_bool(body, "timeout", False)
    times = field_int(body, "times", 1)
    if times < 1:
        raise ControlError("'times' must be at least 1")
    if errcode is None and http_status is None and not latency and not timeout:
        raise ControlError("a fault needs errcode, http_status, latency or timeout")
    fault = Fault(api, times, errcode, http_status, float(latency), timeout)
    state = sim_state(request)
    state.add_fault(fault)
    return json_answer({"fault": fault.describe(), "faults": [f.describe() for f in state.faults]})


@routes.delete("/faults")
async def delete_faults(request: web.Request) -> web.Response:
    state = sim_state(request)
    cleared = len(state.faults)
    state.faults.clear()
    return json_answer({"cleared": cleared})


@routes.get("/faults")
async def get_faults(request: web.Request) -> web.Response:
    return json_answer({"faults": [f.describe() for f in sim_state(request).faults]})


@routes.get("/calls")
async def get_calls(request: web.Request) -> web.Response:
    since = request.query.get("since", "0")
    if not since.isdigit():
        raise ControlError("'since' must be a call sequence number")
    calls = sim_state(request).call_log(request.query.get("api"), int(since))
    return json_answer({"calls": calls})


@routes.delete("/calls")
async def delete_calls(request: web.Request) -> web.Response:
    state = sim_state(request)
    cleared = len(state.calls)
    state.calls.clear()
    return json_answer({"cleared": cleared})


@routes.get("/app_messages")
async def get_app_messages(request: web.Request) -> web.Response:
    userid = request.query.get("userid")
    messages = [
        m for m in sim_state(request).app_messages if userid is None or m["userid"] == userid
    ]
    return json_answer({"messages": messages})


@routes.get("/welcomes")
async def get_welcomes(request: web.Request) -> web.Response:
    ext = request.query.get("external_userid")
    welcomes = [
        w for w in sim_state(request).welcomes if ext is None or w["external_userid"] == ext
    ]
    return json_answer({"welcomes": welcomes})


@routes.get("/relations")
async def get_relations(request: web.Request) -> web.Response:
    q = request.query
    relations = [
        relation_view(r)
        for r in sim_state(request).relations.values()
        if q.get("userid") in (None, r.userid)
        and q.get("external_userid") in (None, r.external_userid)
        and q.get("status") in (None, r.status)
    ]
    return json_answer({"relations": relations})


def _config_view(state: SimState) -> dict[str, Any]:
    view = {name: getattr(state.config, name) for name in CONFIG_FIELDS}
    view.update(
        monthly_cap=state.monthly_cap,
        corp_id=state.config.identity.corp_id,
        agent_id=state.config.identity.agent_id,
    )
    return view


@routes.get("/config")
async def get_config(request: web.Request) -> web.Response:
    return json_answer(_config_view(sim_state(request)))


@routes.post("/config")
async def post_config(request: web.Request) -> web.Response:
    """Change callback_url, limits and the monthly mass-message cap (null: days in month)."""
    body = await read_body(request)
    state = sim_state(request)
    changes = {k: body[k] for k in CONFIG_FIELDS if k in body}
    if "monthly_cap" in body:
        cap = body["monthly_cap"]
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 0):
            raise ControlError("'monthly_cap' must be a non-negative integer or null")
    state.update_config(**changes)
    if "monthly_cap" in body:
        state.monthly_cap = body["monthly_cap"]
    return json_answer(_config_view(state))


@routes.post("/tokens/revoke")
async def revoke_tokens(request: web.Request) -> web.Response:
    """WeCom may invalidate tokens early; afterwards they answer 40014."""
    return json_answer({"revoked": sim_state(request).revoke_tokens()})


@routes.post("/jsapi/verify")
async def jsapi_verify(request: web.Request) -> web.Response:
    """Check a JS-SDK signature the way the WeCom client does, against live tickets."""
    body = await read_body(request)
    kind = field_str(body, "type", "jsapi")
    if kind not in ("jsapi", "agent_config"):
        raise ControlError("'type' must be jsapi or agent_config")
    url = field_str(body, "url")
    timestamp = body.get("timestamp")
    if not isinstance(timestamp, int | str) or isinstance(timestamp, bool):
        raise ControlError("'timestamp' is required")
    noncestr, signature = field_str(body, "noncestr"), field_str(body, "signature")
    state = sim_state(request)
    if "#" in url:
        return json_answer({"valid": False, "reason": "the signed url must not contain '#...'"})
    valid = any(
        jsapi_signature(ticket, noncestr, timestamp, url) == signature
        for ticket in list(state.tickets)
        if state.ticket_valid(kind, ticket)
    )
    return json_answer(
        {"valid": valid} if valid else {"valid": False, "reason": "no live ticket matches"}
    )
