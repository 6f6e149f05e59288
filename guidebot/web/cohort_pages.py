"""/admin/cohorts: the cohort heat map (HQ). The table the API answers
(guidebot.web.api.cohorts), each rate cell shaded by its value; the query's choices are the
API's, validated by the same declaration."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from guidebot.metrics.cohort_report import COLUMN_LABELS, SPLIT_LABELS
from guidebot.web.api.cohorts import CohortQuery, cohort_document
from guidebot.web.api.declare import Invalid, validate
from guidebot.web.pages import _hq_only, _signed_in, render

METRIC_LABELS = {
    "retention": "留存 / retention",
    "repurchase": "复购 / repurchase",
    "gmv": "订单与GMV / orders and GMV",
}
PERIOD_LABELS = {"week": "按周 / by week", "month": "按月 / by month"}


def shade(cell: dict[str, Any], column: str) -> str:
    """A background for a rate cell: deeper blue for a higher rate; none for money or blanks."""
    value = cell.get("value")
    if value is None or not column.startswith(("d", "r")):
        return ""
    alpha = round(0.08 + 0.72 * max(0.0, min(1.0, float(value))), 2)
    return f"background: rgba(31, 111, 235, {alpha}); color: {'#fff' if alpha > 0.5 else '#111'}"


async def cohorts_page(request: web.Request) -> web.StreamResponse:
    _hq_only(await _signed_in(request))
    try:
        wanted = validate(CohortQuery, dict(request.query), query=True)
    except Invalid as exc:
        raise web.HTTPBadRequest(text=exc.reason) from None
    try:
        document = await cohort_document(request.app, wanted)
    except Exception as exc:  # the API's 422 (from after to, too long a span)
        reason = getattr(exc, "reason", None)
        if reason is None:
            raise
        raise web.HTTPBadRequest(text=reason) from None
    context = {
        "doc": document,
        "wanted": wanted,
        "shade": shade,
        "metrics": METRIC_LABELS,
        "periods": PERIOD_LABELS,
        "splits": SPLIT_LABELS,
        "column_labels": COLUMN_LABELS,
    }
    return render(request, "cohorts.html", context)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/admin/cohorts", cohorts_page)
