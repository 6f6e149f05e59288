"""/admin/groups: the customer groups of the stores the signed-in person may see, with the
owner guide, the size, the customers who joined and left in the period, the net and the last
membership fact; /admin/groups/{chat_id}: one group's members and its membership history.

HQ sees every group (or one store's, with ?store=); a manager their stores' groups only (a
group's store is its owner's store when it was created or changed owner), and any other group
is a 404 to them, the same answer as a group that does not exist. The list exports to CSV and
Excel with the page's filters and words (guidebot.web.exports).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from urllib.parse import quote

from aiohttp import web
from sqlalchemy import select

from guidebot import i18n
from guidebot.contacts.behavior import china_today
from guidebot.contacts.errors import Invalid, NotFound
from guidebot.contacts.models import Customer, Department, Guide
from guidebot.groups import queries, statistic
from guidebot.groups.labels import change_label
from guidebot.groups.models import GroupMember
from guidebot.metrics import kpis
from guidebot.metrics.report import Period
from guidebot.web import export_tables, exports
from guidebot.web.audited import actor_of, record_change
from guidebot.web.auth import PRINCIPAL, Principal, csrf_ok
from guidebot.web.keys import CLOCK, SESSIONS, SETTINGS
from guidebot.web.lang import language_of
from guidebot.web.pages import (
    _chosen_store,
    _hq_only,
    _period,
    _signed_in,
    _visible_stores,
    _zone,
    render,
)

N_ = i18n.N_
STATUSES = ("active", "dismissed", "all")
TABLE_NAMES = {"members": N_("Members"), "history": N_("Membership history")}


def _window(period: Period, zone) -> tuple[datetime, datetime]:
    """The period's local days as UTC instants [since, until)."""
    since = datetime.combine(period.first, time(0), zone).astimezone(UTC)
    until = datetime.combine(period.last + timedelta(days=1), time(0), zone).astimezone(UTC)
    return since, until


def _visible(who: Principal, store_id: int | None) -> bool:
    return who.is_hq or (store_id is not None and store_id in who.store_ids)


async def groups_page(request: web.Request) -> web.StreamResponse:
    who = await _signed_in(request)
    lang = language_of(request, who)
    period = _period(request)
    fmt = exports.export_format(request, lang)
    status = request.query.get("status", "active")
    if status not in STATUSES:
        status = "active"
    async with request.app[SESSIONS]() as session:
        stores = await _visible_stores(session, who)
        store = _chosen_store(request, who, stores) if request.query.get("store") else None
        found = await queries.list_groups(
            session, store=store.id if store else None, status=None if status == "all" else status
        )
        found = [g for g in found if _visible(who, g.group.store_id)]
        since, until = _window(period, _zone(request))
        activity = await queries.group_activity(
            session, [g.group.chat_id for g in found], since, until
        )
        owners = await _guide_names(session, {g.group.owner_userid for g in found})
        store_names = await _store_names(session, {g.group.store_id for g in found})
        # WeCom's chat activity of these groups' owners (every owner's for HQ's whole corp).
        everyone = who.is_hq and store is None and status != "dismissed"
        wanted = None if everyone else sorted({g.group.owner_userid for g in found} - {None})
        wecom = await statistic.chat_activity(session, wanted, period.first, period.last)
    none = queries.GroupActivity(0, 0, None)
    rows = [
        {
            "group": g.group,
            "owner": owners.get(g.group.owner_userid or "", g.group.owner_userid),
            "store": store_names.get(g.group.store_id),
            "members": g.members,
            "customers": g.customers,
            "activity": activity.get(g.group.chat_id, none),
        }
        for g in found
    ]
    rows.sort(key=lambda r: (-r["activity"].net, -r["members"], r["group"].chat_id))
    if fmt:
        exports.chosen_table(request, lang, ("groups",))
        return await exports.respond(fmt, N_("Customer groups"), group_columns(lang), rows, lang)
    return render(
        request,
        "groups.html",
        {
            "period": period,
            "stores": stores,
            "store": store,
            "status": status,
            "rows": rows,
            "zone": _zone(request),
            "wecom": wecom,
            "wecom_names": statistic.FIGURES,
        },
    )


def group_columns(lang: str) -> list[exports.Column]:
    Column = exports.Column
    return [
        Column(N_("Group"), lambda r: r["group"].name or i18n.gettext("(no name)", lang)),
        Column(N_("Owner"), lambda r: r["owner"]),
        Column(N_("Store"), lambda r: r["store"]),
        Column(N_("Members"), lambda r: r["members"]),
        Column(N_("Customers"), lambda r: r["customers"]),
        *[
            Column(kpis.KPI_BY_NAME[name].title, value)
            for name, value in (
                ("group_new_members", lambda r: r["activity"].joined),
                ("group_members_left", lambda r: r["activity"].left),
                ("group_net", lambda r: r["activity"].net),
            )
        ],
        Column(N_("Last activity"), lambda r: r["activity"].last),
    ]


