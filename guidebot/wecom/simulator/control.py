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
  POST tags/console {id, name?|delete?, deliver?}          the admin renames or deletes a
                                                            tag or group in the console
  POST contact/add | contact/add_half {userid, external_userid, state?, welcome_code?,
       config_id?, name?, deliver?}                         customer adds a guide
  POST contact/delete_by_customer | delete_by_guide {userid, external_userid, deliver?}
  POST contact/edit {userid, external_userid, remark?, description?, add_tag?, remove_tag?}
  POST contact/transfer {handover_userid, takeover_userid, external_userid,
       outcome=accept|refuse|limit, deliver?}               finish a pending transfer
  POST messages {userid, text}   POST callbacks {xml}   POST verify_url
  POST chats {userid, external_userid, from=customer|member, count=1}
                                                            a one-to-one chat message (no callback)
  POST groupmsg/confirm {msgid, userid, external_userid? | chat_id?}   GET groupmsgs
  POST|GET|DELETE faults   GET|DELETE calls[?api=&since=]   GET deliveries
  GET app_messages[?userid=]   GET welcomes[?external_userid=]
  GET relations[?userid=&external_userid=&status=]
  GET|POST config   POST tokens/revoke   POST jsapi/verify
  customer groups: see .control_groups

Seeding, customers' acts, messages, callbacks and mass-send confirmations are here; faults, the
call log, inspection, config, tokens and the JS-SDK check are in .inspection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from . import control_groups, inspection
from .api.tags import render_tag_group
from .control_io import (
    field_bool,
    field_int,
    field_opt_str,
    field_str,
    field_str_list,
    json_answer,
    read_body,
    relation_view,
    sim_state,
)
from .delivery import contact_event_xml, event_xml, text_message_xml
from .errors import ApiError, ControlError
from .keys import DELIVERER
from .records import Customer, Member, WelcomeCode
from .state import SimState

routes = web.RouteTableDef()


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
    app.add_routes(inspection.routes)
    app.add_routes(control_groups.routes)  # customer groups: create, join, leave, ...
    return app


async def _deliver(request: web.Request, body: dict[str, Any], plaintext: str) -> dict[str, Any]:
    if not field_bool(body, "deliver", True):
        return {"delivered": False, "attempts": [], "reply": None, "skipped": True}
    return await request.config_dict[DELIVERER].deliver(plaintext)


def _contact_xml(state: SimState, change_type: str, userid: str, ext: str, **extra: Any) -> str:
    return contact_event_xml(
        state.config.identity.corp_id, int(state.now()), change_type, userid, ext, **extra
    )


# ---- address book ------------------------------------------------------------------------


@routes.post("/departments")
async def post_department(request: web.Request) -> web.Response:
    body = await read_body(request)
    dept_id = field_int(body, "id")
    created = sim_state(request).upsert_department(
        dept_id,
        field_str(body, "name"),
        field_int(body, "parentid", 1),
        field_int(body, "order", 0),
    )
    return json_answer({"id": dept_id, "created": created})


@routes.post("/users")
async def post_user(request: web.Request) -> web.Response:
    body = await read_body(request)
    state = sim_state(request)
    departments = body.get("department", [1])
    if not isinstance(departments, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in departments
    ):
        raise ControlError("'department' must be a list of department ids")
    member = Member(
        userid=field_str(body, "userid"),
        name=field_str(body, "name"),
        department=departments,
        position=field_str(body, "position", ""),
    )
    created = state.upsert_member(member)
    answer: dict[str, Any] = {"userid": member.userid, "created": created}
    if field_bool(body, "notify", False):
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
    return json_answer(answer)


@routes.post("/users/delete")
async def delete_user(request: web.Request) -> web.Response:
    """The member leaves the corp; their customers wait for a resigned transfer."""
    body = await read_body(request)
    state = sim_state(request)
    member = state.resign_member(field_str(body, "userid"))
    answer: dict[str, Any] = {"userid": member.userid, "resigned": True}
    if field_bool(body, "notify", False):
        xml = event_xml(
            state.config.identity.corp_id,
            int(state.now()),
            "change_contact",
            [("ChangeType", "delete_user"), ("UserID", member.userid)],
            plain=("ChangeType",),
        )
        answer.update(await request.config_dict[DELIVERER].deliver(xml))
    return json_answer(answer)


