"""JSON API: lifecycle stages (guidebot.contacts.lifecycle defines them).

GET /api/v1/stages?by=store|guide     customers per stage now, per store or guide, with the
                                      stages' names (新客 / new ...)
"""

from __future__ import annotations

from collections import defaultdict

from aiohttp import web
from sqlalchemy import select

from guidebot.contacts.lifecycle import stage_counts, stage_name
from guidebot.contacts.models import Department, Guide, Stage
from guidebot.web.api.common import ApiRoutes, query_of
from guidebot.web.api.declare import OneOf, Query
from guidebot.web.api.openapi import INTEGER, STRING, list_of, mapping, maybe, shape
from guidebot.web.keys import SESSIONS

api = ApiRoutes()


class StageQuery(Query):
    by: OneOf("store", "guide", description="count per store or per guide") = "store"


STAGES = shape(
    {
        "by": STRING,
        "names": mapping(STRING),
        "rows": list_of(shape({"key": maybe(STRING), "label": STRING, "counts": mapping(INTEGER)})),
    }
)


@api.get(
    "/stages",
    "Customers per lifecycle stage now (new, engaged, first purchase, repeat buyer, dormant, "
    "lost), per store or guide",
    query=StageQuery,
    response=STAGES,
)
async def list_stages(request: web.Request) -> web.Response:
    by = query_of(request, StageQuery).by
    counts: dict[str | None, dict[str, int]] = defaultdict(lambda: dict.fromkeys(Stage.ALL, 0))
    async with request.app[SESSIONS]() as session:
        for key, stage, n in await stage_counts(session, by):
            counts[None if key is None else str(key)][stage] = n
        model, column = (Department, Department.id) if by == "store" else (Guide, Guide.userid)
        wanted = [k for k in counts if k is not None]
        keys = [int(k) for k in wanted] if by == "store" else wanted
        names = dict(
            (await session.execute(select(column, model.name).where(column.in_(keys)))).all()
        )
    rows = [
        {
            "key": key,
            "label": names.get(int(key) if by == "store" else key, key)
            if key is not None
            else "（无）/ none",
            "counts": value,
        }
        for key, value in sorted(counts.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
    ]
    names_out = {stage: stage_name(stage) for stage in Stage.ALL}
    return web.json_response({"by": by, "names": names_out, "rows": rows})
