"""The admin pages under /admin: sign-in, the dashboard, stores, guides, customers, playbooks and
content. Thin: parse, call the metrics/contacts/sop/content functions, render a Jinja2 template.

Figures come from the rollups (guidebot.metrics.report), never the raw logs. HQ sees everything
and may pick a store; a store manager sees the same pages narrowed to their stores (their first
store by default); the playbook and content pages are HQ's. Charts use the vendored Chart.js
(templates/web/static/vendor), fed from JSON embedded in the page: no outside requests.
"""

from __future__ import annotations

import logging
import math
import secrets
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from sqlalchemy import select

from guidebot import i18n
from guidebot.contacts import queries
from guidebot.contacts.directory import store_zone
from guidebot.contacts.models import Department, Guide, Relation
from guidebot.content import service
from guidebot.metrics import kpis
from guidebot.metrics.report import (
    Period,
    PeriodError,
    Scope,
    leaderboard,
    metrics,
    period_from_query,
)
from guidebot.web import export_tables, exports
from guidebot.web.accounts import SignedIn, find_credentials, load_account, password_matches
from guidebot.web.auth import (
    ADMIN_COOKIE,
    PRINCIPAL,
    Principal,
    csrf_ok,
    guide_visible,
    mint_admin_session,
    principal_of,
    read_admin_claims,
    relation_visible,
    set_admin_cookie,
)
from guidebot.web.keys import CLOCK, LOGIN_THROTTLE, SESSIONS, SETTINGS, SIGN_IN_GATE
from guidebot.web.lang import (
    TEMPLATES,
    choose_language,
    environment,
    json_script,
    language_of,
    remember,
    switch_href,
)
from guidebot.web.revoked import revoke
from guidebot.web.tables import EXPORT_ROWS
from guidebot.web.throttle import Busy, LoginThrottle, Reservation, request_address

VENDOR = TEMPLATES / "static" / "vendor"
STATIC_FILES = {
    "chart.umd.js": "application/javascript",
    "codemirror.min.js": "application/javascript",  # the playbook studio's editor
    "studio.js": "application/javascript",
    "admin.css": "text/css",
    "admin.js": "application/javascript",  # sortable tables, the date presets
}
VENDORED = frozenset({"chart.umd.js", "codemirror.min.js"})
log = logging.getLogger(__name__)

N_ = i18n.N_
LOGIN_COOKIE = "gb_login"  # the login form's double-submit CSRF value (no session yet)
PER_PAGE = 50


_json_script = json_script


def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    """The template in the request's language (guidebot.web.lang), inside the admin layout."""
    who: Principal | None = request.get(PRINCIPAL)
    secret = request.app[SETTINGS].secret_key
    lang = language_of(request, who)
    html = (
        environment(lang)
        .get_template(template)
        .render(
            who=who,
            csrf=who.csrf(secret) if who else "",
            path=request.path,
            switch_href=switch_href(request, i18n.EN if lang == i18n.ZH else i18n.ZH),
            today=request.app[CLOCK].now().astimezone(_zone(request)).date().isoformat(),
            export_href=lambda fmt, table=None: _export_href(request, fmt, table),
            **context,
        )
    )
    response = web.Response(text=html, content_type="text/html", status=status)
    remember(request, response)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"
    return response


def _export_href(request: web.Request, fmt: str, table: str | None = None) -> str:
    """A table of this page as a file: the same filters, every page of it."""
    skipped = ("page", "format", "lang", "table")
    query = {k: v for k, v in request.query.items() if k not in skipped}
    return "?" + urlencode({**query, "format": fmt, **({"table": table} if table else {})})


def _zone(request: web.Request):
    return store_zone(None, request.app[SETTINGS].timezone)


async def _signed_in(request: web.Request) -> Principal:
    who = await principal_of(request)
    if who is None or who.role not in ("hq", "manager"):
        raise web.HTTPSeeOther(f"/admin/login?next={quote(request.path_qs, safe='/')}")
    request[PRINCIPAL] = who
    await choose_language(request, who)
    return who


def _(msgid: str, request: web.Request, **values: object) -> str:
    """A message in the request's language."""
    return i18n.gettext(msgid, language_of(request, request.get(PRINCIPAL)), **values)


def _hq_only(who: Principal) -> None:
    if not who.is_hq:
        raise web.HTTPNotFound()


def _period(request: web.Request) -> Period:
    try:
        return period_from_query(
            request.query, request.app[SETTINGS].timezone, request.app[CLOCK].now()
        )
    except PeriodError as exc:
        raise web.HTTPBadRequest(text=exc.translated(language_of(request))) from None