@routes.post("/customers")
async def post_customer(request: web.Request) -> web.Response:
    body = await read_body(request)
    ext = field_str(body, "external_userid")
    customer = Customer(
        external_userid=ext,
        name=field_str(body, "name", ext),
        type=field_int(body, "type", 1),
        gender=field_int(body, "gender", 0),
        unionid=field_opt_str(body, "unionid"),
        avatar=field_str(body, "avatar", ""),
        corp_name=field_str(body, "corp_name", ""),
        corp_full_name=field_str(body, "corp_full_name", ""),
        position=field_str(body, "position", ""),
    )
    if customer.type not in (1, 2) or customer.gender not in (0, 1, 2):
        raise ControlError("'type' must be 1 or 2 and 'gender' 0, 1 or 2")
    created = sim_state(request).upsert_customer(customer)
    return json_answer({"external_userid": ext, "created": created})


@routes.post("/tags")
async def post_tags(request: web.Request) -> web.Response:
    """Seed corp tags: {"group_name"|"group_id", "order"?, "tags": [name | {name, id?, order?}]}."""
    body = await read_body(request)
    raw = body.get("tags")
    if not isinstance(raw, list) or not raw:
        raise ControlError("'tags' must be a non-empty list of names or {name, id?, order?}")
    tags = []
    for item in raw:
        if isinstance(item, str):
            tags.append((item, 0, None))
        elif isinstance(item, dict):
            tags.append(
                (field_str(item, "name"), field_int(item, "order", 0), field_opt_str(item, "id"))
            )
        else:
            raise ControlError("each tag must be a name or an object")
    group, added = sim_state(request).add_tags(
        tags,
        group_id=field_opt_str(body, "group_id"),
        group_name=field_opt_str(body, "group_name"),
        group_order=field_int(body, "order", 0),
    )
    return json_answer({"tag_group": render_tag_group(group, {t.id for t in added})})


@routes.post("/tags/console")
async def console_tags(request: web.Request) -> web.Response:
    """The admin edits the tag library in the console (管理端): {"id", "name"} renames a tag or
    group, {"id", "delete": true} deletes it (its customers lose it). WeCom then calls back
    change_external_tag, update or delete, with Id and TagType (doc 92130 企业客户标签变更事件 /
    删除事件); the same change made through the API calls back nothing (doc 92130)."""
    body = await read_body(request)
    state = sim_state(request)
    target = field_str(body, "id")
    kind = "tag_group" if target in state.tag_groups else "tag"
    if kind == "tag" and target not in state.tag_index:
        raise ControlError(f"unknown tag or group id {target!r}", 404)
    if field_bool(body, "delete", False):
        change = "delete"
        state.delete_tags(
            [target] if kind == "tag" else [], [target] if kind == "tag_group" else []
        )
    else:
        change = "update"
        name = field_str(body, "name")
        if kind == "tag_group":
            state.tag_groups[target].group_name = name
        else:
            state.tag(target)[1].name = name
    xml = event_xml(
        state.config.identity.corp_id,
        int(state.now()),
        "change_external_tag",
        [("Id", target), ("TagType", kind), ("ChangeType", change)],
    )
    return json_answer(await _deliver(request, body, xml))


# ---- customers act -----------------------------------------------------------------------


