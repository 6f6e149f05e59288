"""/admin/audit: the audit trail for HQ (who changed what, when, from where), newest first."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from guidebot import i18n
from guidebot.web import export_tables, exports
from guidebot.web.api.privacy import AuditFilter, read_trail
from guidebot.web.auth import PRINCIPAL
from guidebot.web.keys import SETTINGS
from guidebot.web.lang import language_of
from guidebot.web.pages import _, _hq_only, _signed_in, render
from guidebot.web.tables import EXPORT_ROWS

N_ = i18n.N_
PER_PAGE = 50

# What each action is, in words (Chinese first); an action not listed shows its code.
ACTIONS = {
    "account.save": N_("Account saved"),
    "content.create": N_("Content added"),
    "content.update": N_("Content changed"),
    "content.delete": N_("Content deleted"),
    "content.import": N_("Content imported"),
    "mass_send.create": N_("Mass send created"),
    "contact_way.create": N_("Contact way created"),
    "transfer.request": N_("Customers transferred"),
    "group_join_way.create": N_("Group join code created"),
    "group_join_way.delete": N_("Group join code deleted"),
    "group_welcome.save": N_("Store group welcome set"),
    "group_welcome.delete": N_("Store group welcome removed"),
    "group_label.add": N_("Group label added"),
    "group_label.remove": N_("Group label removed"),
    "store.update": N_("Store settings changed"),
    "order.post": N_("Order posted"),
    "order.refund": N_("Order refunded"),
    "playbooks.reload": N_("Playbooks reloaded"),
    "playbook.save": N_("Playbook saved"),
    "task.done": N_("Task marked done"),
    "task.skip": N_("Task skipped"),
    "task.snooze": N_("Task put off"),
    "inbox.replay": N_("Callbacks replayed"),
    "inbox.dismiss": N_("Failed callbacks dismissed"),
    "jobs.retry": N_("Parked rows retried"),
    "privacy.erase": N_("Customer's data erased"),
    "privacy.export": N_("Customer's data exported"),
}
ROLES = {"hq": N_("HQ"), "manager": N_("Manager"), "cli": N_("Command line")}


def _change(value: Any) -> str:
    return "" if value is None else json.dumps(value, ensure_ascii=False, indent=1)


async def audit_page(request: web.Request) -> web.StreamResponse:
    _hq_only(await _signed_in(request))
    given = {k: v.strip() for k, v in request.query.items() if v.strip()}
    wanted_page = given.pop("page", "1")
    raw = {k: given[k] for k in ("from", "to", "actor", "action") if k in given}
    try:
        digits = wanted_page.isascii() and wanted_page.isdigit() and len(wanted_page) <= 6
        page = max(1, min(int(wanted_page), 100_000)) if digits else 1
        wanted = AuditFilter.model_validate({**raw, "page": page, "limit": PER_PAGE})
    except ValidationError:
        raise web.HTTPBadRequest(
            text=_("dates are YYYY-MM-DD (or an ISO 8601 instant)", request)
        ) from None
    lang = language_of(request, request[PRINCIPAL])
    fmt = exports.export_format(request, lang)
    if fmt:  # every entry the filters match, not one page of them
        exports.chosen_table(request, lang, ("audit",))
        wanted = wanted.model_copy(update={"page": 1, "limit": EXPORT_ROWS})
    entries, total = await read_trail(request.app, wanted)
    tz = request.app[SETTINGS].tz
    rows = [
        {
            "at": e.at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"),
            "actor": e.actor,
            "role": _(ROLES[e.role], request) if e.role in ROLES else e.role,
            "ip": e.ip or "—",
            "action": _(ACTIONS[e.action], request) if e.action in ACTIONS else e.action,
            "target": e.target or "—",
            "before": _change(e.before),
            "after": _change(e.after),
        }
        for e in entries
    ]
    if fmt:
        columns = export_tables.audit_columns(lang)
        return await exports.respond(fmt, N_("Audit trail"), columns, rows, lang)
    return render(
        request,
        "audit.html",
        {
            "rows": rows,
            "total": total,
            "page": page,
            "pages": max(1, -(-total // PER_PAGE)),
            "filters": raw,
            "actions": {code: _(words, request) for code, words in ACTIONS.items()},
        },
    )


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/admin/audit", audit_page)
