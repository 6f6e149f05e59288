"""/admin/stores: the store leaderboard (one KPI ranks the stores, the usual figures beside
it), a store's guides ranked by the same KPI, and the tasks overdue past their playbook's
escalate_after (the chosen store's, or a manager's own stores'). Each table exports.
"""

from __future__ import annotations

from aiohttp import web

from guidebot import i18n
from guidebot.metrics import kpis
from guidebot.metrics.escalation import escalated_tasks
from guidebot.metrics.report import leaderboard, per_store
from guidebot.web import export_tables, exports
from guidebot.web.keys import CLOCK, SESSIONS
from guidebot.web.lang import language_of
from guidebot.web.pages import _chosen_store, _period, _signed_in, _visible_stores, render

N_ = i18n.N_

STORE_GUIDE_KPIS = ("new_customers", "net_growth", "open_rate", "orders")  # a store's guides


async def stores_page(request: web.Request) -> web.StreamResponse:
    who = await _signed_in(request)
    period = _period(request)
    metric = request.query.get("metric", "new_customers")
    if metric not in kpis.KPI_BY_NAME:
        metric = "new_customers"
    fmt = exports.export_format(request, language_of(request, who))
    async with request.app[SESSIONS]() as session:
        stores = await _visible_stores(session, who)
        # HQ sees every store: no list of ids to send.
        values = await per_store(session, period, None if who.is_hq else [s.id for s in stores])
        rows = [
            {"store": s, "metrics": values.get(s.id) or kpis.evaluate(kpis.empty_totals())}
            for s in stores
        ]
        # Best first, as the guide table beside it: bigger is better, no value last.
        kpi = kpis.KPI_BY_NAME[metric]
        rows.sort(key=lambda r: -kpis.sort_key(kpi, r["metrics"][metric]))
        for rank, row in enumerate(rows, start=1):
            row["rank"] = rank
        store = _chosen_store(request, who, stores) if request.query.get("store") else None
        guides = (
            await leaderboard(session, period, metric, store_id=store.id, limit=500)
            if store
            else []
        )
        # Tasks past their playbook's escalate_after: the chosen store's, or a manager's own.
        watched = [store.id] if store else [] if who.is_hq else [s.id for s in stores]
        now = request.app[CLOCK].now()
        overdue = await escalated_tasks(session, watched, now) if watched else []
    if fmt:
        lang = language_of(request, who)
        tables = {
            "store-leaderboard": (N_("Stores"), exports.store_columns(metric), rows),
            "escalated-tasks": (
                N_("Overdue tasks"),
                export_tables.escalated_columns(now, lang),
                overdue,
            ),
            "guide-leaderboard": (
                N_("Guides"),
                export_tables.leaderboard_columns(metric, STORE_GUIDE_KPIS),
                guides,
            ),
        }
        name, columns, shown = tables[exports.chosen_table(request, lang, list(tables))]
        return await exports.respond(fmt, name, columns, shown, lang)
    return render(
        request,
        "stores.html",
        {
            "period": period,
            "metric": metric,
            "kpi_names": kpis.KPI_NAMES,
            "rows": rows,
            "store": store,
            "guides": guides,
            "escalated": overdue,
            "store_kpis": exports.STORE_KPIS,
            "guide_kpis": STORE_GUIDE_KPIS,
            "watching": bool(watched),
            "now": now,
        },
    )


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/admin/stores", stores_page)
