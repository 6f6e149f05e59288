"""JSON API: lifecycle stages (guidebot.contacts.lifecycle defines them).

GET /api/v1/stages?by=store|guide&from=&to=   customers per stage now, per store or guide,
                                              with the stages' names (新客 / new ...); with
                                              from/to, the daily snapshots of those local days
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from typing import Any

from aiohttp import web
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.lifecycle import stage_counts, stage_history, stage_name
from guidebot.contacts.models import Department, Guide, Stage
from guidebot.web.api.common import ApiRoutes, query_of, unprocessable
from guidebot.web.api.declare import OneOf, Query, Text
from guidebot.web.api.openapi import INTEGER, STRING, list_of, mapping, maybe, shape
from guidebot.web.keys import SESSIONS

api = ApiRoutes()

DAY = Text(10, fmt="date", description="a local day YYYY-MM-DD")
MAX_DAYS = 366
NONE = "（无）/ none"


class StageQuery(Query):
    by: OneOf("store", "guide", description="count per store or per guide") = "store"
    from_: DAY = Field(None, alias="from")
    to: DAY = None


ROWS = list_of(shape({"key": maybe(STRING), "label": STRING, "counts": mapping(INTEGER)}))
STAGES = shape(
    {
        "by": STRING,
        "names": mapping(STRING),
        "rows": ROWS,
        "days": list_of(shape({"day": STRING, "rows": ROWS})),
    },
    optional=("days",),
)


async def _labels(session: AsyncSession, by: str, keys: list[str]) -> dict[str, str]:
    if by == "store":
        ids = [int(k) for k in keys if k.isdigit()]
        found = await session.execute(
            select(Department.id, Department.name).where(Department.id.in_(ids))
        )
        return {str(i): name for i, name in found.all()}
    found = await session.execute(select(Guide.userid, Guide.name).where(Guide.userid.in_(keys)))
    return dict(found.all())


def _rows(counts: dict[str, dict[str, int]], labels: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {"key": key or None, "label": labels.get(key, key) if key else NONE, "counts": value}
        for key, value in sorted(counts.items(), key=lambda kv: (not kv[0], kv[0]))
    ]


def _blank() -> dict[str, int]:
    return dict.fromkeys(Stage.ALL, 0)


@api.get(
    "/stages",
    "Customers per lifecycle stage (new, engaged, first purchase, repeat buyer, dormant, lost) "
    "per store or guide: now, and with from/to each day's snapshot",
    query=StageQuery,
    response=STAGES,
    errors=(422,),
)
async def list_stages(request: web.Request) -> web.Response:
    wanted = query_of(request, StageQuery)
    first = date.fromisoformat(wanted.from_) if wanted.from_ else None
    last = date.fromisoformat(wanted.to) if wanted.to else first
    if first is None and last is not None:
        first = last
    if first is not None and (last < first or last - first > timedelta(days=MAX_DAYS)):
        raise unprocessable(
            "from 须不晚于 to，且最多 366 天 / from must not be after to, at most 366 days"
        )
    now: dict[str, dict[str, int]] = defaultdict(_blank)
    by_day: dict[date, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(_blank))
    async with request.app[SESSIONS]() as session:
        for key, stage, n in await stage_counts(session, wanted.by):
            now["" if key is None else str(key)][stage] = n
        if first is not None:
            for day, key, stage, n in await stage_history(session, wanted.by, first, last):
                by_day[day][key][stage] = n
        keys = sorted({*now, *(k for day in by_day.values() for k in day)} - {""})
        labels = await _labels(session, wanted.by, keys)
    body: dict[str, Any] = {
        "by": wanted.by,
        "names": {stage: stage_name(stage) for stage in Stage.ALL},
        "rows": _rows(now, labels),
    }
    if first is not None:
        body["days"] = [
            {"day": day.isoformat(), "rows": _rows(counts, labels)}
            for day, counts in sorted(by_day.items())
        ]
    return web.json_response(body)
