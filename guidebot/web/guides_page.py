"""/admin/guides: every guide the signed-in person may see, with their store, customers, open
and overdue tasks and the period's key KPIs, each linking to the guide's own page.

HQ sees every active guide (or one store's, with ?store=); a manager their stores' guides, with
the customers, tasks and figures of their stores only. Columns sort in the browser (admin.js).
"""

from __future__ import annotations

from typing import Any

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
from guidebot.web.pages import _chosen_store, _period, _signed_in, _visible_stores, render

KEY_KPIS = ("new_customers", "net_growth", "tasks_done", "forwards", "open_rate", "orders")


async def guides_page(request: web.Request) -> web.StreamResponse:
    who = await _signed_in(request)
    period = _period(request)
    fmt = exports.export_format(request, language_of(request, who))
    async with request.app[SESSIONS]() as session:
        stores = await _visible_stores(session, who)
        store = _chosen_store(request, who, stores) if request.query.get("store") else None
        # The stores whose figures count: the chosen one, a manager's, or all (None).
        counted = {store.id} if store else None if who.is_hq else {s.id for s in stores}
        views = await contacts.list_guides(session, status=GuideStatus.ACTIVE, count_stores=counted)
        totals: dict[str, dict[str, int]] = {}
        for store_id in sorted(counted) if counted is not None else [None]:
            for guide, sums in (await per_guide(session, period, store_id)).items():
                kpis.add_totals(totals.setdefault(guide, kpis.empty_totals()), sums)
        tasks = await guide_task_counts(session, request.app[CLOCK].now(), counted)
    rows: list[dict[str, Any]] = []
    for view in views:
        mine = [s for s in view.stores if counted is None or s.id in counted]
        if counted is not None and not mine:
            continue
        rows.append(
            {
                "userid": view.guide.userid,
                "name": view.guide.name,
                "stores": mine,
                "customers": view.active_customers,
                "open": tasks.get(view.guide.userid, {}).get("open", 0),
                "overdue": tasks.get(view.guide.userid, {}).get("overdue", 0),
                "metrics": kpis.evaluate(totals.get(view.guide.userid, kpis.empty_totals())),
            }
        )
    rows.sort(key=lambda r: (-r["overdue"], -r["open"], r["name"], r["userid"]))
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
        },
    )


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/admin/guides", guides_page)
