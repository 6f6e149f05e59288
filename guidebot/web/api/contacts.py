"""JSON API for customers, guides and stores (contact ways and transfers: relations).

Views only parse, call one domain function and render; the domain's errors become JSON errors
in guidebot.web.api.errors (NotFound 404, Invalid 422, Conflict 409, Upstream 502).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from guidebot.audit.recorder import row_values
from guidebot.contacts import lifecycle, queries, reading_hours
from guidebot.contacts.directory import find_store, update_store
from guidebot.contacts.models import (
    Customer,
    Department,
    GuideStatus,
    Relation,
    RelationEvent,
    RelationStatus,
)
from guidebot.groups import queries as group_queries
from guidebot.web.api.common import (
    INT32_MAX,
    ApiRoutes,
    bad_request,
    body_of,
    int_field,
    iso,
    not_found,
    param,
    query_of,
    unprocessable,
)
from guidebot.web.api.declare import Body, Int, OneOf, Query, Text
from guidebot.web.api.openapi import BOOLEAN, INSTANT, INTEGER, STRING, list_of, maybe, shape
from guidebot.web.audited import record_change
from guidebot.web.auth import Principal, principal, relation_visible, store_visible
from guidebot.web.keys import CLOCK, SESSIONS, SETTINGS

log = logging.getLogger(__name__)

api = ApiRoutes()

# The declarations (guidebot.web.api.declare): WeCom's ids are at most 64 characters.
USERID = Text(64, description="a guide's WeCom userid")
EXTERNAL_USERID = Text(64, description="a customer's external_userid")
STORE_REF = Text(64, description="a store's code or department id")
# Store codes, channels and campaigns go into a contact way's state: letters, digits, _ . -
CODE = Text(20, pattern="^[A-Za-z0-9_.-]+$", description="letters, digits, '_', '.' or '-'")
TEXT_OUT = maybe(STRING)
WHEN = maybe(INSTANT)


class CustomerFilter(Query):
    guide: USERID = None
    store: STORE_REF = None
    status: OneOf(*RelationStatus.ALL) = None
    channel: Text(64) = None
    tag: Text(64, description="a corp tag the relation has, by id or by name") = None
    page: Int(1, 1_000_000) = 1
    per_page: Int(1, 200) = 50


class GuideFilter(Query):
    status: OneOf(GuideStatus.ACTIVE, GuideStatus.LEFT) = None
    store: STORE_REF = None


class StoreChange(Body):
    code: CODE = None  # not nullable: a store keeps a code (contact ways' state names it)
    timezone: Text(64, fmt="time-zone") | None = None  # null clears the override


def text_query(request: web.Request, name: str) -> str | None:
    """A declared query parameter's text, None when absent or only spaces."""
    value = (param(request, name) or "").strip()
    return value or None


