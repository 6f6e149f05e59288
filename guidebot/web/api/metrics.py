"""JSON API: guide, store and HQ metrics, the leaderboard, WeCom's figures beside ours, orders.

Metrics read the rollups only. Periods are local days `from`..`to` (YYYY-MM-DD, inclusive; at
most 366 days; default: the 7 days up to today in GUIDEBOT_TIMEZONE). Errors: a bad date or
parameter 400, an unknown guide, store or order 404, a conflicting order 409, WeCom refusing 502.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from pydantic import Field

from guidebot import i18n
from guidebot.contacts.directory import find_store
from guidebot.contacts.models import Department, Guide
from guidebot.metrics import kpis
from guidebot.metrics.comparison import compare, wecom_days
from guidebot.metrics.models import OrderStatus
from guidebot.metrics.orders import (
    MAX_AMOUNT_FEN,
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
    Scope,
    leaderboard,
    metrics,
    period_from_query,
)
from guidebot.web.api.common import (
    INT32_MAX,
    ApiError,
    ApiRoutes,
    bad_request,
    instant_fields,
    int_field,
    json_body,
    not_found,
    param,
    unprocessable,
)
from guidebot.web.api.declare import Body, Either, Int, Number, OneOf, Query, Text
from guidebot.web.api.openapi import BOOLEAN, INTEGER, STRING, list_of, mapping, maybe, shape
from guidebot.web.audited import record_change
from guidebot.web.auth import guide_visible, principal, store_visible
from guidebot.web.keys import CLOCK, SESSIONS, SETTINGS, WECOM
from guidebot.wecom.client import WeComError

log = logging.getLogger(__name__)

api = ApiRoutes()

# ---- declarations (guidebot.web.api.declare) -------------------------------------------------

DAY = Text(10, fmt="date", description="a local day YYYY-MM-DD")
PERIOD = ("from", "to")
USERID = Text(64, description="a guide's userid")
STORE_REF = Text(64, description="a store's code or department id")
# An order id: 1-128 printable ASCII characters without spaces (guidebot.metrics.orders), and
# not "." or "..": a URL cannot name those in /orders/{order_id} (they are dot segments).
ORDER_ID = Text(
    128,
    pattern="^(?![.]{1,2}$)[!-~]+$",
    description="printable ASCII without spaces, not '.' or '..'",
)
WHEN = Text(64, fmt="date-time")


class PeriodQuery(Query):
    from_: DAY = Field(None, alias="from")
    to: DAY = None


class DailyQuery(PeriodQuery):
    by: OneOf("day", description="day: one row per day") = None


class LeaderboardQuery(PeriodQuery):
    metric: OneOf(*kpis.KPI_NAMES) = None
    store: STORE_REF = None
    limit: Int(1, 10_000) = 100


# A KPI is a count, a rate, or money as a decimal string; null when it has no denominator.
KPI_VALUE = {"type": ["integer", "number", "string", "null"]}
KPIS = shape(dict.fromkeys(kpis.KPI_NAMES, KPI_VALUE))
BRIEF = {"id": INTEGER, "code": STRING, "name": STRING}
FIGURES = {
    "from": STRING,
    "to": STRING,
    "metrics": KPIS,
    "days": list_of(shape({"day": STRING, "metrics": KPIS})),
}
ORDER = shape(
    {
        "order_id": STRING,
        "external_userid": maybe(STRING),
        "mobile": maybe(STRING),
        "amount": STRING,
        "amount_fen": INTEGER,
        "paid_at": STRING,
        "store": maybe(STRING),
        "status": STRING,
        "refunded_at": maybe(STRING),
        "guide_userid": maybe(STRING),
        "attribution": shape({"rule": maybe(STRING), "ref": maybe(STRING), "at": maybe(STRING)}),
    }
)


def _period(request: web.Request) -> Period:
    # A PeriodError (each day is a date, but together they are no period) is a 422.
    return period_from_query(
        {name: param(request, name) or "" for name in PERIOD},
        request.app[SETTINGS].timezone,
        request.app[CLOCK].now(),
    )


def _by_day(request: web.Request) -> bool:
    return param(request, "by") == "day"


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
    query=DailyQuery,
    roles=("hq", "manager", "guide"),
    path={"userid": USERID},
    response=shape(
        {"guide": shape({"userid": STRING, "name": STRING}), **FIGURES}, optional=("days",)
    ),
    errors=(422,),
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
    query=DailyQuery,
    roles=("hq", "manager"),
    path={"store": STORE_REF},
    response=shape({"store": shape(BRIEF), **FIGURES}, optional=("days",)),
    errors=(422,),
)
async def store_metrics(request: web.Request) -> web.Response:
    period, by_day = _period(request), _by_day(request)
    async with request.app[SESSIONS]() as session:
        store = await _store(session, request.match_info["store"], request)
        return await _answer(
            session, Scope(store_id=store.id), period, by_day, store=_store_ref(store)
        )


BOTH_LANGUAGES = shape({"zh_CN": STRING, "en": STRING})
KPI_DEFINITIONS = shape(
    {
        "kpis": list_of(
            shape(
                {
                    "name": STRING,
                    "kind": {"type": "string", "enum": ["count", "rate", "money", "minutes"]},
                    "label": BOTH_LANGUAGES,
                    "definition": BOTH_LANGUAGES,
                    "lower_is_better": BOOLEAN,
                }
            )
        )
    }
)


@api.get(
    "/kpis",
    "Every KPI's name, display label and definition in Chinese and English (metrics/kpis.py)",
    roles=("hq", "manager", "guide"),
    response=KPI_DEFINITIONS,
)
async def kpi_definitions(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "kpis": [
                {
                    "name": kpi.name,
                    "kind": kpi.kind,
                    "label": {lang: kpi.title(lang) for lang in i18n.LANGUAGES},
                    "definition": {lang: kpi.explain(lang) for lang in i18n.LANGUAGES},
                    "lower_is_better": kpi.lower_is_better,
                }
                for kpi in kpis.KPIS
            ]
        }
    )


@api.get(
    "/metrics",
    "HQ totals: every guide's KPIs summed",
    query=DailyQuery,
    response=shape(FIGURES, optional=("days",)),
    errors=(422,),
)
async def hq_metrics(request: web.Request) -> web.Response:
    period, by_day = _period(request), _by_day(request)
    async with request.app[SESSIONS]() as session:
        return await _answer(session, Scope(), period, by_day)


@api.get(
    "/leaderboard",
    "Guides ranked by one KPI over a period, optionally within one store",
    query=LeaderboardQuery,
    roles=("hq", "manager"),
    response=shape(
        {
            "from": STRING,
            "to": STRING,
            "metric": STRING,
            "store": maybe(shape(BRIEF)),
            "guides": list_of(
                shape(
                    {
                        "rank": INTEGER,
                        "userid": STRING,
                        "name": STRING,
                        "value": KPI_VALUE,
                        "metrics": KPIS,
                    }
                )
            ),
        }
    ),
    errors=(422,),
)
async def get_leaderboard(request: web.Request) -> web.Response:
    period = _period(request)
    metric = param(request, "metric") or "new_customers"
    limit = param(request, "limit")
    ref = param(request, "store")
    who = principal(request)
    if ref is None and who.role == "manager":  # a manager ranks within their stores only
        if len(who.store_ids) != 1:
            raise unprocessable("name one of your stores with ?store=")
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
    query=PeriodQuery,
    path={"userid": USERID},
    response=shape(
        {
            "guide": STRING,
            "from": STRING,
            "to": STRING,
            "days": list_of(
                shape(
                    {
                        "day": STRING,
                        "ours": mapping(INTEGER),
                        "wecom": maybe(mapping(INTEGER)),
                        "difference": maybe(mapping(INTEGER)),
                    }
                )
            ),
            "totals": shape({"ours": mapping(INTEGER), "wecom": mapping(INTEGER)}),
            "notes": list_of(STRING),
        }
    ),
    errors=(422, 502),
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


# OrderNotFound is a 404, OrderConflict a 409 and OrderInvalid a 422 (guidebot.web.api.errors):
# the schema has held the order's form, what is left is its meaning.

MAX_YUAN = MAX_AMOUNT_FEN // 100


class NewOrder(Body):
    """the customer is its external_userid or mobile (one is needed: 422 without)"""

    order_id: ORDER_ID
    external_userid: Text(64) = None
    mobile: Text(
        32,
        pattern="^[+]?(?:[ -]*[0-9]){5,20}[ -]*$",
        description="a phone number: 5-20 digits, spaces, dashes and a leading +",
    ) = None
    amount: Either(
        Text(
            16,
            pattern="^(?:[0-9]{1,11}(?:[.][0-9]{1,2})?|100000000000(?:[.]0{1,2})?)$",
            description="yuan as a decimal string, at most 2 decimals",
        ),
        Number(0, MAX_YUAN, multiple_of=0.01),
        description=f"yuan from 0 to {MAX_YUAN}, at most 2 decimals, as a string or number",
    )
    paid_at: WHEN
    store: Either(STORE_REF, Int(1, INT32_MAX), description="a store's code or department id") = (
        None
    )
    status: OneOf(*OrderStatus.ALL) = None
    refunded_at: WHEN = None


class Refund(Body):
    refunded_at: WHEN = None


@api.post(
    "/orders",
    "Record an order (idempotent on order_id; 201 new, 200 repeat, 409 conflicting repeat)",
    body=NewOrder,
    response=ORDER,
    success=(200, 201),
    errors=(409, 422),
)
async def create_order(request: web.Request) -> web.Response:
    body = await json_body(request)
    settings, now = request.app[SETTINGS], request.app[CLOCK].now()
    instant_fields(body, "paid_at", "refunded_at")
    if isinstance(body.get("store"), int):  # a department id (a code is a string)
        int_field(body, "store", lo=1, hi=INT32_MAX)
    data = _parse_order(body)
    async with request.app[SESSIONS]() as session, session.begin():
        before = await _order_as_was(session, body.get("order_id"))
        order, created = await post_order(
            session, data, now=now, window=attribution_window(settings.attribution_days)
        )
        answer = await render_order(session, order)
        if _audited(answer) != before:  # a repeat that changed nothing changed nothing
            record_change(
                request,
                session,
                "order.post",
                target=f"order:{order.order_id}",
                before=before,
                after=_audited(answer),
            )
    return web.json_response(answer, status=201 if created else 200)


def _audited(answer: dict[str, Any]) -> dict[str, Any]:
    """An order as the audit trail keeps it: without the customer's mobile."""
    return {k: v for k, v in answer.items() if k != "mobile"}


