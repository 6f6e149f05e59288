"""JSON API for customer groups: the groups (per store or owner) and one group's members and
history; the 「加入群聊」 join ways whose state names store, channel and campaign; each store's
group welcome, rendered from HQ's templates.

Views only parse, call one domain function and render; the domain's errors become JSON errors
in guidebot.web.api.errors (NotFound 404, Invalid 422, Conflict 409, Upstream 502).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web
from pydantic import Field

from guidebot import i18n
from guidebot.contacts.behavior import china_today
from guidebot.contacts.ways import STATE_MAX
from guidebot.groups import queries, statistic
from guidebot.groups.joinways import (
    MAX_CHATS,
    ROOM_BASE_NAME_MAX,
    create_join_way,
    delete_join_way,
    list_join_ways,
)
from guidebot.groups.labels import LABEL_MAX, change_label
from guidebot.groups.models import (
    GroupJoinWay,
    GroupMember,
    GroupMemberEvent,
    GroupStatus,
    StoreGroupWelcome,
)
from guidebot.groups.welcome import delete_store_welcome, get_store_welcome
from guidebot.metrics.report import Period, period_from_query
from guidebot.sop.group_welcome import set_group_welcome
from guidebot.web.api.common import INT32_MAX, ApiRoutes, body_of, iso, query_of
from guidebot.web.api.contacts import STORE_REF, TEXT_OUT, USERID, WHEN
from guidebot.web.api.declare import Array, Body, Bool, Either, Int, OneOf, Query, Text
from guidebot.web.api.openapi import BOOLEAN, INTEGER, STRING, list_of, mapping, maybe, shape
from guidebot.web.audited import actor_of, record_after, record_change
from guidebot.web.keys import CLOCK, SESSIONS, SOP, WECOM
from guidebot.web.lang import language_of

api = ApiRoutes()

CHAT_ID = Text(64, description="a customer group's chat_id")
CONFIG_ID = Text(64, description="a join way's config_id")
LABEL = Text(LABEL_MAX, description="a group label HQ keeps (WeCom has no tags on groups)")
PART = Text(STATE_MAX, pattern="^[A-Za-z0-9_.-]+$", description="letters, digits, '_', '.' or '-'")
STORE = Either(STORE_REF, Int(1, INT32_MAX), description="a store's code or department id")


class GroupFilter(Query):
    store: STORE_REF = None
    owner: USERID = None
    status: OneOf(*GroupStatus.ALL) = None
    label: LABEL = None


class WayFilter(Query):
    store: STORE_REF = None


class NewJoinWay(Body):
    __doc__ = (
        f"channel and campaign together with the store code make a state of at most {STATE_MAX} "
        "characters (422 when longer); chat_ids name 1 to 5 of the store's live groups"
    )
    store: STORE
    channel: PART
    campaign: PART = None
    chat_ids: Array(CHAT_ID, min_items=1, max_items=MAX_CHATS)
    scene: Int(1, 2, description="1 mini-program plugin, 2 QR code") = 2
    remark: Text(30) = None
    auto_create_room: Bool(description="open a new group when these are full") = True
    room_base_name: Text(ROOM_BASE_NAME_MAX) = None
    room_base_id: Int(0, 1_000_000) = None


class WelcomeChange(Body):
    """HQ's template (a file in templates/messages) rendered for the store; `customer.name`
    becomes WeCom's %NICKNAME%, the joining customer's nickname."""

    template: Text(255, pattern="^[A-Za-z0-9_./-]+$", description="a template's file name")
    notify: Bool(description="ask the store's guides to apply it to their groups") = True


def render_group(s: queries.GroupSummary) -> dict[str, Any]:
    g = s.group
    return {
        "chat_id": g.chat_id,
        "name": g.name,
        "owner_userid": g.owner_userid,
        "store_id": g.store_id,
        "notice": g.notice,
        "status": g.status,
        "created_at": iso(g.created_at),
        "dismissed_at": iso(g.dismissed_at),
        "customers": s.customers,
        "members": s.members,
        "labels": list(s.labels),
    }


def render_member(m: GroupMember) -> dict[str, Any]:
    return {
        "member_id": m.member_id,
        "member_type": m.member_type,
        "name": m.name,
        "joined_at": iso(m.joined_at),
        "join_scene": m.join_scene,
        "invitor_userid": m.invitor_userid,
        "state": m.state,
        "config_id": m.config_id,
        "channel": m.channel,
        "campaign": m.campaign,
    }


def render_fact(e: GroupMemberEvent) -> dict[str, Any]:
    return {
        "member_id": e.member_id,
        "member_type": e.member_type,
        "kind": e.kind,
        "occurred_at": iso(e.occurred_at),
        "scene": e.scene,
        "owner_userid": e.owner_userid,
        "config_id": e.config_id,
        "channel": e.channel,
        "campaign": e.campaign,
        "source": e.source,
    }


def render_way(w: GroupJoinWay) -> dict[str, Any]:
    return {
        "config_id": w.config_id,
        "state": w.state,
        "store_id": w.store_id,
        "channel": w.channel,
        "campaign": w.campaign,
        "scene": w.scene,
        "chat_ids": list(w.chat_ids),
        "remark": w.remark,
        "qr_code": w.qr_code,
        "created_at": iso(w.created_at),
    }


def render_welcome(w: StoreGroupWelcome) -> dict[str, Any]:
    return {
        "store_id": w.store_id,
        "template": w.template,
        "template_id": w.template_id,
        "text": w.text,
        "updated_at": iso(w.updated_at),
    }


GROUP = shape(
    {
        "chat_id": STRING,
        "name": TEXT_OUT,
        "owner_userid": TEXT_OUT,
        "store_id": maybe(INTEGER),
        "notice": TEXT_OUT,
        "status": STRING,
        "created_at": WHEN,
        "dismissed_at": WHEN,
        "customers": INTEGER,
        "members": INTEGER,
        "labels": list_of(STRING),
    }
)
MEMBER = shape(
    {
        "member_id": STRING,
        "member_type": STRING,
        "name": TEXT_OUT,
        "joined_at": WHEN,
        "join_scene": maybe(INTEGER),
        "invitor_userid": TEXT_OUT,
        "state": TEXT_OUT,
        "config_id": TEXT_OUT,
        "channel": TEXT_OUT,
        "campaign": TEXT_OUT,
    }
)
FACT = shape(
    {
        "member_id": STRING,
        "member_type": STRING,
        "kind": STRING,
        "occurred_at": WHEN,
        "scene": maybe(INTEGER),
        "owner_userid": TEXT_OUT,
        "config_id": TEXT_OUT,
        "channel": TEXT_OUT,
        "campaign": TEXT_OUT,
        "source": STRING,
    }
)
WAY = shape(
    {
        "config_id": STRING,
        "state": STRING,
        "store_id": INTEGER,
        "channel": STRING,
        "campaign": TEXT_OUT,
        "scene": INTEGER,
        "chat_ids": list_of(STRING),
        "remark": TEXT_OUT,
        "qr_code": TEXT_OUT,
        "created_at": WHEN,
    }
)
WELCOME = shape(
    {
        "store_id": INTEGER,
        "template": STRING,
        "template_id": STRING,
        "text": STRING,
        "updated_at": WHEN,
    }
)
# ---- groups ----------------------------------------------------------------------------------


@api.get(
    "/groups",
    summary="List customer groups, by store, owner and status",
    query=GroupFilter,
    response=shape({"groups": list_of(GROUP)}),
    errors=(422,),
)
async def list_groups(request: web.Request) -> web.Response:
    wanted = query_of(request, GroupFilter)
    async with request.app[SESSIONS]() as session:
        found = await queries.list_groups(
            session,
            store=wanted.store,
            owner=wanted.owner,
            status=wanted.status,
            label=wanted.label,
        )
    return web.json_response({"groups": [render_group(s) for s in found]})


@api.get(
    "/groups/{chat_id}",
    summary="One customer group: its members now and its membership history, newest first",
    path={"chat_id": CHAT_ID},
    response=shape(
        {"group": GROUP, "members": list_of(MEMBER), "history": list_of(FACT)},
    ),
)
async def get_group(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        detail = await queries.group_detail(session, request.match_info["chat_id"])
    return web.json_response(
        {
            "group": render_group(detail.summary),
            "members": [render_member(m) for m in detail.members],
            "history": [render_fact(e) for e in detail.history],
        }
    )


LABELLED = shape({"chat_id": STRING, "labels": list_of(STRING), "changed": BOOLEAN})


@api.route(
    "PUT",
    "/groups/{chat_id}/labels/{label}",
    "Put a label on a customer group (guidebot keeps group labels: WeCom has none); a "
    "group_message step's `groups: {labels: [..]}` picks the groups carrying one",
    path={"chat_id": CHAT_ID, "label": LABEL},
    response=LABELLED,
    errors=(422,),
)
async def put_label(request: web.Request) -> web.Response:
    return await _label_change(request, add=True)


@api.route(
    "DELETE",
    "/groups/{chat_id}/labels/{label}",
    "Take a label off a customer group",
    path={"chat_id": CHAT_ID, "label": LABEL},
    response=LABELLED,
)
async def delete_label(request: web.Request) -> web.Response:
    return await _label_change(request, add=False)


async def _label_change(request: web.Request, *, add: bool) -> web.Response:
    chat_id, label = request.match_info["chat_id"], request.match_info["label"]
    async with request.app[SESSIONS]() as session, session.begin():
        change = await change_label(
            session,
            chat_id,
            label,
            adding=add,
            by=actor_of(request).name,
            now=request.app[CLOCK].now(),
        )
        if change.changed:
            record_change(request, session, **change.audit())
    return web.json_response(
        {"chat_id": chat_id, "labels": list(change.after), "changed": change.changed}
    )


class ChatStatsQuery(Query):
    owner: USERID = None
    store: STORE_REF = None
    from_: Text(10, fmt="date", description="a China day YYYY-MM-DD") = Field(None, alias="from")
    to: Text(10, fmt="date", description="a China day YYYY-MM-DD") = None


@api.get(
    "/group-chat-stats",
    summary="WeCom's own group chat figures (群聊数据统计, groupchat/statistic) of the groups' "
    "owners: one owner, a store's owners or everyone, over China days (default: the last 7 "
    "to yesterday); the new_* counts summed, the others as of the last day",
    query=ChatStatsQuery,
    response=shape(
        {
            "source": STRING,
            "from": STRING,
            "to": STRING,
            "days": INTEGER,
            "figures": mapping(INTEGER),
            "labels": mapping(STRING),
        }
    ),
    errors=(404, 422),
)
async def chat_stats(request: web.Request) -> web.Response:
    wanted = query_of(request, ChatStatsQuery)
    now = request.app[CLOCK].now()
    period = period_from_query(
        {"from": wanted.from_ or "", "to": wanted.to or ""}, "Asia/Shanghai", now
    )
    if wanted.from_ is None and wanted.to is None:
        yesterday = china_today(now) - timedelta(days=1)
        period = Period(yesterday - timedelta(days=6), yesterday)
    async with request.app[SESSIONS]() as session:
        owners = None if wanted.owner is None else [wanted.owner]
        if wanted.store is not None:
            found = await queries.list_groups(session, store=wanted.store, status=None)
            store_owners = {g.group.owner_userid for g in found if g.group.owner_userid}
            owners = sorted(store_owners & set(owners or store_owners))
        activity = await statistic.chat_activity(session, owners, period.first, period.last)
    lang = language_of(request, None)
    return web.json_response(
        {
            "source": "wecom groupchat/statistic",
            "from": period.first.isoformat(),
            "to": period.last.isoformat(),
            "days": activity.days,
            "figures": activity.figures,
            "labels": {n: i18n.label("group_chat_stat", n, lang) for n in statistic.FIGURES},
        }
    )


# ---- join ways -------------------------------------------------------------------------------


@api.get(
    "/group-join-ways",
    summary="List the 「加入群聊」 join ways",
    query=WayFilter,
    response=shape({"join_ways": list_of(WAY)}),
    errors=(422,),
)
async def list_ways(request: web.Request) -> web.Response:
    wanted = query_of(request, WayFilter)
    async with request.app[SESSIONS]() as session:
        ways = await list_join_ways(session, store=wanted.store)
    return web.json_response({"join_ways": [render_way(w) for w in ways]})


@api.post(
    "/group-join-ways",
    summary="Create a 「加入群聊」 code for up to 5 groups; its state encodes store, channel "
    "and campaign, and the joins it brings are attributed to them",
    body=NewJoinWay,
    response=WAY,
    success=(201,),
    errors=(404, 409, 422, 502),
)
async def create_way(request: web.Request) -> web.Response:
    new = body_of(request, NewJoinWay)
    async with request.app[SESSIONS]() as session:
        way = await create_join_way(
            session,
            request.app[WECOM],
            request.app[CLOCK].now(),
            store=str(new.store),
            channel=new.channel,
            campaign=new.campaign,
            chat_ids=new.chat_ids,
            scene=new.scene,
            remark=new.remark,
            auto_create_room=new.auto_create_room,
            room_base_name=new.room_base_name,
            room_base_id=new.room_base_id,
        )
    answer = render_way(way)
    await record_after(
        request, "group_join_way.create", target=f"group_join_way:{way.config_id}", after=answer
    )
    return web.json_response(answer, status=201)


@api.route(
    "DELETE",
    "/group-join-ways/{config_id}",
    "Delete a join way: its code stops working",
    path={"config_id": CONFIG_ID},
    response=shape({"deleted": STRING}),
    errors=(502,),
)
async def delete_way(request: web.Request) -> web.Response:
    config_id = request.match_info["config_id"]
    async with request.app[SESSIONS]() as session:
        await delete_join_way(session, request.app[WECOM], config_id)
    await record_after(request, "group_join_way.delete", target=f"group_join_way:{config_id}")
    return web.json_response({"deleted": config_id})


# ---- a store's group welcome -----------------------------------------------------------------


@api.get(
    "/stores/{store}/group-welcome",
    summary="The store's group welcome (入群欢迎语) as WeCom holds it",
    path={"store": STORE_REF},
    response=WELCOME,
)
async def get_welcome(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        row = await get_store_welcome(session, request.match_info["store"])
    return web.json_response(render_welcome(row))


@api.route(
    "PUT",
    "/stores/{store}/group-welcome",
    "Set the store's group welcome from one of HQ's templates, rendered for the store",
    path={"store": STORE_REF},
    body=WelcomeChange,
    response=WELCOME,
    errors=(422, 502),
)
async def put_welcome(request: web.Request) -> web.Response:
    change = body_of(request, WelcomeChange)
    async with request.app[SESSIONS]() as session:
        row = await set_group_welcome(
            session,
            request.app[WECOM],
            request.app[SOP].env,
            request.app[CLOCK].now(),
            store=request.match_info["store"],
            template=change.template,
            notify=change.notify,
        )
        answer = render_welcome(row)
    await record_after(
        request, "group_welcome.save", target=f"store:{answer['store_id']}", after=answer
    )
    return web.json_response(answer)


@api.route(
    "DELETE",
    "/stores/{store}/group-welcome",
    "Remove the store's group welcome from WeCom",
    path={"store": STORE_REF},
    response=shape({"deleted": INTEGER}),
    errors=(502,),
)
async def delete_welcome(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        row = await get_store_welcome(session, request.match_info["store"])
        store_id = row.store_id
        await delete_store_welcome(session, request.app[WECOM], str(store_id))
    await record_after(request, "group_welcome.delete", target=f"store:{store_id}")
    return web.json_response({"deleted": store_id})