async def _visible_stores(session, who: Principal) -> list[Department]:
    query = select(Department).where(Department.is_store.is_(True), Department.deleted_at.is_(None))
    if not who.is_hq:
        query = query.where(Department.id.in_(sorted(who.store_ids)))
    return list(await session.scalars(query.order_by(Department.sort_order, Department.id)))


def _chosen_store(
    request: web.Request, who: Principal, stores: list[Department]
) -> Department | None:
    """?store= (code or id) among the visible stores; a manager's default is their first."""
    ref = request.query.get("store", "").strip()
    if ref:
        for store in stores:
            if ref in (store.code, str(store.id)):
                return store
        raise web.HTTPNotFound()
    if who.is_hq:
        return None
    if not stores:
        raise web.HTTPNotFound()
    return stores[0]


# ---- sign-in ---------------------------------------------------------------------------------


def _next(raw: str | None) -> str:
    if raw and raw.startswith("/admin") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return "/admin"


def _login_page(request: web.Request, error: str | None, status: int = 200) -> web.Response:
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        {"error": error, "login_csrf": token, "next": _next(request.query.get("next"))},
        status,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=3600,
        path="/admin",
        httponly=True,
        samesite="Lax",
        secure=request.app[SETTINGS].public_url.startswith("https://"),
    )
    return response


async def login_form(request: web.Request) -> web.StreamResponse:
    return _login_page(request, None)


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    expected = request.cookies.get(LOGIN_COOKIE, "")
    given = str(form.get("csrf", ""))
    if not expected or not secrets.compare_digest(given.encode(), expected.encode()):
        return _login_page(request, _("The form expired; please sign in again.", request), 403)
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    app = request.app
    throttle, now = app[LOGIN_THROTTLE], app[CLOCK].now()
    keys = throttle.keys(username, request_address(request, app[SETTINGS].trusted_proxies))
    try:
        async with app[SIGN_IN_GATE].turn():
            account, reservation = await _check_password(request, keys, username, password, now)
    except Busy:
        response = _login_page(
            request, _("Sign-in is busy; please try again shortly.", request), 503
        )
        response.headers["Retry-After"] = "5"
        return response
    if reservation.wait is not None:
        seconds = math.ceil(reservation.wait.total_seconds())
        minutes = math.ceil(seconds / 60)
        log.warning("sign-in refused: too many failures for %s", " and ".join(keys))
        text = i18n.ngettext(
            "Too many failed sign-ins; try again in %(num)s minute.",
            "Too many failed sign-ins; try again in %(num)s minutes.",
            minutes,
            language_of(request),
        )
        response = _login_page(request, text, 429)
        response.headers["Retry-After"] = str(seconds)
        return response
    if account is None:
        return _login_page(request, _("Wrong username or password.", request), 401)
    response = web.HTTPSeeOther(_next(str(form.get("next", ""))))
    value = mint_admin_session(app[SETTINGS].secret_key, account.account_id, app[CLOCK].now())
    set_admin_cookie(response, request, value)
    response.del_cookie(LOGIN_COOKIE, path="/admin")
    raise response


async def _check_password(
    request: web.Request, keys: list[str], username: str, password: str, now: datetime
) -> tuple[SignedIn | None, Reservation]:
    """The attempt is counted (or refused) before the password is read, in one transaction;
    scrypt then runs in a thread with no transaction open; a match takes the count back."""
    app = request.app
    throttle = app[LOGIN_THROTTLE]
    async with app[SESSIONS]() as session, session.begin():
        reservation = await throttle.reserve(session, keys, now)
        if reservation.wait is not None:
            return None, reservation
        found = await find_credentials(session, username)
    if not await password_matches(password, found) or found is None:
        return None, reservation
    async with app[SESSIONS]() as session, session.begin():
        account = await load_account(session, found.account_id)
        if account is not None:
            await throttle.succeeded(session, username, reservation)
    return account, reservation


async def logout(request: web.Request) -> web.StreamResponse:
    """Ends the session everywhere: its cookie is revoked in the database, then deleted."""
    who = await _signed_in(request)
    form = await request.post()
    secret_key, now = request.app[SETTINGS].secret_key, request.app[CLOCK].now()
    if not csrf_ok(secret_key, who.session or "", str(form.get("csrf", ""))):
        raise web.HTTPForbidden(text=_("Missing or wrong CSRF token.", request))
    claims = read_admin_claims(secret_key, who.session, now)
    if claims is not None:
        _account_id, expires_at, revocation_key = claims
        async with request.app[SESSIONS]() as session, session.begin():
            await revoke(session, revocation_key, expires_at, now)
    response = web.HTTPSeeOther("/admin/login")
    response.del_cookie(ADMIN_COOKIE, path="/")
    raise response


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    folder = VENDOR if name in VENDORED else TEMPLATES / "static"
    return web.Response(
        body=(folder / name).read_bytes(),
        headers={"Content-Type": STATIC_FILES[name], "Cache-Control": "max-age=3600"},
    )