def str_field(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and name == "store":
        return str(int_field(body, name, lo=1, hi=INT32_MAX))  # a department id
    if not isinstance(value, str) or not value:
        raise bad_request(f"{name!r} must be a non-empty string")
    return value


# ---- rendering -------------------------------------------------------------------------------


def render_store_ref(dept: Department | None) -> dict[str, Any] | None:
    if dept is None:
        return None
    return {"id": dept.id, "code": dept.code, "name": dept.name}


def render_relation(r: Relation) -> dict[str, Any]:
    return {
        "guide_userid": r.guide_userid,
        "external_userid": r.external_userid,
        "status": r.status,
        "created_at": iso(r.created_at),
        "confirmed": r.confirmed,
        "state": r.state,
        "store_id": r.store_id,
        "channel": r.channel,
        "campaign": r.campaign,
        "config_id": r.config_id,
        "remark": r.remark,
        "description": r.description,
        "tags": r.tags,
        "remark_mobiles": r.remark_mobiles,
        "ended_at": iso(r.ended_at),
        "end_reason": r.end_reason,
        "successor_userid": r.successor_userid,
        "predecessor_userid": r.predecessor_userid,
        "last_event_at": iso(r.last_event_at),
    }


def render_customer(c: Customer) -> dict[str, Any]:
    return {
        "external_userid": c.external_userid,
        "name": c.name,
        "type": c.type,
        "gender": c.gender,
        "unionid": c.unionid,
        "avatar": c.avatar,
        "corp_name": c.corp_name,
        "profile_fetched_at": iso(c.profile_fetched_at),
        "first_seen_at": iso(c.created_at),
    }


def render_event(e: RelationEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "occurred_at": iso(e.occurred_at),
        "recorded_at": iso(e.recorded_at),
        "kind": e.kind,
        "guide_userid": e.guide_userid,
        "store_id": e.store_id,
        "previous_status": e.previous_status,
        "channel": e.channel,
        "campaign": e.campaign,
        "state": e.state,
        "counterpart_userid": e.counterpart_userid,
        "reason": e.reason,
        "source": e.source,
    }


def render_store(view: queries.StoreView) -> dict[str, Any]:
    s = view.store
    return {
        "id": s.id,
        "code": s.code,
        "name": s.name,
        "timezone": s.timezone,
        "region": render_store_ref(view.region),
        "guides": view.guides,
        "active_customers": view.active_customers,
    }


RELATION = shape(
    {
        "guide_userid": STRING,
        "external_userid": STRING,
        "status": STRING,
        "created_at": WHEN,
        "confirmed": BOOLEAN,
        "state": TEXT_OUT,
        "store_id": maybe(INTEGER),
        "channel": TEXT_OUT,
        "campaign": TEXT_OUT,
        "config_id": TEXT_OUT,
        "remark": TEXT_OUT,
        "description": TEXT_OUT,
        "tags": maybe({"type": "array"}),
        "remark_mobiles": maybe({"type": "array"}),
        "ended_at": WHEN,
        "end_reason": TEXT_OUT,
        "successor_userid": TEXT_OUT,
        "predecessor_userid": TEXT_OUT,
        "last_event_at": WHEN,
    }
)
CUSTOMER = {
    "external_userid": STRING,
    "name": TEXT_OUT,
    "type": maybe(INTEGER),
    "gender": maybe(INTEGER),
    "unionid": TEXT_OUT,
    "avatar": TEXT_OUT,
    "corp_name": TEXT_OUT,
    "profile_fetched_at": WHEN,
    "first_seen_at": WHEN,
}
# The lifecycle stage (guidebot.contacts.lifecycle): name 首购, label 首购 / first purchase.
STAGE = shape({"stage": STRING, "name": STRING, "label": STRING, "since": WHEN})
# The hour the customer reads (guidebot.contacts.reading_hours), on their store's clock.
BEST_HOUR = shape(
    {
        "hour": INTEGER,
        "timezone": STRING,
        "observations": INTEGER,
        "source": STRING,
        "label": STRING,
    }
)
EVENT = shape(
    {
        "id": INTEGER,
        "occurred_at": WHEN,
        "recorded_at": WHEN,
        "kind": STRING,
        "guide_userid": STRING,
        "store_id": maybe(INTEGER),
        "previous_status": TEXT_OUT,
        "channel": TEXT_OUT,
        "campaign": TEXT_OUT,
        "state": TEXT_OUT,
        "counterpart_userid": TEXT_OUT,
        "reason": TEXT_OUT,
        "source": STRING,
    }
)
STORE_BRIEF = maybe(shape({"id": INTEGER, "code": STRING, "name": STRING}))
STORE = shape(
    {
        "id": INTEGER,
        "code": STRING,
        "name": STRING,
        "timezone": TEXT_OUT,
        "region": STORE_BRIEF,
        "guides": INTEGER,
        "active_customers": INTEGER,
    }
)
PAGING = {"total": INTEGER, "page": INTEGER, "per_page": INTEGER}
# The customer's customer groups now (guidebot.groups), and how they joined.
CUSTOMER_GROUP = shape(
    {
        "chat_id": STRING,
        "name": TEXT_OUT,
        "owner_userid": TEXT_OUT,
        "store_id": maybe(INTEGER),
        "joined_at": WHEN,
        "join_scene": maybe(INTEGER),
        "channel": TEXT_OUT,
        "campaign": TEXT_OUT,
    }
)


def render_customer_group(view: group_queries.CustomerGroupView) -> dict[str, Any]:
    g, m = view.group, view.member
    return {
        "chat_id": g.chat_id,
        "name": g.name,
        "owner_userid": g.owner_userid,
        "store_id": g.store_id,
        "joined_at": iso(m.joined_at),
        "join_scene": m.join_scene,
        "channel": m.channel,
        "campaign": m.campaign,
    }


# ---- scope (guidebot.web.auth: managers see their stores, guides themselves) ------------------


async def _scoped_store(request: web.Request, session, who: Principal) -> str | None:
    """The `store` filter a manager may use: theirs (404 otherwise), or their only store."""
    ref = text_query(request, "store")
    if who.role != "manager":
        return ref
    if ref is None:
        if len(who.store_ids) == 1:
            return str(next(iter(who.store_ids)))
        raise unprocessable("name one of your stores with ?store=")
    found = await find_store(session, ref)
    if found is None or not store_visible(who, found.id):
        raise not_found(f"no store {ref!r}")
    return str(found.id)


def _scoped_guide(request: web.Request, who: Principal) -> str | None:
    ref = text_query(request, "guide")
    if who.role != "guide":
        return ref
    if ref is not None and ref != who.userid:
        raise not_found(f"no guide {ref!r}")
    return who.userid


# ---- customers -------------------------------------------------------------------------------


@api.get(
    "/customers",
    summary="List customers, filtered by guide, store, relation status, channel and corp tag",
    query=CustomerFilter,
    roles=("hq", "manager", "guide"),
    response=shape(
        {
            "customers": list_of(
                shape({**CUSTOMER, "relations": list_of(RELATION)}),
            ),
            **PAGING,
            "total_capped": {
                **BOOLEAN,
                "description": "true: more than `total` customers match, the count stopped "
                "there (10,000); later pages go on to the last",
            },
        }
    ),
    errors=(422,),
)
async def list_customers(request: web.Request) -> web.Response:
    wanted = query_of(request, CustomerFilter)
    who = principal(request)
    async with request.app[SESSIONS]() as session:
        guide = _scoped_guide(request, who)
        store = await _scoped_store(request, session, who)
        result = await queries.search_customers(
            session,
            guide=guide,
            store=store,
            status=wanted.status,
            channel=text_query(request, "channel"),
            tag=text_query(request, "tag"),
            page=wanted.page,
            per_page=wanted.per_page,
            count_up_to=queries.COUNT_UP_TO,
        )
    return web.json_response(
        {
            "customers": [
                {
                    **render_customer(c),
                    "relations": [
                        render_relation(r)
                        for r in result.relations[c.external_userid]
                        if relation_visible(who, r.guide_userid, r.store_id)
                    ],
                }
                for c in result.customers
            ],
            "total": result.total,
            "total_capped": result.more,
            "page": result.page,
            "per_page": result.per_page,
        }
    )


@api.get(
    "/customers/{external_userid}",
    summary="One customer: profile, relations with every guide, and the relation timeline",
    roles=("hq", "manager", "guide"),
    path={"external_userid": EXTERNAL_USERID},
    response=shape(
        {
            "customer": shape(CUSTOMER),
            "stage": maybe(STAGE),
            "best_hour": maybe(BEST_HOUR),
            "relations": list_of(RELATION),
            "timeline": list_of(EVENT),
            "groups": list_of(CUSTOMER_GROUP),
        }
    ),
)
async def get_customer(request: web.Request) -> web.Response:
    who = principal(request)
    ext = request.match_info["external_userid"]
    async with request.app[SESSIONS]() as session:
        detail = await queries.get_customer(session, ext)
        stage = await lifecycle.stage_of(session, ext)
        best_hour = await reading_hours.learned_hour(
            session, ext, request.app[SETTINGS].timezone, request.app[CLOCK].now().date()
        )
        groups = await group_queries.customer_groups(session, ext)
    relations = [r for r in detail.relations if relation_visible(who, r.guide_userid, r.store_id)]
    if not relations and not who.is_hq:
        raise not_found(f"no customer {ext!r}")
    return web.json_response(
        {
            "customer": render_customer(detail.customer),
            "stage": {**stage, "since": iso(stage["since"])} if stage else None,
            "best_hour": best_hour,
            "relations": [render_relation(r) for r in relations],
            "timeline": [
                render_event(e)
                for e in detail.timeline
                if relation_visible(who, e.guide_userid, e.store_id)
            ],
            "groups": [
                render_customer_group(v)
                for v in groups
                if relation_visible(who, v.group.owner_userid or "", v.group.store_id)
            ],
        }
    )


# ---- guides and stores -----------------------------------------------------------------------


@api.get(
    "/guides",
    summary="List guides with their current store",
    query=GuideFilter,
    roles=("hq", "manager"),
    response=shape(
        {
            "guides": list_of(
                shape(
                    {
                        "userid": STRING,
                        "name": STRING,
                        "status": STRING,
                        "main_department": maybe(INTEGER),
                        "store": STORE_BRIEF,
                        "stores": list_of(STORE_BRIEF),
                        "active_customers": INTEGER,
                        "left_at": WHEN,
                    }
                )
            )
        }
    ),
    errors=(422,),
)
async def list_guides(request: web.Request) -> web.Response:
    who = principal(request)
    async with request.app[SESSIONS]() as session:
        store = await _scoped_store(request, session, who)
        views = await queries.list_guides(
            session,
            status=query_of(request, GuideFilter).status,
            store=store,
            # A manager counts the customers of their stores, not a former store's.
            count_stores=who.store_ids if who.role == "manager" else None,
        )
    return web.json_response(
        {
            "guides": [
                {
                    "userid": v.guide.userid,
                    "name": v.guide.name,
                    "status": v.guide.status,
                    "main_department": v.guide.main_department,
                    "store": render_store_ref(v.stores[0] if v.stores else None),
                    "stores": [render_store_ref(s) for s in v.stores],
                    "active_customers": v.active_customers,
                    "left_at": iso(v.guide.left_at),
                }
                for v in views
            ]
        }
    )


@api.get(
    "/stores",
    summary="List stores with their region, guide and customer counts",
    roles=("hq", "manager"),
    response=shape({"stores": list_of(STORE)}),
)
async def list_stores(request: web.Request) -> web.Response:
    who = principal(request)
    async with request.app[SESSIONS]() as session:
        views = await queries.list_stores(session)
    return web.json_response(
        {"stores": [render_store(v) for v in views if store_visible(who, v.store.id)]}
    )


STORE_AUDIT = ("code", "timezone")


@api.route(
    "PATCH",
    "/stores/{store}",
    summary="Set a store's code (not null) or its time zone override (IANA name; null clears it)",
    path={"store": STORE_REF},
    body=StoreChange,
    response=STORE,
    errors=(409, 422),
)
async def patch_store(request: web.Request) -> web.Response:
    change = body_of(request, StoreChange)
    async with request.app[SESSIONS]() as session:
        before = row_values(await find_store(session, request.match_info["store"]), *STORE_AUDIT)
        store = await update_store(
            session,
            request.match_info["store"],
            code=change.code,
            timezone=change.timezone,
            clear_timezone="timezone" in change.model_fields_set and change.timezone is None,
            now=request.app[CLOCK].now(),
        )
        record_change(
            request,
            session,
            "store.update",
            target=f"store:{store.id}",
            before=before,
            after=row_values(store, *STORE_AUDIT),
        )
        await session.commit()
        views = {v.store.id: v for v in await queries.list_stores(session)}
    return web.json_response(render_store(views[store.id]))
