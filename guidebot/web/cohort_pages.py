"""/admin/cohorts: the cohort heat map. The table the API answers (guidebot.web.api.cohorts),
each rate cell shaded by its value; the query's choices are the API's, validated by the same
declaration. HQ splits as it likes; a store manager sees their stores' rows (split by store,
the one split the rollup keeps per store), never the corp's totals."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from guidebot import i18n
from guidebot.metrics.cohort_report import NONE_LABEL
from guidebot.metrics.cohorts import REPURCHASE_DAYS, RETENTION_DAYS
from guidebot.web import export_tables, exports
from guidebot.web.api.cohorts import CohortQuery, cohort_document
from guidebot.web.api.declare import Invalid, validate
from guidebot.web.lang import language_of
from guidebot.web.pages import _signed_in, render

N_ = i18n.N_
METRIC_LABELS = {
    "retention": N_("Retention"),
    "repurchase": N_("Repurchase"),
    "gmv": N_("Orders and GMV"),
}
PERIOD_LABELS = {"week": N_("By week"), "month": N_("By month")}
SPLIT_LABELS = {
    "all": N_("All customers"),
    "store": N_("Store"),
    "guide": N_("Guide"),
    "channel": N_("Channel"),
    "campaign": N_("Campaign"),
    "playbook": N_("Playbook"),
}


def column_labels(lang: str) -> dict[str, str]:
    """The heat map's columns in the page's language (the API's are its own, bilingual)."""
    return {
        **{f"d{n}": i18n.gettext("Day %(n)s retention", lang, n=n) for n in RETENTION_DAYS},
        **{f"r{w}": i18n.gettext("%(n)s-day repurchase", lang, n=w) for w in REPURCHASE_DAYS},
        "orders_per_customer": i18n.gettext("Orders per customer", lang),
        "gmv_per_customer": i18n.gettext("GMV per customer (¥)", lang),
    }


def _words(table: dict[str, str], lang: str) -> dict[str, str]:
    return {key: i18n.gettext(words, lang) for key, words in table.items()}


def shade(cell: dict[str, Any], column: str) -> str:
    """A background for a rate cell: deeper blue for a higher rate; none for money or blanks."""
    value = cell.get("value")
    if value is None or not column.startswith(("d", "r")):
        return ""
    alpha = round(0.08 + 0.72 * max(0.0, min(1.0, float(value))), 2)
    return f"background: rgba(31, 111, 235, {alpha}); color: {'#fff' if alpha > 0.5 else '#111'}"


async def cohorts_page(request: web.Request) -> web.StreamResponse:
    who = await _signed_in(request)
    try:
        # The page's language and its export are the page's, not the cohort query's.
        asked = {k: v for k, v in request.query.items() if k not in ("lang", "format", "table")}
        if not who.is_hq:  # a manager's cohorts: their stores' rows (the rollup splits by store)
            asked["by"] = "store"
        wanted = validate(CohortQuery, asked, query=True)
    except Invalid as exc:
        raise web.HTTPBadRequest(text=exc.reason) from None
    try:
        document = await cohort_document(request.app, wanted)
    except Exception as exc:  # the API's 422 (from after to, too long a span)
        reason = getattr(exc, "reason", None)
        if reason is None:
            raise
        raise web.HTTPBadRequest(text=reason) from None
    lang = language_of(request, who)
    splits = _words(SPLIT_LABELS, lang)
    if not who.is_hq:
        mine = {str(store) for store in who.store_ids}
        document["cohorts"] = [row for row in document["cohorts"] if row["key"] in mine]
        splits = {"store": splits["store"]}

    def row_label(row: dict[str, Any]) -> str:
        """A row's store, guide or campaign as stored; the words for "all" and "none"."""
        if row.get("key") == "*":
            return splits["all"]
        if document["by"] == "channel" and row["label"] != NONE_LABEL:
            return i18n.label("channel", row["key"], lang)
        return i18n.gettext("(none)", lang) if row["label"] == NONE_LABEL else row["label"]

    if fmt := exports.export_format(request, lang):
        exports.chosen_table(request, lang, ("cohorts",))
        columns = export_tables.cohort_columns(
            splits[document["by"]], column_labels(lang), document["columns"], row_label
        )
        return await exports.respond(fmt, N_("Cohorts"), columns, document["cohorts"], lang)
    context = {
        "doc": document,
        "wanted": wanted,
        "shade": shade,
        "metrics": _words(METRIC_LABELS, lang),
        "periods": _words(PERIOD_LABELS, lang),
        "splits": splits,
        "column_labels": column_labels(lang),
        "row_label": row_label,
    }
    return render(request, "cohorts.html", context)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/admin/cohorts", cohorts_page)