async def group_page(request: web.Request, label_error: str | None = None) -> web.StreamResponse:
    who = await _signed_in(request)
    lang = language_of(request, who)
    chat_id = request.match_info["chat_id"]
    async with request.app[SESSIONS]() as session:
        try:
            detail = await queries.group_detail(session, chat_id)
        except NotFound:
            raise web.HTTPNotFound(text=_no_group(lang)) from None
        group = detail.summary.group
        if not _visible(who, group.store_id):
            raise web.HTTPNotFound(text=_no_group(lang))
        userids = {group.owner_userid} | {e.owner_userid for e in detail.history}
        userids |= {m.member_id for m in detail.members}
        userids |= {m.invitor_userid for m in detail.members}
        guides = await _guide_names(session, userids)
        stores = await _store_names(session, {group.store_id})
        names = await _member_names(session, chat_id)
        yesterday = china_today(request.app[CLOCK].now()) - timedelta(days=1)
        wecom = await statistic.chat_activity(
            session, [group.owner_userid or ""], yesterday - timedelta(days=29), yesterday
        )
    if fmt := exports.export_format(request, lang):
        tables = export_tables.group_tables(guides, names, _zone(request), lang)
        table = exports.chosen_table(request, lang, list(tables))
        rows = detail.members if table == "members" else detail.history
        name = f"{group.name or chat_id} · {i18n.gettext(TABLE_NAMES[table], lang)}"
        return await exports.respond(fmt, name, tables[table], rows, lang)
    return render(
        request,
        "group.html",
        {
            "detail": detail,
            "group": group,
            "store_name": stores.get(group.store_id),
            "guide_names": guides,
            "member_names": names,
            "zone": _zone(request),
            "wecom": wecom,
            "wecom_names": statistic.FIGURES,
            "label_error": label_error,
        },
        status=422 if label_error else 200,
    )


async def group_labels(request: web.Request) -> web.StreamResponse:
    """HQ puts a label on the group or takes one off (`action` add | remove); audited."""
    who = await _signed_in(request)
    _hq_only(who)
    form = await request.post()
    secret = request.app[SETTINGS].secret_key
    if not csrf_ok(secret, who.session or "", str(form.get("csrf", ""))):
        raise web.HTTPForbidden(text=i18n.gettext("Missing or wrong CSRF token.", _lang(request)))
    chat_id, label = request.match_info["chat_id"], str(form.get("label", ""))
    adding = form.get("action") != "remove"
    try:
        async with request.app[SESSIONS]() as session, session.begin():
            change = await change_label(
                session,
                chat_id,
                label,
                adding=adding,
                by=actor_of(request).name,
                now=request.app[CLOCK].now(),
            )
            if change.changed:
                record_change(request, session, **change.audit())
    except NotFound:
        raise web.HTTPNotFound(text=_no_group(_lang(request))) from None
    except Invalid:
        message = i18n.gettext(
            "A group label is 1 to 32 characters, without commas or spaces at either end.",
            _lang(request),
        )
        return await group_page(request, label_error=message)
    raise web.HTTPSeeOther(f"/admin/groups/{quote(chat_id, safe='')}#labels")


def _lang(request: web.Request) -> str:
    return language_of(request, request.get(PRINCIPAL))


async def _guide_names(session, userids: set[str | None]) -> dict[str, str]:
    wanted = sorted(u for u in userids if u)
    if not wanted:
        return {}
    rows = await session.execute(select(Guide.userid, Guide.name).where(Guide.userid.in_(wanted)))
    return dict(rows.all())


async def _member_names(session, chat_id: str) -> dict[str, str]:
    """Everyone who is or was in the group by name: WeCom's name for them in the group, else
    the customer's profile name."""
    rows = await session.execute(
        select(GroupMember.member_id, GroupMember.name, GroupMember.group_nickname, Customer.name)
        .outerjoin(Customer, Customer.external_userid == GroupMember.member_id)
        .where(GroupMember.chat_id == chat_id)
    )
    return {
        member: name or nickname or profile
        for member, name, nickname, profile in rows
        if name or nickname or profile
    }


async def _store_names(session, store_ids: set[int | None]) -> dict[int, str]:
    wanted = sorted(s for s in store_ids if s is not None)
    if not wanted:
        return {}
    rows = await session.execute(
        select(Department.id, Department.name).where(Department.id.in_(wanted))
    )
    return dict(rows.all())


def _no_group(lang: str) -> str:
    return i18n.gettext("No such customer group, or not one of your stores' groups.", lang)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/admin/groups", groups_page)
    app.router.add_get("/admin/groups/{chat_id}", group_page)
    app.router.add_post("/admin/groups/{chat_id}/labels", group_labels)