async def _add(request: web.Request, *, half: bool) -> web.Response:
    body = await read_body(request)
    state = sim_state(request)
    contact_state = field_str(body, "state", "")
    userid = body.get("userid")
    config_id = field_opt_str(body, "config_id")
    if config_id is not None:  # added through a 「联系我」 way: its state comes along
        way = state.contact_ways.get(config_id)
        if way is None:
            raise ControlError(f"unknown config_id {config_id!r}")
        contact_state = way["state"]
        userid = userid or (way["user"][0] if way["user"] else None)
    relation, code = state.add_contact(
        field_str({"userid": userid}, "userid"),
        field_str(body, "external_userid"),
        half=half,
        state=contact_state,
        name=field_opt_str(body, "name"),
        add_way=field_int(body, "add_way", 1),
        welcome_code=field_bool(body, "welcome_code", False),
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
    return json_answer({**answer, "welcome_code": _code(code), "relation": relation_view(relation)})


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
    body = await read_body(request)
    state = sim_state(request)
    relation = state.delete_by_customer(
        field_str(body, "userid"), field_str(body, "external_userid")
    )
    xml = _contact_xml(state, "del_follow_user", relation.userid, relation.external_userid)
    answer = await _deliver(request, body, xml)
    return json_answer({**answer, "relation": relation_view(relation)})


@routes.post("/contact/delete_by_guide")
async def contact_delete_by_guide(request: web.Request) -> web.Response:
    body = await read_body(request)
    state = sim_state(request)
    relation = state.delete_by_guide(field_str(body, "userid"), field_str(body, "external_userid"))
    xml = _contact_xml(state, "del_external_contact", relation.userid, relation.external_userid)
    answer = await _deliver(request, body, xml)
    return json_answer({**answer, "relation": relation_view(relation)})


@routes.post("/contact/edit")
async def contact_edit(request: web.Request) -> web.Response:
    """The guide edits remark/description/tags in the client (API edits send no callback)."""
    body = await read_body(request)
    state = sim_state(request)
    relation = state.edit_contact(
        field_str(body, "userid"),
        field_str(body, "external_userid"),
        remark=field_opt_str(body, "remark"),
        description=field_opt_str(body, "description"),
        remark_mobiles=field_str_list(body, "remark_mobiles"),
        add_tag=field_str_list(body, "add_tag") or (),
        remove_tag=field_str_list(body, "remove_tag") or (),
    )
    xml = _contact_xml(state, "edit_external_contact", relation.userid, relation.external_userid)
    answer = await _deliver(request, body, xml)
    return json_answer({**answer, "relation": relation_view(relation)})


@routes.post("/contact/transfer")
async def contact_transfer(request: web.Request) -> web.Response:
    """Complete a pending transfer: "accept", "refuse" (customer) or "limit" (takeover full)."""
    body = await read_body(request)
    state = sim_state(request)
    outcome = field_str(body, "outcome", "accept")
    if outcome not in ("accept", "refuse", "limit"):
        raise ControlError("'outcome' must be accept, refuse or limit")
    handover, takeover = field_str(body, "handover_userid"), field_str(body, "takeover_userid")
    ext = field_str(body, "external_userid")
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
    return json_answer(
        {
            "delivered": bool(deliveries) and all(d["delivered"] for d in deliveries),
            "deliveries": deliveries,
            "status": transfer.status,
            "relation": relation_view(relation) if relation else None,
        }
    )


@routes.post("/messages")
async def post_message(request: web.Request) -> web.Response:
    """A guide writes to the app; the answer carries the decrypted passive reply, if any."""
    body = await read_body(request)
    state = sim_state(request)
    userid = field_str(body, "userid")
    if userid not in state.members:
        raise ControlError(f"unknown userid {userid!r}")
    msg_id = state.new_msg_id()
    identity = state.config.identity
    xml = text_message_xml(
        identity.corp_id,
        userid,
        int(state.now()),
        field_str(body, "text"),
        msg_id,
        identity.agent_id,
    )
    answer = await _deliver(request, body, xml)
    return json_answer({**answer, "msg_id": msg_id})


@routes.post("/chats")
async def post_chat(request: web.Request) -> web.Response:
    """A message in a member's one-to-one chat with a customer. WeCom tells the app nothing;
    it shows only in the contact statistics (get_user_behavior_data)."""
    body = await read_body(request)
    userid, ext = field_str(body, "userid"), field_str(body, "external_userid")
    count = field_int(body, "count", 1)
    if not 1 <= count <= 1000:
        raise ControlError("'count' must be 1-1000")
    sim_state(request).post_chat(userid, ext, field_str(body, "from", "customer"), count)
    return json_answer({"userid": userid, "external_userid": ext, "count": count})


@routes.post("/callbacks")
async def post_callback(request: web.Request) -> web.Response:
    """Deliver any plaintext as-is (malformed on purpose, if a test wants that)."""
    body = await read_body(request)
    return json_answer(await request.config_dict[DELIVERER].deliver(field_str(body, "xml")))


@routes.post("/verify_url")
async def verify_url(request: web.Request) -> web.Response:
    await read_body(request)
    return json_answer(await request.config_dict[DELIVERER].verify_url())


@routes.get("/deliveries")
async def get_deliveries(request: web.Request) -> web.Response:
    return json_answer({"deliveries": list(sim_state(request).deliveries)})


# ---- mass messages -----------------------------------------------------------------------


@routes.post("/groupmsg/confirm")
async def groupmsg_confirm(request: web.Request) -> web.Response:
    """The guide taps send; optional "external_userid" (or for a group send "chat_id") limits
    it to those (allow_select)."""
    body = await read_body(request)
    msgid, userid = field_str(body, "msgid"), field_str(body, "userid")
    only = field_str_list(body, "external_userid") or field_str_list(body, "chat_id")
    results = sim_state(request).confirm_task(msgid, userid, only)
    send_list = [
        {
            **({"chat_id": r.chat_id} if r.chat_id else {"external_userid": r.external_userid}),
            "userid": r.userid,
            "status": r.status,
            "send_time": r.send_time,
        }
        for r in results
    ]
    return json_answer({"msgid": msgid, "userid": userid, "send_list": send_list})


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
        for t in sim_state(request).tasks.values()
    ]
    return json_answer({"tasks": tasks})
