"""Cohort tables from the rollup (cohort_periods): the API's, the admin heat map's and
`guidebot report cohorts`'s. What each figure means is guidebot.metrics.cohorts'.

A table is one row per (period, split value): the week (Monday) or month of the add, the
store / guide / channel / campaign / playbook, its members, and one cell per column of the
metric: retention at day 1, 7, 30, 90; repurchase within 90, 180, 365 days; or orders and
GMV per customer. A rate cell is None while none of the row's members is due.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.config import ConfigError, database_url_from_env
from guidebot.contacts.models import Department, Guide
from guidebot.db.migrate import open_database, prepare_database
from guidebot.metrics.cohorts import (
    DIMS,
    REPURCHASE_DAYS,
    RETENTION_DAYS,
    period_start,
    refresh_cohorts,
)
from guidebot.metrics.kpi_model import yuan
from guidebot.metrics.models import COHORT_COUNTERS, NO_STORE, CohortPeriod

METRICS = ("retention", "repurchase", "gmv")
PERIODS = ("week", "month")
SPLITS = DIMS  # "all" = no split
COLUMNS = {
    "retention": tuple(f"d{n}" for n in RETENTION_DAYS),
    "repurchase": tuple(f"r{w}" for w in REPURCHASE_DAYS),
    "gmv": ("orders_per_customer", "gmv_per_customer"),
}
COLUMN_LABELS = {
    **{f"d{n}": f"{n}日留存 / day {n}" for n in RETENTION_DAYS},
    **{f"r{w}": f"{w}天复购 / {w}d repurchase" for w in REPURCHASE_DAYS},
    "orders_per_customer": "人均订单 / orders per customer",
    "gmv_per_customer": "人均GMV / GMV per customer (¥)",
}
SPLIT_LABELS = {
    "all": "全部 / all",
    "store": "门店 / store",
    "guide": "导购 / guide",
    "channel": "渠道 / channel",
    "campaign": "活动 / campaign",
    "playbook": "剧本 / playbook",
}
NONE_LABEL = "（无）/ none"
DEFAULT_WEEKS = 12


@dataclass
class CohortRow:
    start: date
    key: str
    label: str
    sums: dict[str, int] = field(default_factory=dict)

    def cell(self, column: str) -> dict[str, Any]:
        s = self.sums
        members = s.get("members", 0)
        if column.startswith("d"):
            due, count = s.get(f"{column}_due", 0), s.get(f"{column}_kept", 0)
        elif column.startswith("r"):
            due, count = s.get(f"{column}_due", 0), s.get(f"{column}_yes", 0)
        elif column == "orders_per_customer":
            value = round(s.get("orders", 0) / members, 2) if members else None
            return {"value": value, "count": s.get("orders", 0), "of": members}
        else:
            fen = s.get("gmv_fen", 0)
            value = yuan(round(fen / members)) if members else None
            return {"value": value, "count": fen, "of": members}
        return {"value": round(count / due, 4) if due else None, "count": count, "of": due}


async def cohort_rows(
    session: AsyncSession, period: str, by: str, start: date, end: date
) -> list[CohortRow]:
    """The rollup's rows of the weeks or months holding the add days `start` to `end`."""
    table = CohortPeriod.__table__
    counters = [table.c[c] for c in COHORT_COUNTERS]
    rows = await session.execute(
        select(table.c.start, table.c.key, *counters).where(
            table.c.period == period,
            table.c.dim == by,
            table.c.start >= period_start(start, period),
            table.c.start <= end,
        )
    )
    found = [
        (first, key, dict(zip(COHORT_COUNTERS, sums, strict=True)))
        for first, key, *sums in rows.all()  # one fetch, not a row at a time
    ]
    labels = await _labels(session, by, {key for _, key, _ in found})
    return [
        CohortRow(first, key, labels.get(key, key) or NONE_LABEL, sums)
        for first, key, sums in sorted(found, key=lambda f: (f[0], labels.get(f[1], f[1])))
    ]


async def _labels(session: AsyncSession, by: str, keys: set[str]) -> dict[str, str]:
    """Words for the split's values: store and guide names, never a raw id where one is known."""
    if by == "all":
        return {"*": SPLIT_LABELS["all"]}
    if by == "store":
        ids = [int(k) for k in keys if k.isdigit() and int(k) != NO_STORE]
        names = (
            dict(
                (
                    await session.execute(
                        select(Department.id, Department.name).where(Department.id.in_(ids))
                    )
                ).all()
            )
            if ids
            else {}
        )
        return {str(i): n for i, n in names.items()} | {str(NO_STORE): NONE_LABEL}
    if by == "guide":
        names = (
            dict(
                (
                    await session.execute(
                        select(Guide.userid, Guide.name).where(Guide.userid.in_(sorted(keys)))
                    )
                ).all()
            )
            if keys
            else {}
        )
        return names
    return {"": NONE_LABEL}


