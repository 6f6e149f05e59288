"""/admin/playbooks (HQ): every playbook file the registry loaded, with its status, its
checker's findings (coded, in the page's language, at line:col, never the server's path), its
running enrollments, its goal, the customers it missed while broken, and each step's tasks by
status, with the tasks a stop condition ended shown apart from those a guide skipped."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from guidebot import i18n
from guidebot.metrics.report import guide_names
from guidebot.sop import check_language
from guidebot.sop.loader import PlaybookError
from guidebot.sop.queries import stopped_counts
from guidebot.web import export_tables, exports
from guidebot.web.api.sop import playbook_listing
from guidebot.web.auth import PRINCIPAL
from guidebot.web.keys import SESSIONS, SETTINGS, SOP
from guidebot.web.lang import language_of
from guidebot.web.pages import _hq_only, _signed_in, render

# A step's columns: a stop condition's skips apart from the guide's (stopped, with reasons).
STEP_COLUMNS = ("pending", "sent", "done", "skipped", "stopped", "expired", "failed", "unknown")


async def playbooks_page(request: web.Request) -> web.StreamResponse:
    _hq_only(await _signed_in(request))
    listing = await playbook_listing(request.app)
    missed = [m for p in listing for m in p["missed"]["customers"]]
    async with request.app[SESSIONS]() as session:
        stopped = await stopped_counts(session)
        names = await guide_names(session, {m["guide_userid"] for m in missed})
    lang = language_of(request, request.get(PRINCIPAL))
    zone = ZoneInfo(request.app[SETTINGS].timezone)
    for customer in missed:  # the guide by name, the moment in HQ's time zone
        customer["guide"] = names.get(customer["guide_userid"], customer["guide_userid"])
        at = datetime.fromisoformat(customer["at"]) if customer.get("at") else None
        customer["when"] = i18n.format_datetime(at.astimezone(zone) if at else None, lang)
    loaded = {item.id: item for item in request.app[SOP].registry.loaded}
    for playbook in listing:
        found = loaded.get(playbook["id"])
        # The checker's findings, coded and in the page's language, without the server's path.
        playbook["problems"] = (
            [_problem(error, lang) for error in (*found.errors, *found.warnings) if found]
            if found
            else []
        )
        for step in playbook["steps"]:
            step["name"] = _step_name(found, step["id"], lang)
            reasons = stopped.get(playbook["id"], {}).get(step["id"], {})
            step["stopped"] = reasons
            shown = {s: step["counts"].get(s, 0) for s in STEP_COLUMNS}
            shown["stopped"] = sum(reasons.values())
            shown["skipped"] = max(0, shown["skipped"] - shown["stopped"])
            step["shown"] = shown
    if fmt := exports.export_format(request, lang):
        steps = {f"steps-{p['id']}": p for p in listing if p["steps"]}
        playbook = steps.get(exports.chosen_table(request, lang, list(steps) or ["steps"]))
        if playbook is None:  # no playbook with steps to export
            raise web.HTTPNotFound()
        columns = export_tables.step_columns(STEP_COLUMNS, lang)
        name = playbook.get("name") or playbook["id"]
        return await exports.respond(fmt, name, columns, playbook["steps"], lang)
    return render(request, "playbooks.html", {"playbooks": listing, "step_columns": STEP_COLUMNS})


def _step_name(found, step_id: str, lang: str) -> str:
    """What guides read for the step: its name, else its action's (a retired step: its id)."""
    steps = {s.id: s for s in found.playbook.steps} if found and found.playbook else {}
    step = steps.get(step_id)
    if step is None:
        return step_id
    return step.name or i18n.label("action", step.action, lang)


def _problem(error: PlaybookError, lang: str) -> dict[str, Any]:
    code, message = check_language.translate(error.message, lang)
    return {
        "where": f"{error.line}:{error.col}",
        "path": error.path,
        "code": code,
        "message": message,
    }


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/admin/playbooks", playbooks_page)
