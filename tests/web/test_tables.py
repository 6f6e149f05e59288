"""A page's table as a file for Excel: CSV that Excel reads as UTF-8, XLSX that openpyxl reads
back with numbers as numbers, and no cell that Excel would run as a formula."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from openpyxl import load_workbook

from guidebot.web.tables import (
    Column,
    ExportError,
    csv_bytes,
    export_response,
    requested_format,
    xlsx_bytes,
)

COLUMNS = [
    Column("Customer", lambda r: r["name"]),  # msgids: titles come from the catalogs
    Column("Orders", lambda r: r["orders"]),
    Column(lambda lang: "首次添加" if lang == "zh_CN" else "First added", lambda r: r["at"]),
]
ROWS = [
    {"name": "陈女士", "orders": 3, "at": datetime(2026, 3, 10, 12, 30, tzinfo=UTC)},
    {"name": '=HYPERLINK("http://evil")', "orders": 0, "at": None},
    {"name": "-1+2", "orders": 1, "at": None},
]


def test_csv_starts_with_a_bom_and_titles_in_the_readers_language():
    data = csv_bytes(COLUMNS, ROWS, "zh_CN")
    assert data.startswith("\ufeff".encode())  # Excel on Chinese Windows reads it as UTF-8
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0] == ["客户", "订单", "首次添加"]
    assert rows[1] == ["陈女士", "3", "2026-03-10 12:30:00"]
    english = csv_bytes(COLUMNS, ROWS, "en").decode("utf-8-sig")
    assert english.startswith("Customer,Orders,First added")


def test_a_cell_that_looks_like_a_formula_stays_text():
    rows = list(csv.reader(io.StringIO(csv_bytes(COLUMNS, ROWS, "zh_CN").decode("utf-8-sig"))))
    assert rows[2][0] == '\'=HYPERLINK("http://evil")'
    assert rows[3][0] == "'-1+2"
    sheet = load_workbook(io.BytesIO(xlsx_bytes(COLUMNS, ROWS, "zh_CN", "客户"))).active
    assert sheet["A3"].value == '\'=HYPERLINK("http://evil")'
    assert sheet["A3"].data_type == "s"


def test_xlsx_keeps_numbers_and_times_and_names_its_sheet():
    book = load_workbook(io.BytesIO(xlsx_bytes(COLUMNS, ROWS, "zh_CN", "客户列表")))
    sheet = book.active
    assert sheet.title == "客户列表"
    assert [c.value for c in sheet[1]] == ["客户", "订单", "首次添加"]
    assert sheet["B2"].value == 3 and isinstance(sheet["B2"].value, int)
    assert sheet["C2"].value == datetime(2026, 3, 10, 12, 30)
    assert sheet.max_row == 4


@pytest.mark.parametrize(
    ("raw", "expected"), [("", None), ("html", None), ("CSV", "csv"), ("xlsx", "xlsx")]
)
def test_the_format_parameter(raw, expected):
    assert requested_format({"format": raw}) == expected


@pytest.mark.parametrize("raw", ["pdf", "xls", "csv;", "x" * 300])
def test_an_unknown_format_is_refused_in_either_language(raw):
    with pytest.raises(ExportError, match="导出格式须为 csv 或 xlsx"):
        requested_format({"format": raw})
    with pytest.raises(ExportError, match="'format' must be csv or xlsx"):
        requested_format({"format": raw}, "en")


async def test_the_download_is_named_in_chinese_and_never_cached():
    response = await export_response("xlsx", "客户", COLUMNS, ROWS, "zh_CN")
    disposition = response.headers["Content-Disposition"]
    assert "filename*=UTF-8''%E5%AE%A2%E6%88%B7.xlsx" in disposition
    assert response.headers["Cache-Control"] == "no-store"
    assert response.content_type.endswith("spreadsheetml.sheet")
    assert load_workbook(io.BytesIO(response.body)).active.max_row == 4
