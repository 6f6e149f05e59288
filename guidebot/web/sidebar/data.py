"""What the sidebar page reads: the guide's customers, one customer's profile, the content the
guide may send. Every answer needs the guide's session (401 without) and shows only the guide's
own customers."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from aiohttp import web

from guidebot.contacts import lifecycle, queries
from guidebot.contacts.models import Customer, Department, RelationStatus
from guidebot.content import service
from guidebot.groups import queries as group_queries
from guidebot.sop import queries as tasks
from guidebot.web.api.common import iso
from guidebot.web.auth import current_guide
from guidebot.web.keys import CLOCK, SESSIONS, SETTINGS
from guidebot.web.responses import error_response


async def my_customers(request: web.Request) -> web.Response:
    guide = await current_guide(request)
    if guide is None:
        return error_response(401, "unauthorized", "sign in first")
    async with request.app[SESSIONS]() as session:
        found = await queries.search_customers(
            session, guide=guide.userid, status=RelationStatus.ACTIVE, order="name", per_page=500
        )
    customers = [
        {"external_userid": c.external_userid, "name": c.name, "remark": relation.remark}
        for c in found.customers
        for relation in found.relations[c.external_userid]
        if relation.guide_userid == guide.userid
    ]
    return web.json_response({"customers": customers})


async def customer_profile(request: web.Request) -> web.Response:
    guide = await current_guide(request)
    if guide is None:
        return error_response(401, "unauthorized", "sign in first")
    ext = request.query.get("external_userid", "")
    async with request.app[SESSIONS]() as session:
        relation = await queries.relation_between(session, guide.userid, ext)
        customer = await session.get(Customer, ext) if relation is not None else None
        if relation is None or customer is None:
            return error_response(404, "not_found", "not one of your customers")
        store = await session.get(Department, relation.store_id) if relation.store_id else None
        # The day the relation began, on its store's calendar (not the guide's store now).
        dated = store or await service.guide_store(session, guide.userid, request.app[CLOCK].now())
        zone = ZoneInfo(
            dated.timezone if dated and dated.timezone else request.app[SETTINGS].timezone
        )
        since_day = (
            relation.created_at.astimezone(zone).date().isoformat() if relation.created_at else None
        )
        open_tasks = await tasks.open_tasks(session, guide.userid, customer=ext)
        enrolled = await tasks.enrollments(session, guide.userid, ext)
        opens = await service.recent_opens(session, guide=guide.userid, customer=ext, limit=5)
        forwards = await service.recent_forwards(session, guide=guide.userid, customer=ext, limit=5)
        sent = [{"item": i.id, "title": i.title, "sent_at": iso(f.sent_at)} for f, i in forwards]
        stage = await lifecycle.stage_of(session, ext)  # 新客, 互动中, 首购 ...
        in_groups = await group_queries.customer_groups(session, ext)
    return web.json_response(
        {
            "customer": {
                "external_userid": customer.external_userid,
                "name": customer.name,
                "avatar": customer.avatar,
                "gender": customer.gender,
            },
            "relation": {
                "status": relation.status,
                "remark": relation.remark,
                "since": iso(relation.created_at),
                "since_day": since_day,
                "tags": [t.get("name") or t.get("id") for t in relation.tags or []],
                "store": {"code": store.code, "name": store.name} if store else None,
            },
            "stage": {**stage, "since": iso(stage["since"])} if stage else None,
            "enrollments": enrolled,
            "tasks": [t.as_json() for t in open_tasks],
            "recent_opens": [
                {"item": i.id, "title": i.title, "opened_at": iso(o.opened_at)} for o, i in opens
            ],
            "recent_forwards": sent,
            # The customer groups they are in now (guidebot.groups).
            "groups": [
                {
                    "chat_id": v.group.chat_id,
                    "name": v.group.name,
                    "joined_at": iso(v.member.joined_at),
                }
                for v in in_groups
            ],
        }
    )


async def content_list(request: web.Request) -> web.Response:
    guide = await current_guide(request)
    if guide is None:
        return error_response(401, "unauthorized", "sign in first")
    now = request.app[CLOCK].now()
    async with request.app[SESSIONS]() as session:
        store = await service.guide_store(session, guide.userid, now)
        items, total = await service.search_items(
            session,
            words=request.query.get("q"),
            tag=request.query.get("tag") or None,
            live_at=now,
            store_code=store.code if store else None,
            restrict_store=True,
            limit=30,
        )
    return web.json_response(
        {
            "items": [
                {
                    "id": i.id,
                    "key": i.key,
                    "kind": i.kind,
                    "title": i.title,
                    "summary": i.summary,
                    "cover_url": i.cover_url,
                    "tags": i.tags or [],
                }
                for i in items
            ],
            "total": total,
        }
    )
