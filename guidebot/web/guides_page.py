"""/admin/guides: every guide the signed-in person may see, with their store, customers, open
and overdue tasks and the period's key KPIs, each linking to the guide's own page.

HQ sees every active guide (or one store's, with ?store=); a manager their stores' guides, with
the customers, tasks and figures of their stores only. Guides with overdue tasks first, then
open ones, then by name, GUIDES_PER_PAGE to a page (?page=; a brand of 10,000 guides made a
5 MB page in 6 s); ?q= finds guides by a part of their name or userid. Columns sort in the
browser (admin.js) and the exports hold every guide listed.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from guidebot import i18n
from guidebot.contacts import queries as contacts
from guidebot.contacts.models import GuideStatus
from guidebot.metrics import kpis
from guidebot.metrics.report import per_guide
from guidebot.sop.queries import guide_task_counts
from guidebot.web import exports
from guidebot.web.keys import CLOCK, SESSIONS
from guidebot.web.lang import language_of
from guidebot.web.pages import (
    _chosen_store,
    _page_number,
    _period,
    _signed_in,
    _visible_stores,
    render,
)

KEY_KPIS = ("new_customers", "net_growth", "tasks_done", "forwards", "open_rate", "orders")
KEY_COLUMNS = kpis.columns_of(KEY_KPIS)  # the counters they are worked out from
GUIDES_PER_PAGE = 100


def _matches(q: str, *texts: str | None) -> bool:
    """`q` is in one of the texts, whatever the case."""
    wanted = q.casefold()
    return any(wanted in text.casefold() for text in texts if text)


def _listed(views, counted, tasks, q: str) -> list[dict[str, Any]]:
    """The guides to list, in order: overdue tasks first, then open ones, then by name."""
    listed: list[dict[str, Any]] = []
    for view in views:
        mine = [s for s in view.stores if counted is None or s.id in counted]
        if counted is not None and not mine:
            continue
        if q and not _matches(q, view.guide.name, view.guide.userid):
            continue
        listed.append(
            {
                "userid": view.guide.userid,
                "name": view.guide.name,
                "stores": mine,
                "customers": view.active_customers,
                "open": tasks.get(view.guide.userid, {}).get("open", 0),
                "overdue": tasks.get(view.guide.userid, {}).get("overdue", 0),
            }
        )
    listed.sort(key=lambda r: (-r["overdue"], -r["open"], r["name"], r["userid"]))
    return listed


async def _key_totals(session, period, counted, guides: list[str] | None):
    """The key KPIs' counters and snapshots of `guides` (None: of every guide), summed over
    the counted stores (None: all)."""
    totals: dict[str, dict[str, int]] = {}
    if guides == []:
        return totals
    for store_id in sorted(counted) if counted is not None else [None]:
        figures = await per_guide(session, period, store_id, columns=KEY_COLUMNS, guides=guides)
        for guide, sums in figures.items():
            kpis.add_totals(totals.setdefault(guide, kpis.empty_totals()), sums)
    return totals


def _page_link(request: web.Request, page: int) -> str:
    """This page's query (period, store) with another page number."""
    kept = {k: request.query[k] for k in ("from", "to", "store", "q") if request.query.get(k)}
    return "?" + urlencode({**kept, "page": page})


async def guides_page(request: web.Request) -> web.StreamResponse:
    who = await _signed_in(request)
    period = _period(request)
    fmt = exports.export_format(request, language_of(request, who))
    page = _page_number(request)
    q = request.query.get("q", "").strip()[:100]
    async with request.app[SESSIONS]() as session:
        stores = await _visible_stores(session, who)
        store = _chosen_store(request, who, stores) if request.query.get("store") else None
        # The stores whose figures count: the chosen one, a manager's, or all (None).
        counted = {store.id} if store else None if who.is_hq else {s.id for s in stores}
        views = await contacts.list_guides(session, status=GuideStatus.ACTIVE, count_stores=counted)
        tasks = await guide_task_counts(session, request.app[CLOCK].now(), counted)
        listed = _listed(views, counted, tasks, q)
        pages = max(1, math.ceil(len(listed) / GUIDES_PER_PAGE))
        page = min(page, pages)  # past the end (guides left since the link was made): the last
        rows = listed if fmt else listed[(page - 1) * GUIDES_PER_PAGE : page * GUIDES_PER_PAGE]
        # The figures of the guides shown (or exported: every one), and only the key ones.
        shown = None if fmt else [row["userid"] for row in rows]
        totals = await _key_totals(session, period, counted, shown)
    for row in rows:
        guide_totals = totals.get(row["userid"], kpis.empty_totals())
        row["metrics"] = kpis.evaluate(guide_totals, KEY_KPIS)
    if fmt:
        lang = language_of(request, who)
        exports.chosen_table(request, lang, ("guides",))
        columns = exports.guide_columns(KEY_KPIS, lang)
        return await exports.respond(fmt, i18n.N_("Guides"), columns, rows, lang)
    return render(
        request,
        "guides.html",
        {
            "period": period,
            "stores": stores,
            "store": store,
            "rows": rows,
            "key_kpis": KEY_KPIS,
            "page": page,
            "pages": pages,
            "guides": len(listed),
            "q": q,
            "guide_search": True,
            "previous_page": _page_link(request, page - 1) if page > 1 else None,
            "next_page": _page_link(request, page + 1) if page < pages else None,
        },
    )


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/admin/guides", guides_page)
