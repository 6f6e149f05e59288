"""The /_sim control API: seed the corp, make customers act, inspect what WeCom saw.

Contact endpoints change the state first and then deliver the matching callback, so a server
that reacts by calling the API already sees the change. `"deliver": false` skips the callback
(WeCom sometimes drops events). Bad input answers 4xx with {"error": reason}.

Endpoints (under /_sim; JSON bodies, extra fields ignored):
  POST departments {id, name, parentid=1, order?}          seed (upsert) a department
  POST users {userid, name, department=[1], notify?}        seed a member (change_contact)
  POST users/delete {userid, notify?}                       the member leaves the corp
  POST customers {external_userid, name?, gender?, ...}     seed a customer
  POST tags {group_name|group_id, tags: [name|{name,id?}]}  seed corp tags
  POST contact/add | contact/add_half {userid, external_userid, state?, welcome_code?,
       config_id?, name?, deliver?}                         customer adds a guide
  POST contact/delete_by_customer | delete_by_guide {userid, external_userid, deliver?}
  POST contact/edit {userid, external_userid, remark?, description?, add_tag?, remove_tag?}
  POST contact/transfer {handover_userid, takeover_userid, external_userid,
       outcome=accept|refuse|limit, deliver?}               finish a pending transfer
  POST messages {userid, text}   POST callbacks {xml}   POST verify_url
  POST groupmsg/confirm {msgid, userid, external_userid?}   GET groupmsgs
  POST|GET|DELETE faults   GET|DELETE calls[?api=&since=]   GET deliveries
  GET app_messages[?userid=]   GET welcomes[?external_userid=]
  GET relations[?userid=&external_userid=&status=]
  GET|POST config   POST tokens/revoke   POST jsapi/verify
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .api import jsapi_signature, render_tag_group
from .delivery import contact_event_xml, event_xml, text_message_xml
from .keys import DELIVERER, SIMULATOR_STATE
from .state import (
    ApiError,
    ControlError,
    Customer,
    Fault,
    Member,
    Relation,
    SimState,
    WelcomeCode,
)

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
)


@web.middleware
async def control_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ControlError as exc:
        return web.json_response({"error": exc.reason}, status=exc.status)
    except ApiError as exc:  # a WeCom rule refused a seeded value (e.g. a duplicate tag name)
        return web.json_response({"error": exc.errmsg, "errcode": exc.errcode}, status=400)
    except web.HTTPNotFound:
        return web.json_response({"error": f"no control endpoint {request.path}"}, status=404)
    except web.HTTPMethodNotAllowed as exc:
        return web.json_response(
            {"error": f"{request.method} not allowed; use {sorted(exc.allowed_methods)}"},
            status=405,
        )


def create_control_app() -> web.Application:
    app = web.Application(middlewares=[control_errors])
    app.add_routes(routes)
    return app


# ---- request helpers ---------------------------------------------------------------------


def _state(request: web.Request) -> SimState:
    return request.config_dict[SIMULATOR_STATE]


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ControlError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ControlError("body must be a JSON object")
    return value


def _str(body: dict[str, Any], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if value is None:
        raise ControlError(f"{key!r} is required")
    if not isinstance(value, str) or (not value and default is None):
        raise ControlError(f"{key!r} must be a non-empty string")
    return value


def _opt_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise ControlError(f"{key!r} must be a string")
    return value


def _int(body: dict[str, Any], key: str, default: int | None = None) -> int:
    value = body.get(key, default)
    if value is None:
        raise ControlError(f"{key!r} is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ControlError(f"{key!r} must be an integer")
    return value


def _bool(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise ControlError(f"{key!r} must be true or false")
    return value


def _str_list(body: dict[str, Any], key: str) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ControlError(f"{key!r} must be a list of strings")
    return value


def _json(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda v: json.dumps(v, ensure_ascii=False))


async def _deliver(request: web.Request, body: dict[str, Any], plaintext: str) -> dict[str, Any]:
    if not _bool(body, "deliver", True):
        return {"delivered": False, "attempts": [], "reply": None, "skipped": True}
    return await request.config_dict[DELIVERER].deliver(plaintext)


def _relation(relation: Relation) -> dict[str, Any]:
    return {
        "userid": relation.userid,
        "external_userid": relation.external_userid,
        "status": relation.status,
        "createtime": relation.createtime,
        "state": relation.state,
        "remark": relation.remark,
        "description": relation.description,
        "tag_ids": list(relation.tag_ids),
        "remark_mobiles": list(relation.remark_mobiles),
        "add_way": relation.add_way,
        "oper_userid": relation.oper_userid,
    }


def _contact_xml(state: SimState, change_type: str, userid: str, ext: str, **extra: Any) -> str:
    return contact_event_xml(
        state.config.identity.corp_id, int(state.now()), change_type, userid, ext, **extra
    )


# ---- address book ------------------------------------------------------------------------


@routes.post("/departments")
async def post_department(request: web.Request) -> web.Response:
    body = await _body(request)
    dept_id = _int(body, "id")
    created = _state(request).upsert_department(
        dept_id, _str(body, "name"), _int(body, "parentid", 1), _int(body, "order", 0)
    )
    return _json({"id": dept_id, "created": created})


@routes.post("/users")
async def post_user(request: web.Request) -> web.Response:
    body = await _body(request)
    state = _state(request)
    departments = body.get("department", [1])
    if not isinstance(departments, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in departments
    ):
        raise ControlError("'department' must be a list of department ids")
    member = Member(
        userid=_str(body, "userid"),
        name=_str(body, "name"),
        department=departments,
        position=_str(body, "position", ""),
    )
    created = state.upsert_member(member)
    answer: dict[str, Any] = {"userid": member.userid, "created": created}
    if _bool(body, "notify", False):
        # Since 2022-08-15 member events carry only ids; servers fetch user/get.
        xml = event_xml(
            state.config.identity.corp_id,
            int(state.now()),
            "change_contact",
            [
                ("ChangeType", "create_user" if created else "update_user"),
                ("UserID", member.userid),
                ("Department", ",".join(map(str, member.department))),
                ("MainDepartment", str(member.department[0])),
            ],
            plain=("ChangeType", "MainDepartment"),
        )
        answer.update(await request.config_dict[DELIVERER].deliver(xml))
    return _json(answer)


@routes.post("/users/delete")
async def delete_user(request: web.Request) -> web.Response:
    """The member leaves the corp; their customers wait for a resigned transfer."""
    body = await _body(request)
    state = _state(request)
    member = state.resign_member(_str(body, "userid"))
    answer: dict[str, Any] = {"userid": member.userid, "resigned": True}
    if _bool(body, "notify", False):
        xml = event_xml(
            state.config.identity.corp_id,
            int(state.now()),
            "change_contact",
            [("ChangeType", "delete_user"), ("UserID", member.userid)],
            plain=("ChangeType",),
        )
        answer.update(await request.config_dict[DELIVERER].deliver(xml))
    return _json(answer)


@routes.post("/customers")
async def post_customer(request: web.Request) -> web.Response:
    body = await _body(request)
    ext = _str(body, "external_userid")
    customer = Customer(
        external_userid=ext,
        name=_str(body, "name", ext),
        type=_int(body, "type", 1),
        gender=_int(body, "gender", 0),
        unionid=_opt_str(body, "unionid"),
        avatar=_str(body, "avatar", ""),
        corp_name=_str(body, "corp_name", ""),
        corp_full_name=_str(body, "corp_full_name", ""),
        position=_str(body, "position", ""),
    )
    if customer.type not in (1, 2) or customer.gender not in (0, 1, 2):
        raise ControlError("'type' must be 1 or 2 and 'gender' 0, 1 or 2")
    created = _state(request).upsert_customer(customer)
    return _json({"external_userid": ext, "created": created})


@routes.post("/tags")
async def post_tags(request: web.Request) -> web.Response:
    """Seed corp tags: {"group_name"|"group_id", "order"?, "tags": [name | {name, id?, order?}]}."""
    body = await _body(request)
    raw = body.get("tags")
    if not isinstance(raw, list) or not raw:
        raise ControlError("'tags' must be a non-empty list of names or {name, id?, order?}")
    tags = []
    for item in raw:
        if isinstance(item, str):
            tags.append((item, 0, None))
        elif isinstance(item, dict):
            tags.append((_str(item, "name"), _int(item, "order", 0), _opt_str(item, "id")))
        else:
            raise ControlError("each tag must be a name or an object")
    group, added = _state(request).add_tags(
        tags,
        group_id=_opt_str(body, "group_id"),
        group_name=_opt_str(body, "group_name"),
        group_order=_int(body, "order", 0),
    )
    return _json({"tag_group": render_tag_group(group, {t.id for t in added})})


# ---- customers act -----------------------------------------------------------------------


async def _add(request: web.Request, *, half: bool) -> web.Response:
    body = await _body(request)
    state = _state(request)
    contact_state = _str(body, "state", "")
    userid = body.get("userid")
    config_id = _opt_str(body, "config_id")
    if config_id is not None:  # added through a 「联系我」 way: its state comes along
        way = state.contact_ways.get(config_id)
        if way is None:
            raise ControlError(f"unknown config_id {config_id!r}")
        contact_state = way["state"]
        userid = userid or (way["user"][0] if way["user"] else None)
    relation, code = state.add_contact(
        _str({"userid": userid}, "userid"),
        _str(body, "external_userid"),
        half=half,
        state=contact_state,
        name=_opt_str(body, "name"),
        add_way=_int(body, "add_way", 1),
        welcome_code=_bool(body, "welcome_code", False),
    )
    xml = _contact_xml(
        state,
        "add_half_external_contact" if half else "add_external_contact",
        relation.userid,
        relation.external_userid,
        State=contact_state or None,
        WelcomeCode=code.code if code else None,
    )
    answer = await _deliver(request, body, xml)
    return _json({**answer, "welcome_code": _code(code), "relation": _relation(relation)})


def _code(code: WelcomeCode | None) -> str | None:
    return code.code if code else None


@routes.post("/contact/add")
async def contact_add(request: web.Request) -> web.Response:
    return await _add(request, half=False)


@routes.post("/contact/add_half")
async def contact_add_half(request: web.Request) -> web.Response:
    return await _add(request, half=True)


@routes.post("/contact/delete_by_customer")
async def contact_delete_by_customer(request: web.Request) -> web.Response:
    body = await _body(request)
    state = _state(request)
    relation = state.delete_by_customer(_str(body, "userid"), _str(body, "external_userid"))
    xml = _contact_xml(state, "del_follow_user", relation.userid, relation.external_userid)
    answer = await _deliver(request, body, xml)
    return _json({**answer, "relation": _relation(relation)})


@routes.post("/contact/delete_by_guide")
async def contact_delete_by_guide(request: web.Request) -> web.Response:
    body = await _body(request)
    state = _state(request)
    relation = state.delete_by_guide(_str(body, "userid"), _str(body, "external_userid"))
    xml = _contact_xml(state, "del_external_contact", relation.userid, relation.external_userid)
    answer = await _deliver(request, body, xml)
    return _json({**answer, "relation": _relation(relation)})


@routes.post("/contact/edit")
async def contact_edit(request: web.Request) -> web.Response:
    """The guide edits remark/description/tags in the client (API edits send no callback)."""
    body = await _body(request)
    state = _state(request)
    relation = state.edit_contact(
        _str(body, "userid"),
        _str(body, "external_userid"),
        remark=_opt_str(body, "remark"),
        description=_opt_str(body, "description"),
        remark_mobiles=_str_list(body, "remark_mobiles"),
        add_tag=_str_list(body, "add_tag") or (),
        remove_tag=_str_list(body, "remove_tag") or (),
    )
    xml = _contact_xml(state, "edit_external_contact", relation.userid, relation.external_userid)
    answer = await _deliver(request, body, xml)
    return _json({**answer, "relation": _relation(relation)})


@routes.post("/contact/transfer")
async def contact_transfer(request: web.Request) -> web.Response:
    """Complete a pending transfer: "accept", "refuse" (customer) or "limit" (takeover full)."""
    body = await _body(request)
    state = _state(request)
    outcome = _str(body, "outcome", "accept")
    if outcome not in ("accept", "refuse", "limit"):
        raise ControlError("'outcome' must be accept, refuse or limit")
    handover, takeover = _str(body, "handover_userid"), _str(body, "takeover_userid")
    ext = _str(body, "external_userid")
    transfer, relation, added = state.finish_transfer(handover, takeover, ext, outcome)
    events: list[tuple[str, str]] = []
    if outcome == "accept":
        if transfer.kind == "in_service":  # a resigned member is gone: nobody to tell
            events.append(
                (
                    "del_external_contact",
                    _contact_xml(
                        state, "del_external_contact", handover, ext, Source="DELETE_BY_TRANSFER"
                    ),
                )
            )
        if added:  # no add event when the takeover was already a friend
            events.append(
                ("add_external_contact", _contact_xml(state, "add_external_contact", takeover, ext))
            )
    else:
        reason = "customer_refused" if outcome == "refuse" else "customer_limit_exceed"
        events.append(
            (
                "transfer_fail",
                _contact_xml(state, "transfer_fail", takeover, ext, FailReason=reason),
            )
        )
    deliveries = []
    for change_type, xml in events:
        deliveries.append({"event": change_type, **await _deliver(request, body, xml)})
    return _json(
        {
            "delivered": bool(deliveries) and all(d["delivered"] for d in deliveries),
            "deliveries": deliveries,
            "status": transfer.status,
            "relation": _relation(relation) if relation else None,
        }
    )


@routes.post("/messages")
async def post_message(request: web.Request) -> web.Response:
    """A guide writes to the app; the answer carries the decrypted passive reply, if any."""
    body = await _body(request)
    state = _state(request)
    userid = _str(body, "userid")
    if userid not in state.members:
        raise ControlError(f"unknown userid {userid!r}")
    msg_id = state.new_msg_id()
    identity = state.config.identity
    xml = text_message_xml(
        identity.corp_id, userid, int(state.now()), _str(body, "text"), msg_id, identity.agent_id
    )
    answer = await _deliver(request, body, xml)
    return _json({**answer, "msg_id": msg_id})


@routes.post("/callbacks")
async def post_callback(request: web.Request) -> web.Response:
    """Deliver any plaintext as-is (malformed on purpose, if a test wants that)."""
    body = await _body(request)
    return _json(await request.config_dict[DELIVERER].deliver(_str(body, "xml")))


@routes.post("/verify_url")
async def verify_url(request: web.Request) -> web.Response:
    await _body(request)
    return _json(await request.config_dict[DELIVERER].verify_url())


@routes.get("/deliveries")
async def get_deliveries(request: web.Request) -> web.Response:
    return _json({"deliveries": list(_state(request).deliveries)})


# ---- mass messages -----------------------------------------------------------------------


@routes.post("/groupmsg/confirm")
async def groupmsg_confirm(request: web.Request) -> web.Response:
    """The guide taps send; optional "external_userid" limits it to those (allow_select)."""
    body = await _body(request)
    msgid, userid = _str(body, "msgid"), _str(body, "userid")
    results = _state(request).confirm_task(msgid, userid, _str_list(body, "external_userid"))
    send_list = [
        {
            "external_userid": r.external_userid,
            "userid": r.userid,
            "status": r.status,
            "send_time": r.send_time,
        }
        for r in results
    ]
    return _json({"msgid": msgid, "userid": userid, "send_list": send_list})


@routes.get("/groupmsgs")
async def get_groupmsgs(request: web.Request) -> web.Response:
    tasks = [
        {
            "msgid": t.msgid,
            "create_time": t.create_time,
            "text": t.text,
            "attachments": t.attachments,
            "canceled": t.canceled,
            "reminders": len(t.reminders),
            "senders": [
                {"userid": s.userid, "status": s.status, "send_time": s.send_time}
                for s in t.senders.values()
            ],
            "send_list": [
                {
                    "external_userid": r.external_userid,
                    "userid": r.userid,
                    "status": r.status,
                    "send_time": r.send_time,
                }
                for r in t.results
            ],
        }
        for t in _state(request).tasks.values()
    ]
    return _json({"tasks": tasks})


# ---- faults, calls, inspection -----------------------------------------------------------


@routes.post("/faults")
async def post_fault(request: web.Request) -> web.Response:
    body = await _body(request)
    api = _str(body, "api").removeprefix("/").removeprefix("cgi-bin/").strip("/")
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
    timeout = _bool(body, "timeout", False)
    times = _int(body, "times", 1)
    if times < 1:
        raise ControlError("'times' must be at least 1")
    if errcode is None and http_status is None and not latency and not timeout:
        raise ControlError("a fault needs errcode, http_status, latency or timeout")
    fault = Fault(api, times, errcode, http_status, float(latency), timeout)
    state = _state(request)
    state.add_fault(fault)
    return _json({"fault": fault.describe(), "faults": [f.describe() for f in state.faults]})


@routes.delete("/faults")
async def delete_faults(request: web.Request) -> web.Response:
    state = _state(request)
    cleared = len(state.faults)
    state.faults.clear()
    return _json({"cleared": cleared})


@routes.get("/faults")
async def get_faults(request: web.Request) -> web.Response:
    return _json({"faults": [f.describe() for f in _state(request).faults]})


@routes.get("/calls")
async def get_calls(request: web.Request) -> web.Response:
    since = request.query.get("since", "0")
    if not since.isdigit():
        raise ControlError("'since' must be a call sequence number")
    calls = _state(request).call_log(request.query.get("api"), int(since))
    return _json({"calls": calls})


@routes.delete("/calls")
async def delete_calls(request: web.Request) -> web.Response:
    state = _state(request)
    cleared = len(state.calls)
    state.calls.clear()
    return _json({"cleared": cleared})


@routes.get("/app_messages")
async def get_app_messages(request: web.Request) -> web.Response:
    userid = request.query.get("userid")
    messages = [m for m in _state(request).app_messages if userid is None or m["userid"] == userid]
    return _json({"messages": messages})


@routes.get("/welcomes")
async def get_welcomes(request: web.Request) -> web.Response:
    ext = request.query.get("external_userid")
    welcomes = [w for w in _state(request).welcomes if ext is None or w["external_userid"] == ext]
    return _json({"welcomes": welcomes})


@routes.get("/relations")
async def get_relations(request: web.Request) -> web.Response:
    q = request.query
    relations = [
        _relation(r)
        for r in _state(request).relations.values()
        if q.get("userid") in (None, r.userid)
        and q.get("external_userid") in (None, r.external_userid)
        and q.get("status") in (None, r.status)
    ]
    return _json({"relations": relations})


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
    return _json(_config_view(_state(request)))


@routes.post("/config")
async def post_config(request: web.Request) -> web.Response:
    """Change callback_url, limits and the monthly mass-message cap (null: days in month)."""
    body = await _body(request)
    state = _state(request)
    changes = {k: body[k] for k in CONFIG_FIELDS if k in body}
    if "monthly_cap" in body:
        cap = body["monthly_cap"]
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 0):
            raise ControlError("'monthly_cap' must be a non-negative integer or null")
    state.update_config(**changes)
    if "monthly_cap" in body:
        state.monthly_cap = body["monthly_cap"]
    return _json(_config_view(state))


@routes.post("/tokens/revoke")
async def revoke_tokens(request: web.Request) -> web.Response:
    """WeCom may invalidate tokens early; afterwards they answer 40014."""
    return _json({"revoked": _state(request).revoke_tokens()})


@routes.post("/jsapi/verify")
async def jsapi_verify(request: web.Request) -> web.Response:
    """Check a JS-SDK signature the way the WeCom client does, against live tickets."""
    body = await _body(request)
    kind = _str(body, "type", "jsapi")
    if kind not in ("jsapi", "agent_config"):
        raise ControlError("'type' must be jsapi or agent_config")
    url = _str(body, "url")
    timestamp = body.get("timestamp")
    if not isinstance(timestamp, int | str) or isinstance(timestamp, bool):
        raise ControlError("'timestamp' is required")
    noncestr, signature = _str(body, "noncestr"), _str(body, "signature")
    state = _state(request)
    if "#" in url:
        return _json({"valid": False, "reason": "the signed url must not contain '#...'"})
    valid = any(
        jsapi_signature(ticket, noncestr, timestamp, url) == signature
        for ticket in list(state.tickets)
        if state.ticket_valid(kind, ticket)
    )
    return _json(
        {"valid": valid} if valid else {"valid": False, "reason": "no live ticket matches"}
    )
