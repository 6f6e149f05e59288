"""A page's table as a file HQ opens in Excel: `?format=csv` or `?format=xlsx` on the admin list
pages gives the same rows the page shows (all of them, not one screen's worth), with the column
titles in the reader's words.

CSV is UTF-8 with a byte-order mark, because Excel on a Chinese Windows reads a CSV without one
as GBK and shows the names as mojibake. XLSX is written by openpyxl in write-only mode (rows
stream into the file; memory stays flat). Both are built in a thread, at most two at a time, so
a large export never holds the event loop that acknowledges WeCom's callbacks.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from aiohttp import web

from guidebot import i18n

FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
EXPORT_ROWS = 100_000  # one file's rows at most: beyond it, narrow the filter (the file says so)
# Two exports built at once, in threads of their own: the cores also serve callbacks. (A pool,
# not a semaphore: it belongs to no event loop.)
_BUILDERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="export")


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its title, an English msgid (marked with N_) translated from the catalogs,
    or a function of the language for titles kept elsewhere (a KPI's, in guidebot.metrics.kpis);
    and how a row gives its value."""

    heading: str | Callable[[str], str]
    value: Callable[[Any], Any]

    def title(self, lang: str) -> str:
        if callable(self.heading):
            return self.heading(lang)
        return i18n.gettext(self.heading, lang)


class ExportError(ValueError):
    """A format nobody asked for by name: the page answers 400 with this text."""


def requested_format(query: Any, lang: str = i18n.DEFAULT) -> str | None:
    """`?format=` of a page: None for the page itself, else csv or xlsx (ExportError otherwise)."""
    raw = (query.get("format") or "").strip().lower()
    if not raw or raw == "html":
        return None
    if raw not in FORMATS:
        raise ExportError(
            i18n.gettext("'format' must be csv or xlsx, got %(got)s", lang, got=repr(raw[:20]))
        )
    return raw


def _cell(value: Any, lang: str = i18n.DEFAULT) -> Any:
    """A value as a spreadsheet holds it: numbers stay numbers, times lose their zone (Excel
    has none; the page's times are already local), anything else becomes text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return i18n.gettext("Yes", lang) if value else i18n.gettext("No", lang)
    if isinstance(value, int | float | Decimal):
        return value
    if isinstance(value, datetime):
        return value.replace(tzinfo=None, microsecond=0)
    if isinstance(value, date):
        return value
    return str(value)


def _text(value: Any, lang: str = i18n.DEFAULT) -> str:
    value = _cell(value, lang)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    # A cell starting with = + - @ is a formula to Excel: a customer named "=HYPERLINK(...)"
    # must stay a name (OWASP's CSV injection advice: prefix a quote).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_bytes(columns: Sequence[Column], rows: Iterable[Any], lang: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([c.title(lang) for c in columns])
    for row in rows:
        writer.writerow([_text(c.value(row), lang) for c in columns])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def xlsx_bytes(columns: Sequence[Column], rows: Iterable[Any], lang: str, sheet: str) -> bytes:
    # openpyxl loads on the first export, not with every server and command: a fifth of a second
    # of each start-up, for a format few requests ask for.
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    book = Workbook(write_only=True)
    ws = book.create_sheet(title=sheet[:31] or "Sheet1")
    bold = Font(bold=True)
    header = []
    for column in columns:
        cell = WriteOnlyCell(ws, value=column.title(lang))
        cell.font = bold
        header.append(cell)
    ws.append(header)
    for row in rows:
        values = [_cell(c.value(row), lang) for c in columns]
        # The same formula guard as the CSV: openpyxl stores a leading "=" as a formula.
        ws.append([_text(v) if isinstance(v, str) else v for v in values])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


async def export_response(
    fmt: str, name: str, columns: Sequence[Column], rows: Sequence[Any], lang: str = "zh"
) -> web.Response:
    """The rows as a download named `name` (Chinese allowed: RFC 6266's filename*)."""
    rows = list(rows)[:EXPORT_ROWS]
    loop = asyncio.get_running_loop()
    if fmt == "csv":
        body = await loop.run_in_executor(_BUILDERS, csv_bytes, columns, rows, lang)
    else:
        body = await loop.run_in_executor(_BUILDERS, xlsx_bytes, columns, rows, lang, name)
    filename = f"{name}.{fmt}"
    response = web.Response(body=body, headers={"Content-Type": FORMATS[fmt]})
    response.headers["Content-Disposition"] = (
        f"attachment; filename=\"export.{fmt}\"; filename*=UTF-8''{quote(filename)}"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response
