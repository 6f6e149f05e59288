"""The /_sim control API for customer groups: what people do in the client, then the
change_external_chat callback WeCom sends about it (doc 96361), encrypted like every other.

Endpoints (under /_sim; JSON bodies; `"deliver": false` changes the state without the callback;
every answer carries the event's `plaintext`, so a test may deliver it again or out of order):
  POST groups {owner, name, members=[], chat_id?}           the owner creates a group (create)
  POST groups/join {chat_id, members, scene=1, invitor?, config_id?}
                                                            members join (update/add_member);
                                                            through a join way: scene 3 + state
  POST groups/leave {chat_id, members, removed=false}       members leave or are removed
                                                            (update/del_member, QuitScene 0/1)
  POST groups/change {chat_id, name? | notice? | owner?}    one change (change_name,
                                                            change_notice, change_owner)
  POST groups/dismiss {chat_id}                             the owner dismisses it (dismiss)
  POST group_welcome_templates/console {text}               a template made in the admin
                                                            console, not by the app
  GET groups                                                every group, as groupchat/get says
  POST moments/publish {moment_id, userid}                  an executor publishes a 企业发表
                                                            post (no callback, as in WeCom)
  GET moments                                               every post and creation job
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from .api.groups import render_group
from .control_io import (
    field_bool,
    field_int,
    field_opt_str,
    field_str,
    field_str_list,
    json_answer,
    read_body,
    sim_state,
)
from .delivery import cdata
from .errors import ControlError
from .keys import DELIVERER
from .state import SimState

routes = web.RouteTableDef()


def chat_event_xml(
    state: SimState,
    chat_id: str,
    change_type: str,
    detail: str | None = None,
    *,
    join_scene: int | None = None,
    quit_scene: int | None = None,
    members: list[str] | None = None,
    versions: tuple[str, str] | None = None,
) -> str:
    """change_external_chat in the self-built envelope (doc 96361): create and dismiss carry
    only ChatId; member fields only on add_member / del_member, one <Item> per member."""
    lines = [
        f"<xml><ToUserName>{cdata(state.config.identity.corp_id)}</ToUserName>",
        f"<FromUserName>{cdata('sys')}</FromUserName>",
        f"<CreateTime>{int(state.now())}</CreateTime>",
        f"<MsgType>{cdata('event')}</MsgType>",
        f"<Event>{cdata('change_external_chat')}</Event>",
        f"<ChatId>{cdata(chat_id)}</ChatId>",
        f"<ChangeType>{cdata(change_type)}</ChangeType>",
    ]
    if detail is not None:
        lines.append(f"<UpdateDetail>{cdata(detail)}</UpdateDetail>")
    if join_scene is not None:
        lines.append(f"<JoinScene>{join_scene}</JoinScene>")
    if quit_scene is not None:
        lines.append(f"<QuitScene>{quit_scene}</QuitScene>")
    if members is not None:
        items = "".join(f"<Item>{cdata(m)}</Item>" for m in members)
        lines.append(f"<MemChangeCnt>{len(members)}</MemChangeCnt>")
        lines.append(f"<MemChangeList>{items}</MemChangeList>")
    if versions is not None:
        lines.append(f"<LastMemVer>{cdata(versions[0])}</LastMemVer>")
        lines.append(f"<CurMemVer>{cdata(versions[1])}</CurMemVer>")
    lines.append("</xml>")
    return "\n".join(lines)


async def _deliver(
    request: web.Request, body: dict[str, Any], xml: str, **extra: Any
) -> web.Response:
    if field_bool(body, "deliver", True):
        answer = await request.config_dict[DELIVERER].deliver(xml)
    else:
        answer = {"delivered": False, "attempts": [], "reply": None, "skipped": True}
    return json_answer({**answer, "plaintext": xml, **extra})


def _members(body: dict[str, Any]) -> list[str]:
    members = field_str_list(body, "members") or []
    if not members:
        raise ControlError("'members' must name at least one member or customer")
    return members


@routes.post("/groups")
async def create_group(request: web.Request) -> web.Response:
    body = await read_body(request)
    state = sim_state(request)
    group = state.create_group(
        field_str(body, "owner"),
        field_str(body, "name", ""),
        field_str_list(body, "members") or [],
        field_opt_str(body, "chat_id"),
    )
    xml = chat_event_xml(state, group.chat_id, "create")
    return await _deliver(request, body, xml, chat_id=group.chat_id)


@routes.post("/groups/join")
async def join_group(request: web.Request) -> web.Response:
    body = await read_body(request)
    state = sim_state(request)
    chat_id, members = field_str(body, "chat_id"), _members(body)
    group, last = state.join_group(
        chat_id,
        members,
        scene=field_int(body, "scene", 1),
        invitor=field_opt_str(body, "invitor"),
        config_id=field_opt_str(body, "config_id"),
    )
    scene = group.members[members[-1]]["join_scene"]
    xml = chat_event_xml(
        state,
        chat_id,
        "update",
        "add_member",
        # doc 96361: 0 invited by a member (directly or by link), 3 scanned the group QR.
        join_scene=3 if scene == 3 else 0,
        members=list(dict.fromkeys(members)),
        versions=(last, group.member_version),
    )
    return await _deliver(request, body, xml)


@routes.post("/groups/leave")
async def leave_group(request: web.Request) -> web.Response:
    body = await read_body(request)
    state = sim_state(request)
    chat_id, members = field_str(body, "chat_id"), _members(body)
    removed = field_bool(body, "removed", False)
    group, last = state.leave_group(chat_id, members, removed=removed)
    xml = chat_event_xml(
        state,
        chat_id,
        "update",
        "del_member",
        quit_scene=1 if removed else 0,
        members=list(dict.fromkeys(members)),
        versions=(last, group.member_version),
    )
    return await _deliver(request, body, xml)


@routes.post("/groups/change")
async def change_group(request: web.Request) -> web.Response:
    body = await read_body(request)
    state = sim_state(request)
    chat_id = field_str(body, "chat_id")
    given = [k for k in ("name", "notice", "owner") if body.get(k) is not None]
    if len(given) != 1:
        raise ControlError("give exactly one of 'name', 'notice' or 'owner'")
    key = given[0]
    value = field_str(body, key, "")
    state.change_group(chat_id, **{key: value})
    detail = {"name": "change_name", "notice": "change_notice", "owner": "change_owner"}[key]
    return await _deliver(request, body, chat_event_xml(state, chat_id, "update", detail))


@routes.post("/groups/messages")
async def group_messages(request: web.Request) -> web.Response:
    """People talk in a group (for groupchat/statistic's chat activity); no callback."""
    body = await read_body(request)
    sim_state(request).post_group_messages(
        field_str(body, "chat_id"), field_str(body, "from"), field_int(body, "count", 1)
    )
    return json_answer({"ok": True})


@routes.post("/groups/dismiss")
async def dismiss_group(request: web.Request) -> web.Response:
    body = await read_body(request)
    state = sim_state(request)
    group = state.dismiss_group(field_str(body, "chat_id"))
    return await _deliver(request, body, chat_event_xml(state, group.chat_id, "dismiss"))


@routes.post("/group_welcome_templates/console")
async def console_template(request: web.Request) -> web.Response:
    body = await read_body(request)
    template_id = "msg" + secrets.token_hex(12)
    sim_state(request).group_welcome_templates[template_id] = {
        "content": {"text": {"content": field_str(body, "text")}},
        "notify": 1,
        "by_app": False,
    }
    return json_answer({"template_id": template_id})


@routes.get("/groups")
async def get_groups(request: web.Request) -> web.Response:
    state = sim_state(request)
    return json_answer(
        {
            "groups": [
                {**render_group(state, g, True), "dismissed": g.dismissed}
                for g in state.groups.values()
            ],
            "join_ways": list(state.join_ways.values()),
            "group_welcome_templates": {
                k: v["content"] for k, v in state.group_welcome_templates.items()
            },
        }
    )


# ---- Moments: an executor publishes (no callback: WeCom sends none for Moments) ----------


@routes.post("/moments/publish")
async def publish_moment(request: web.Request) -> web.Response:
    """{moment_id, userid}: the executor taps publish in the client."""
    body = await read_body(request)
    state = sim_state(request)
    moment = state.publish_moment(field_str(body, "moment_id"), field_str(body, "userid"))
    return json_answer(
        {
            "moment_id": moment.moment_id,
            "userid": field_str(body, "userid"),
            "customers": moment.audiences[field_str(body, "userid")],
        }
    )


@routes.get("/moments")
async def get_moments(request: web.Request) -> web.Response:
    state = sim_state(request)
    return json_answer(
        {
            "moments": [
                {
                    "moment_id": m.moment_id,
                    "text": m.text,
                    "attachments": m.attachments,
                    "canceled": m.canceled,
                    "executors": {u: e[0] for u, e in m.executors.items()},
                }
                for m in state.moments.values()
            ],
            "jobs": [
                {"jobid": j.jobid, "moment_id": j.moment.moment_id}
                for j in state.moment_jobs.values()
            ],
        }
    )
