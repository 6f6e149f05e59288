"""The admin lists as files: which columns each list's CSV and Excel file has (guidebot.web.tables
writes them). A list page answers `?format=csv|xlsx` with every row its filters match, not only
the screen it shows, and the same words in the titles as on the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

from guidebot import i18n
from guidebot.metrics import kpis
from guidebot.web.tables import Column, ExportError, export_response, requested_format

N_ = i18n.N_


def export_format(request: web.Request, lang: str) -> str | None:
    """The list's `?format=`: None for the page; a bad one is the page's styled 400."""
    try:
        return requested_format(request.query, lang)
    except ExportError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


def chosen_table(request: web.Request, lang: str, tables: Sequence[str]) -> str:
    """`?table=`: which of the page's tables to export (the first when the page names none)."""
    raw = request.query.get("table", "").strip()
    if not raw:
        return tables[0]
    if raw not in tables:
        raise web.HTTPBadRequest(
            text=i18n.gettext(
                "'table' must be one of %(tables)s, got %(got)s",
                lang,
                tables=", ".join(tables),
                got=repr(raw[:40]),
            )
        )
    return raw


def kpi_columns(names: tuple[str, ...]) -> list[Column]:
    """KPI columns titled from the one KPI table; rates as shares (0.25), numbers as numbers."""
    return [
        Column(kpis.KPI_BY_NAME[name].title, lambda r, n=name: r["metrics"][n]) for name in names
    ]


def customer_columns(
    relations: dict[str, list[Any]], first_seen: dict[str, str], guide_names: dict[str, str], lang
) -> list[Column]:
    def guides(c: Any) -> str:
        open_, close = ("（", "）") if lang == i18n.ZH else (" (", ")")
        return i18n.join(
            (
                f"{guide_names.get(r.guide_userid, r.guide_userid)}"
                f"{open_}{i18n.label('relation_status', r.status, lang)}{close}"
                for r in relations.get(c.external_userid, [])
            ),
            lang,
        )

    def tags(c: Any) -> str:
        names = {
            t.get("name") or t.get("id")
            for r in relations.get(c.external_userid, [])
            for t in r.tags or []
        }
        return i18n.join(sorted(n for n in names if n), lang)

    return [
        Column(N_("Customer"), lambda c: c.name),
        Column(N_("Customer ID"), lambda c: c.external_userid),
        Column(N_("Guides (status)"), guides),
        Column(N_("Tags"), tags),
        Column(N_("First seen"), lambda c: first_seen.get(c.external_userid)),
    ]


def guide_columns(key_kpis: tuple[str, ...], lang: str) -> list[Column]:
    return [
        Column(N_("Guide"), lambda r: r["name"]),
        Column(N_("Store"), lambda r: i18n.join((s.name for s in r["stores"]), lang)),
        Column(N_("Customers"), lambda r: r["customers"]),
        Column(N_("Open tasks"), lambda r: r["open"]),
        Column(N_("Overdue"), lambda r: r["overdue"]),
        *kpi_columns(key_kpis),
    ]


# The stores list's figures, as its table shows them.
STORE_KPIS = (
    "new_customers",
    "lost_customers",
    "net_growth",
    "tasks_done",
    "forwards",
    "orders",
    "gmv",
)


def store_columns(metric: str) -> list[Column]:
    """As the page's table: rank, store, the ranked figure, then the usual ones."""
    return [
        Column(N_("Rank"), lambda r: r["rank"]),
        Column(N_("Store"), lambda r: r["store"].name),
        *kpi_columns((metric, *STORE_KPIS)),
    ]


def content_columns(lang: str, stores: dict[str, str]) -> list[Column]:
    def seen_by(r: Any) -> str:
        codes = r["item"].stores or []
        return i18n.join((stores.get(c, c) for c in codes), lang) or i18n.gettext(
            "Every store", lang
        )

    return [
        Column(N_("Item"), lambda r: r["item"].title),
        Column(N_("Kind"), lambda r: i18n.label("content_kind", r["item"].kind, lang)),
        Column(N_("Stores that see it"), seen_by),
        Column(N_("Forwards"), lambda r: r["forwards"]),
        Column(N_("Opens"), lambda r: r["opens"]),
        Column(N_("Unique opens"), lambda r: r["unique_opens"]),
        Column(
            N_("Open rate"), lambda r: r["unique_opens"] / r["forwards"] if r["forwards"] else None
        ),
    ]


def _open_rate(r: Any) -> float | None:
    return r["unique_opens"] / r["forwards"] if r["forwards"] else None


async def respond(fmt: str, name_msgid: str, columns: list[Column], rows, lang: str):
    """The download, named in the reader's words (客户.xlsx)."""
    return await export_response(fmt, i18n.gettext(name_msgid, lang), columns, rows, lang)
