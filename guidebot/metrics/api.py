"""JSON API: guide, store and HQ metrics, the leaderboard, WeCom's figures beside ours, orders.

Metrics read the rollups only. Periods are local days `from`..`to` (YYYY-MM-DD, inclusive; at
most 366 days; default: the 7 days up to today in GUIDEBOT_TIMEZONE). Errors: a bad date or
parameter 400, an unknown guide, store or order 404, a conflicting order 409, WeCom refusing 502.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from guidebot.contacts.directory import find_store
from guidebot.contacts.models import Department, Guide
from guidebot.metrics import kpis
from guidebot.metrics.comparison import compare, wecom_days
from guidebot.metrics.orders import (
    MAX_AMOUNT_FEN,
    OrderConflict,
    OrderInvalid,
    OrderNotFound,
    attribution_window,
    get_order,
    parse_instant,
    parse_order,
    post_order,
    refund_order,
    render_order,
)
from guidebot.metrics.report import (
    Period,
    PeriodError,
    Scope,
    leaderboard,
    metrics,
    period_from_query,
)
from guidebot.web.api import (
    INT32_MAX,
    ApiError,
    ApiRoutes,
    bad_request,
    instant_fields,
    int_field,
    json_body,
    not_found,
    query_int,
)
from guidebot.web.auth import guide_visible, principal, store_visible
from guidebot.web.keys import CLOCK, SESSIONS, SETTINGS, WECOM
from guidebot.wecom.client import WeComError

log = logging.getLogger(__name__)

api = ApiRoutes()

PERIOD_QUERY = {"from": "string", "to": "string", "by": "string"}


def _period(request: web.Request) -> Period:
    try:
        return period_from_query(
            request.query, request.app[SETTINGS].timezone, request.app[CLOCK].now()
        )
    except PeriodError as exc:
        raise bad_request(str(exc)) from None


def _by_day(request: web.Request) -> bool:
    by = request.query.get("by", "").strip()
    if by not in ("", "day"):
        raise bad_request(f"'by' must be 'day' (or left out), got {by!r}")
    return by == "day"


async def _guide(session, userid: str, request: web.Request | None = None) -> Guide:
    guide = await session.get(Guide, userid)
    # Managers see their stores' guides, guides themselves (guidebot.web.auth); others: 404.
    if guide is None or (
        request is not None and not await guide_visible(session, principal(request), userid)
    ):
        raise not_found(f"no guide {userid!r}")
    return guide


async def _store(session, ref: str, request: web.Request | None = None) -> Department:
    store = await find_store(session, ref)
    if (
        store is None
        or not store.is_store
        or (request is not None and not store_visible(principal(request), store.id))
    ):
        raise not_found(f"no store {ref!r}")
    return store


def _store_ref(store: Department) -> dict[str, Any]:
    return {"id": store.id, "code": store.code, "name": store.name}


async def _answer(session, scope: Scope, period: Period, by_day: bool, **head: Any):
    values, days = await metrics(session, scope, period, by_day=by_day)
    body: dict[str, Any] = {**head, **period.as_json(), "metrics": values}
    if days is not None:
        body["days"] = days
    return web.json_response(body)


@api.get(
    "/guides/{userid}/metrics",
    "A guide's KPIs over a period (per day with by=day)",
    query=PERIOD_QUERY,
    roles=("hq", "manager", "guide"),
)
async def guide_metrics(request: web.Request) -> web.Response:
    period, by_day = _period(request), _by_day(request)
    who = principal(request)
    # A manager sees the guide's days in their stores only, not those from a former store.
    stores = who.store_ids if who.role == "manager" else None
    async with request.app[SESSIONS]() as session:
        guide = await _guide(session, request.match_info["userid"], request)
        return await _answer(
            session,
            Scope(guide=guide.userid, stores=stores),
            period,
            by_day,
            guide={"userid": guide.userid, "name": guide.name},
        )


@api.get(
    "/stores/{store}/metrics",
    "A store's KPIs (its guides' rows while they belonged to it), by code or id",
    query=PERIOD_QUERY,
    roles=("hq", "manager"),
)
async def store_metrics(request: web.Request) -> web.Response:
    period, by_day = _period(request), _by_day(request)
    async with request.app[SESSIONS]() as session:
        store = await _store(session, request.match_info["store"], request)
        return await _answer(
            session, Scope(store_id=store.id), period, by_day, store=_store_ref(store)
        )


@api.get("/metrics", "HQ totals: every guide's KPIs summed", query=PERIOD_QUERY)
async def hq_metrics(request: web.Request) -> web.Response:
    period, by_day = _period(request), _by_day(request)
    async with request.app[SESSIONS]() as session:
        return await _answer(session, Scope(), period, by_day)


@api.get(
    "/leaderboard",
    "Guides ranked by one KPI over a period, optionally within one store",
    query={
        "from": "string",
        "to": "string",
        "metric": "string",
        "store": "string",
        "limit": "integer",
    },
    roles=("hq", "manager"),
)
async def get_leaderboard(request: web.Request) -> web.Response:
    period = _period(request)
    metric = request.query.get("metric", "").strip() or "new_customers"
    if metric not in kpis.KPI_BY_NAME:
        raise bad_request(f"'metric' must be one of {', '.join(kpis.KPI_NAMES)}; got {metric!r}")
    limit = query_int(request, "limit", 100, lo=1, hi=10_000)
    ref = request.query.get("store", "").strip() or None
    who = principal(request)
    if ref is None and who.role == "manager":  # a manager ranks within their stores only
        if len(who.store_ids) != 1:
            raise bad_request("name one of your stores with ?store=")
        ref = str(next(iter(who.store_ids)))
    async with request.app[SESSIONS]() as session:
        store = await _store(session, ref, request) if ref is not None else None
        rows = await leaderboard(
            session, period, metric, store_id=store.id if store else None, limit=limit
        )
    return web.json_response(
        {
            **period.as_json(),
            "metric": metric,
            "store": _store_ref(store) if store else None,
            "guides": rows,
        }
    )


@api.get(
    "/guides/{userid}/wecom-comparison",
    "Our new/lost customers per day beside WeCom's get_user_behavior_data, with why they differ",
    query={"from": "string", "to": "string"},
)
async def wecom_comparison(request: web.Request) -> web.Response:
    period = _period(request)
    now = request.app[CLOCK].now()
    async with request.app[SESSIONS]() as session:
        guide = await _guide(session, request.match_info["userid"])
    try:  # with no transaction open (see compare)
        theirs = await wecom_days(request.app[WECOM], guide.userid, period, now)
    except WeComError as exc:
        raise ApiError(502, "wecom_error", f"get_user_behavior_data failed: {exc}") from None
    async with request.app[SESSIONS]() as session:
        body = await compare(session, guide.userid, period, theirs)
    return web.json_response(body)


# ---- orders -----------------------------------------------------------------------------------


def _order_error(exc: Exception) -> ApiError:
    if isinstance(exc, OrderNotFound):
        return not_found(exc.reason)
    if isinstance(exc, OrderConflict):
        return ApiError(409, "conflict", exc.reason)
    assert isinstance(exc, OrderInvalid)
    return bad_request(exc.reason)


ORDER_BODY = {
    "type": "object",
    "required": ["order_id", "amount", "paid_at"],
    "properties": {
        "order_id": {"type": "string"},
        "external_userid": {"type": "string"},
        "mobile": {"type": "string"},
        "amount": {"type": ["string", "number"], "description": "yuan, at most 2 decimals"},
        "paid_at": {"type": "string", "format": "date-time"},
        "store": {"type": "string"},
        "status": {"type": "string", "enum": ["paid", "refunded"]},
        "refunded_at": {"type": "string", "format": "date-time"},
    },
}


@api.post(
    "/orders",
    "Record an order (idempotent on order_id; 201 new, 200 repeat, 409 conflicting repeat)",
    body=ORDER_BODY,
)
async def create_order(request: web.Request) -> web.Response:
    body = await json_body(request)
    settings, now = request.app[SETTINGS], request.app[CLOCK].now()
    instant_fields(body, "paid_at", "refunded_at")
    if isinstance(body.get("store"), int):  # a department id (a code is a string)
        int_field(body, "store", lo=1, hi=INT32_MAX)
    try:
        data = _parse_order(body)
        async with request.app[SESSIONS]() as session, session.begin():
            order, created = await post_order(
                session, data, now=now, window=attribution_window(settings.attribution_days)
            )
            answer = await render_order(session, order)
    except (OrderInvalid, OrderConflict, OrderNotFound) as exc:
        raise _order_error(exc) from None
    return web.json_response(answer, status=201 if created else 200)


def _parse_order(body: dict[str, Any]):
    try:
        return parse_order(body)
    except ArithmeticError:  # decimal.Overflow: "amount": "1e999999" is no amount of yuan
        raise bad_request(
            f"'amount' must be at most {MAX_AMOUNT_FEN // 100} yuan, with at most 2 decimals"
        ) from None


@api.get("/orders/{order_id}", "An order and the guide it was attributed to")
async def show_order(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        try:
            order = await get_order(session, request.match_info["order_id"])
        except OrderNotFound as exc:
            raise _order_error(exc) from None
        return web.json_response(await render_order(session, order))


@api.post(
    "/orders/{order_id}/refund",
    "Refund an order: it counts negative on the refund's day (idempotent)",
    body={"type": "object", "properties": {"refunded_at": {"type": "string"}}},
)
async def refund(request: web.Request) -> web.Response:
    body = await json_body(request) if request.can_read_body else {}
    now = request.app[CLOCK].now()
    instant_fields(body, "refunded_at")
    try:
        raw = body.get("refunded_at")
        at = parse_instant(raw, "refunded_at") if raw is not None else None
        async with request.app[SESSIONS]() as session, session.begin():
            order = await refund_order(session, request.match_info["order_id"], at=at, now=now)
            answer = await render_order(session, order)
    except (OrderInvalid, OrderConflict, OrderNotFound) as exc:
        raise _order_error(exc) from None
    return web.json_response(answer)