# ---- dashboard, stores, guides ---------------------------------------------------------------


def _charts(days: list[dict[str, Any]], totals: dict[str, Any], lang: str) -> dict[str, Any]:
    growth = ("new_customers", "lost_customers", "removed_customers", "net_growth")
    funnel, sop = (
        ("forwards", "unique_opens", "orders"),
        ("tasks_due", "tasks_done", "tasks_on_time"),
    )
    title = {name: kpis.KPI_BY_NAME[name].title(lang) for name in growth + funnel + sop}
    return {
        "labels": [i18n.format_date(d["day"], lang, "short") for d in days],
        "names": {name: title[name] for name in growth},
        "growth": {name: [d["metrics"][name] for d in days] for name in growth},
        "funnel": {
            "title": i18n.gettext("Count", lang),
            "labels": [title[name] for name in funnel],
            "values": [totals[name] for name in funnel],
        },
        "sop": {
            "title": i18n.gettext("Tasks", lang),
            "labels": [title[name] for name in sop],
            "values": [totals[name] for name in sop],
        },
    }


TOP_KPIS = ("new_customers", "net_growth", "forwards", "open_rate", "orders")  # its leaderboard


async def dashboard(request: web.Request) -> web.StreamResponse:
    who = await _signed_in(request)
    period = _period(request)
    async with request.app[SESSIONS]() as session:
        stores = await _visible_stores(session, who)
        store = _chosen_store(request, who, stores)
        scope = Scope(store_id=store.id) if store else Scope()
        totals, days = await metrics(session, scope, period, by_day=True)
        top = await leaderboard(
            session, period, "new_customers", store_id=store.id if store else None, limit=10
        )
    lang = language_of(request, who)
    if fmt := exports.export_format(request, lang):
        exports.chosen_table(request, lang, ("leaderboard",))
        columns = export_tables.leaderboard_columns(None, TOP_KPIS)
        return await exports.respond(fmt, N_("Top guides by new customers"), columns, top, lang)
    return render(
        request,
        "dashboard.html",
        {
            "period": period,
            "stores": stores,
            "store": store,
            "totals": totals,
            "kpi_names": kpis.KPI_NAMES,
            "labels": kpis.KPI_BY_NAME,
            "top": top,
            "top_kpis": TOP_KPIS,
            "chart_data": _json_script(_charts(days or [], totals, language_of(request, who))),
        },
    )


async def guide_page(request: web.Request) -> web.StreamResponse:
    who = await _signed_in(request)
    period = _period(request)
    userid = request.match_info["userid"]
    async with request.app[SESSIONS]() as session:
        guide = await session.get(Guide, userid)
        if guide is None or not await guide_visible(session, who, userid):
            raise web.HTTPNotFound()
        # A manager sees the guide's days in their stores only, not those from a former store.
        scope = Scope(guide=userid, stores=None if who.is_hq else who.store_ids)
        totals, days = await metrics(session, scope, period, by_day=True)
    lang = language_of(request, who)
    if fmt := exports.export_format(request, lang):
        exports.chosen_table(request, lang, ("days",))
        columns = export_tables.day_columns()
        return await exports.respond(fmt, guide.name, columns, days or [], lang)
    return render(
        request,
        "guide.html",
        {
            "period": period,
            "guide": guide,
            "totals": totals,
            "kpi_names": kpis.KPI_NAMES,
            "days": days or [],
            "chart_data": _json_script(_charts(days or [], totals, language_of(request, who))),
        },
    )


# ---- customers -------------------------------------------------------------------------------


