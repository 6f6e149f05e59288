"""JSON API: cohorts (guidebot.metrics.cohorts defines every figure; the rollup answers).

GET /api/v1/cohorts   ?metric=retention|repurchase|gmv&period=week|month
                      &by=all|store|guide|channel|campaign|playbook&from=&to=
                      one row per (week or month of the add, split value); from/to are local
                      days of the add (default: the 12 weeks up to today, GUIDEBOT_TIMEZONE)
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import Field

from guidebot.metrics.cohort_report import (
    METRICS,
    PERIODS,
    SPLITS,
    as_json,
    cohort_rows,
    default_range,
)
from guidebot.web.api.common import ApiRoutes, query_of, unprocessable
from guidebot.web.api.declare import OneOf, Query, Text
from guidebot.web.api.openapi import INTEGER, STRING, list_of, mapping, shape
from guidebot.web.keys import CLOCK, SESSIONS, SETTINGS, SOP

api = ApiRoutes()

DAY = Text(10, fmt="date", description="a local day YYYY-MM-DD (of the add)")
MAX_SPAN = timedelta(days=800)


class CohortQuery(Query):
    metric: OneOf(*METRICS, description="retention, repurchase or gmv") = "retention"
    period: OneOf(*PERIODS, description="group adds by week (from Monday) or month") = "week"
    by: OneOf(*SPLITS, description="split each period by this, fixed at the add") = "all"
    from_: DAY = Field(None, alias="from")
    to: DAY = None


CELL = shape({"value": {"type": ["number", "string", "null"]}, "count": INTEGER, "of": INTEGER})
COHORTS = shape(
    {
        "metric": STRING,
        "period": STRING,
        "by": STRING,
        "from": STRING,
        "to": STRING,
        "columns": list_of(shape({"id": STRING, "label": STRING})),
        "cohorts": list_of(
            shape(
                {
                    "period_start": STRING,
                    "key": STRING,
                    "label": STRING,
                    "members": INTEGER,
                    "cells": mapping(CELL),
                }
            )
        ),
    }
)


async def cohort_document(app: web.Application, wanted: CohortQuery) -> dict[str, Any]:
    """The cohort table the API answers and the admin heat map draws."""
    zone_today = app[CLOCK].now().astimezone(_zone(app)).date()
    start = date.fromisoformat(wanted.from_) if wanted.from_ else None
    end = date.fromisoformat(wanted.to) if wanted.to else None
    start, end = default_range(zone_today, start, end)
    if start > end:
        raise unprocessable("from 晚于 to / from is after to")
    if end - start > MAX_SPAN:
        raise unprocessable("期间最长 800 天 / a period is at most 800 days")
    async with app[SESSIONS]() as session:
        rows = await cohort_rows(session, wanted.period, wanted.by, start, end)
    if wanted.by == "playbook":  # the playbook's name, where the registry knows it
        names = {
            item.id: item.playbook.name
            for item in app[SOP].registry.loaded
            if item.playbook is not None
        }
        for row in rows:
            row.label = names.get(row.key, row.label)
    return as_json(rows, wanted.metric, wanted.period, wanted.by, start, end)


def _zone(app: web.Application) -> ZoneInfo:
    return ZoneInfo(app[SETTINGS].timezone)


@api.get(
    "/cohorts",
    "Cohorts by week or month of the add: retention, repurchase or orders and GMV per customer",
    query=CohortQuery,
    response=COHORTS,
    errors=(422,),
)
async def list_cohorts(request: web.Request) -> web.Response:
    wanted = query_of(request, CohortQuery)
    return web.json_response(await cohort_document(request.app, wanted))