async def _order_as_was(session, order_id: Any) -> dict[str, Any] | None:
    if not isinstance(order_id, str):
        return None
    try:
        return _audited(await render_order(session, await get_order(session, order_id)))
    except OrderNotFound:
        return None


def _parse_order(body: dict[str, Any]):
    try:
        return parse_order(body)
    except ArithmeticError:  # decimal.Overflow: "amount": "1e999999" is no amount of yuan
        raise bad_request(
            f"'amount' must be at most {MAX_AMOUNT_FEN // 100} yuan, with at most 2 decimals"
        ) from None


@api.get(
    "/orders/{order_id}",
    "An order and the guide it was attributed to",
    path={"order_id": ORDER_ID},
    response=ORDER,
)
async def show_order(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        order = await get_order(session, request.match_info["order_id"])
        return web.json_response(await render_order(session, order))


@api.post(
    "/orders/{order_id}/refund",
    "Refund an order: it counts negative on the refund's day (idempotent)",
    path={"order_id": ORDER_ID},
    body=Refund,
    body_required=False,
    response=ORDER,
    errors=(409, 422),
)
async def refund(request: web.Request) -> web.Response:
    body = await json_body(request)
    now = request.app[CLOCK].now()
    instant_fields(body, "refunded_at")
    raw = body.get("refunded_at")
    at = parse_instant(raw, "refunded_at") if raw is not None else None
    async with request.app[SESSIONS]() as session, session.begin():
        before = await _order_as_was(session, request.match_info["order_id"])
        order = await refund_order(session, request.match_info["order_id"], at=at, now=now)
        answer = await render_order(session, order)
        if _audited(answer) != before:
            record_change(
                request,
                session,
                "order.refund",
                target=f"order:{order.order_id}",
                before=before,
                after=_audited(answer),
            )
    return web.json_response(answer)