async def customers_page(request: web.Request) -> web.StreamResponse:
    who = await _signed_in(request)
    q = request.query.get("q", "").strip()[:100]
    tag = request.query.get("tag", "").strip()[:64]
    page = _page_number(request)
    fmt = exports.export_format(request, language_of(request, who))
    async with request.app[SESSIONS]() as session:
        stores = await _visible_stores(session, who)
        store = _chosen_store(request, who, stores) if request.query.get("store") else None
        found = await queries.search_customers(
            session,
            stores=[store.id] if store is not None else None if who.is_hq else who.store_ids,
            words=q or None,
            tag=tag or None,
            related_only=True,
            page=1 if fmt else page,
            per_page=EXPORT_ROWS if fmt else PER_PAGE,
            count_up_to=EXPORT_ROWS if fmt else queries.COUNT_UP_TO,
        )
        customers, total = found.customers, found.total
        relations: dict[str, list[Relation]] = {
            c.external_userid: [
                r
                for r in found.relations[c.external_userid]
                if relation_visible(who, r.guide_userid, r.store_id)
            ]
            for c in customers
        }
        first_seen = await _first_seen(session, relations, request.app[SETTINGS].timezone)
        guide_names = await _guide_names(session, relations)
    if fmt:
        lang = language_of(request, who)
        exports.chosen_table(request, lang, ("customers",))
        columns = exports.customer_columns(relations, first_seen, guide_names, lang)
        return await exports.respond(fmt, N_("Customers"), columns, customers, lang)
    return render(
        request,
        "customers.html",
        {
            "q": q,
            "tag": tag,
            "page": page,
            "pages": max(1, -(-(total or 0) // PER_PAGE)),
            "total": total or 0,
            "more": found.more,
            "has_next": found.has_next,
            "stores": stores,
            "store": store,
            "customers": customers,
            "relations": relations,
            "first_seen": first_seen,
            "guide_names": guide_names,
        },
    )


async def _guide_names(session, relations: dict[str, list[Relation]]) -> dict[str, str]:
    userids = sorted({r.guide_userid for rs in relations.values() for r in rs})
    rows = await session.execute(select(Guide.userid, Guide.name).where(Guide.userid.in_(userids)))
    return {userid: name for userid, name in rows.all()}


async def _first_seen(
    session, relations: dict[str, list[Relation]], default_tz: str
) -> dict[str, str]:
    """Per customer, the local date (in that relation's store) of the earliest relation shown:
    when the customer added a guide, not when guidebot wrote the customer's row."""
    store_ids = {r.store_id for rs in relations.values() for r in rs if r.store_id is not None}
    zones = {
        store.id: store_zone(store, default_tz)
        for store in await session.scalars(
            select(Department).where(Department.id.in_(sorted(store_ids)))
        )
    }
    out: dict[str, str] = {}
    for ext, rs in relations.items():
        dated = [r for r in rs if r.created_at is not None]
        if dated:
            first = min(dated, key=lambda r: (r.created_at, r.id))
            zone = zones.get(first.store_id) or store_zone(None, default_tz)
            out[ext] = first.created_at.astimezone(zone).date().isoformat()
    return out


MAX_PAGE = 1_000_000


def _page_number(request: web.Request) -> int:
    """?page=: 1 by default, else a whole number 1..MAX_PAGE (a 400, never an overflow)."""
    raw = request.query.get("page", "").strip() or "1"
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 7 and 1 <= int(raw) <= MAX_PAGE):
        raise web.HTTPBadRequest(
            text=_(
                "'page' must be a whole number from 1 to %(max)s, got %(raw)r",
                request,
                max=MAX_PAGE,
                raw=raw[:40],
            )
        )
    return int(raw)


# ---- content (HQ; the playbooks page: guidebot.web.playbooks_page) -----------------------------


async def content_page(request: web.Request) -> web.StreamResponse:
    _hq_only(await _signed_in(request))
    q = request.query.get("q", "").strip()[:100] or None
    async with request.app[SESSIONS]() as session:
        items, total = await service.search_items(session, words=q, limit=200)
        numbers = await service.item_numbers(session, [i.id for i in items])
        stores = {s.code: s.name for s in await _visible_stores(session, request[PRINCIPAL])}
    rows = [{"item": i, **numbers[i.id]} for i in items]
    rows.sort(key=lambda r: (-r["forwards"], -r["unique_opens"], r["item"].id))
    lang = language_of(request, request[PRINCIPAL])
    if fmt := exports.export_format(request, lang):
        exports.chosen_table(request, lang, ("content",))
        columns = exports.content_columns(lang, stores)
        return await exports.respond(fmt, N_("Content"), columns, rows, lang)
    retired = "retired" in request.query
    return render(
        request,
        "content.html",
        {"q": q or "", "rows": rows, "total": total, "retired": retired, "stores": stores},
    )


def setup_routes(app: web.Application) -> None:
    app[LOGIN_THROTTLE] = LoginThrottle()
    app.router.add_get("/admin", dashboard)
    app.router.add_get("/admin/login", login_form)
    app.router.add_post("/admin/login", login)
    app.router.add_post("/admin/logout", logout)
    app.router.add_get("/admin/static/{name}", static)
    app.router.add_get("/admin/guides/{userid}", guide_page)
    app.router.add_get("/admin/customers", customers_page)
    app.router.add_get("/admin/content", content_page)
