"""/admin/customers/{external_userid}: one customer as HQ or a store manager sees them.

The profile, each relation with a guide (status, store, channel, remark, tags), the customer
groups they are in, the relation timeline, every playbook task (settled ones too), the content
forwarded to them and what they opened, and their orders. Each part comes from its domain's
own query (contacts, groups, sop, content, metrics); this module only narrows them to what the
signed-in person may see: HQ sees all of it, a store manager what happened with their stores'
relations and their stores' groups, and a customer with no such relation is a 404 to them, the
same answer as a customer who does not exist.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select

from guidebot import i18n
from guidebot.contacts import queries, reading_hours
from guidebot.contacts.errors import NotFound
from guidebot.contacts.models import Department, Guide
from guidebot.content import service
from guidebot.groups.queries import customer_groups
from guidebot.metrics.orders import customer_orders
from guidebot.sop.queries import customer_tasks
from guidebot.web import export_tables, exports
from guidebot.web.auth import Principal, relation_visible
from guidebot.web.keys import CLOCK, SESSIONS, SETTINGS
from guidebot.web.lang import language_of
from guidebot.web.pages import _signed_in, _zone, render
from guidebot.web.tables import EXPORT_ROWS

SHOWN = 100  # rows per part: the latest; the API and the export reach the rest
N_ = i18n.N_
TABLE_NAMES = {
    "relations": N_("Guides"),
    "groups": N_("Customer groups"),
    "timeline": N_("Timeline"),
    "tasks": N_("Playbook tasks"),
    "forwards": N_("Content forwarded"),
    "opens": N_("Content opened"),
    "orders": N_("Orders"),
}


async def customer_page(request: web.Request) -> web.StreamResponse:
    who = await _signed_in(request)
    ext = request.match_info["external_userid"]
    lang = language_of(request, who)
    fmt = exports.export_format(request, lang)
    shown = EXPORT_ROWS if fmt else SHOWN
    async with request.app[SESSIONS]() as session:
        try:
            detail = await queries.get_customer(session, ext)
        except NotFound:
            raise web.HTTPNotFound(text=_nobody(lang)) from None
        relations = [
            r for r in detail.relations if relation_visible(who, r.guide_userid, r.store_id)
        ]
        if not relations and not who.is_hq:
            raise web.HTTPNotFound(text=_nobody(lang))
        mine = None if who.is_hq else {r.guide_userid for r in relations}
        parts = await _parts(session, who, ext, mine, shown)
        groups = [
            g
            for g in await customer_groups(session, ext)
            if who.is_hq or (g.group.store_id is not None and g.group.store_id in who.store_ids)
        ]
        timeline = [e for e in detail.timeline if relation_visible(who, e.guide_userid, e.store_id)]
        guides, stores = await _names(session, relations, timeline, parts, groups)
        best_hour = await reading_hours.learned_hour(
            session, ext, request.app[SETTINGS].timezone, request.app[CLOCK].now().date()
        )
    if fmt:
        names = {"guide_names": guides, "store_names": stores}
        tables = export_tables.customer_tables(names, _zone(request), lang)
        table = exports.chosen_table(request, lang, list(tables))
        rows = {"relations": relations, "groups": groups, "timeline": list(reversed(timeline))}
        name = f"{detail.customer.name or ext} · {i18n.gettext(TABLE_NAMES[table], lang)}"
        return await exports.respond(
            fmt, name, tables[table], rows.get(table, parts.get(table)), lang
        )
    return render(
        request,
        "customer.html",
        {
            "customer": detail.customer,
            "relations": relations,
            "timeline": list(reversed(timeline))[:SHOWN],
            "guide_names": guides,
            "store_names": stores,
            "groups": groups,
            "zone": _zone(request),
            "best_hour": best_hour,
            **parts,
        },
    )


async def _parts(
    session, who: Principal, ext: str, mine: set[str] | None, limit: int
) -> dict[str, Any]:
    """Tasks, forwards, opens and orders of the customer's, narrowed to the guides `mine`."""
    guides = sorted(mine) if mine is not None else None
    tasks = await customer_tasks(session, ext, guides=guides, limit=limit)
    forwards = await service.recent_forwards(session, guide=None, customer=ext, limit=limit)
    opens = await service.recent_opens(session, guide=None, customer=ext, limit=limit)
    orders = await customer_orders(session, ext, limit=limit)
    if mine is not None:
        forwards = [(f, i) for f, i in forwards if f.guide_userid in mine]
        opens = [(o, i) for o, i in opens if o.guide_userid in mine]
        orders = [
            o
            for o in orders
            if o.guide_userid in mine or (o.store_id is not None and o.store_id in who.store_ids)
        ]
    return {"tasks": tasks, "forwards": forwards, "opens": opens, "orders": orders}


async def _names(
    session, relations, timeline, parts, groups
) -> tuple[dict[str, str], dict[int, str]]:
    """Guides and stores by name, never by id, for everyone the page mentions."""
    userids = {r.guide_userid for r in relations} | {e.guide_userid for e in timeline}
    userids |= {g.group.owner_userid for g in groups if g.group.owner_userid}
    userids |= {g.member.invitor_userid for g in groups if g.member.invitor_userid}
    userids |= {e.counterpart_userid for e in timeline if e.counterpart_userid}
    userids |= {t.guide_userid for t in parts["tasks"]}
    userids |= {f.guide_userid for f, _ in parts["forwards"]}
    userids |= {o.guide_userid for o in parts["orders"] if o.guide_userid}
    store_ids = {r.store_id for r in relations if r.store_id is not None}
    store_ids |= {e.store_id for e in timeline if e.store_id is not None}
    store_ids |= {o.store_id for o in parts["orders"] if o.store_id is not None}
    store_ids |= {g.group.store_id for g in groups if g.group.store_id is not None}
    guides = await session.execute(
        select(Guide.userid, Guide.name).where(Guide.userid.in_(sorted(userids)))
    )
    stores = await session.execute(
        select(Department.id, Department.name).where(Department.id.in_(sorted(store_ids)))
    )
    return dict(guides.all()), dict(stores.all())


def _nobody(lang: str) -> str:
    return i18n.gettext("No such customer, or not one of your stores' customers.", lang)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/admin/customers/{external_userid}", customer_page)