def as_json(
    rows: list[CohortRow], metric: str, period: str, by: str, start: date, end: date
) -> dict[str, Any]:
    return {
        "metric": metric,
        "period": period,
        "by": by,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "columns": [{"id": c, "label": COLUMN_LABELS[c]} for c in COLUMNS[metric]],
        "cohorts": [
            {
                "period_start": row.start.isoformat(),
                "key": row.key,
                "label": row.label,
                "members": row.sums.get("members", 0),
                "cells": {c: row.cell(c) for c in COLUMNS[metric]},
            }
            for row in rows
        ],
    }


def default_range(today: date, raw_from: date | None, raw_to: date | None) -> tuple[date, date]:
    end = raw_to or today
    start = raw_from or period_start(end - timedelta(weeks=DEFAULT_WEEKS - 1), "week")
    return start, end


def _shown(cell: dict[str, Any], column: str) -> str:
    value = cell["value"]
    if value is None:
        return "-"
    if column.startswith(("d", "r")):
        return f"{value * 100:.1f}%"
    return str(value)


def format_table(document: dict[str, Any]) -> str:
    columns = [c["id"] for c in document["columns"]]
    head = ["期间 / period", SPLIT_LABELS[document["by"]], "客户 / members"]
    head += [c["label"] for c in document["columns"]]
    lines = [head]
    for row in document["cohorts"]:
        cells = [_shown(row["cells"][c], c) for c in columns]
        lines.append([row["period_start"], row["label"], str(row["members"]), *cells])
    widths = [max(_width(line[i]) for line in lines) for i in range(len(head))]
    return "".join(
        "  ".join(cell + " " * (widths[i] - _width(cell)) for i, cell in enumerate(line)).rstrip()
        + "\n"
        for line in lines
    )


def _width(text: str) -> int:
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def format_csv(document: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = [c["id"] for c in document["columns"]]
    writer.writerow(["period_start", document["by"], "label", "members", *columns])
    for row in document["cohorts"]:
        values = [row["cells"][c]["value"] for c in columns]
        writer.writerow([row["period_start"], row["key"], row["label"], row["members"], *values])
    return buffer.getvalue()


async def report_cohorts(
    url: str,
    *,
    metric: str,
    period: str,
    by: str,
    start: date | None,
    end: date | None,
    fmt: str,
    timezone: str,
    now: datetime,
) -> str:
    async with open_database(url, prepare=False, pool_size=1) as sessions:
        await refresh_cohorts(sessions, timezone, now)  # catch up first, then read the rollup
        first, last = default_range(now.astimezone(ZoneInfo(timezone)).date(), start, end)
        async with sessions() as session:
            rows = await cohort_rows(session, period, by, first, last)
    document = as_json(rows, metric, period, by, first, last)
    if fmt == "json":
        return json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    return format_csv(document) if fmt == "csv" else format_table(document)


def report_cohorts_command(
    *, metric: str, period: str, by: str, raw_from: str | None, raw_to: str | None, fmt: str
) -> int:
    """The CLI entry: GUIDEBOT_DATABASE_URL and GUIDEBOT_TIMEZONE only (no WeCom settings)."""
    timezone = os.environ.get("GUIDEBOT_TIMEZONE", "").strip() or "Asia/Shanghai"
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("GUIDEBOT_TIMEZONE", f"unknown IANA time zone {timezone!r}") from None
    try:
        start = date.fromisoformat(raw_from) if raw_from else None
        end = date.fromisoformat(raw_to) if raw_to else None
    except ValueError as exc:
        sys.stderr.write(f"guidebot report cohorts: --from/--to: {exc} (YYYY-MM-DD)\n")
        return 2
    if start and end and start > end:
        sys.stderr.write("guidebot report cohorts: --from is after --to\n")
        return 2
    url = database_url_from_env()
    prepare_database(url)
    text = asyncio.run(
        report_cohorts(
            url,
            metric=metric,
            period=period,
            by=by,
            start=start,
            end=end,
            fmt=fmt,
            timezone=timezone,
            now=datetime.now(UTC),
        )
    )
    sys.stdout.write(text)
    return 0
