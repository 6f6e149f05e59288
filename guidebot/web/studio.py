"""The playbook studio page, /admin/playbooks/{id} (HQ only).

The playbook as a timeline (trigger, steps on a day axis, send window, stop conditions, goal),
each step's funnel from its task rows, the goal's met / open / missed, the editor (the vendored
CodeMirror 6 bundle and templates/web/static/studio.js, which call the studio's API in
guidebot.web.api.playbooks as HQ types), the preview and the saved versions with their diffs.
The words on the page are the template's (templates/web/admin/studio.html); no server path is
shown: the file is named by its file name only.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from guidebot import i18n
from guidebot.sop import queries, studio
from guidebot.sop.holdout import lift_by_playbook
from guidebot.sop.loader import LoadedPlaybook
from guidebot.sop.playbook import Playbook
from guidebot.sop.trigger_words import written_values
from guidebot.sop.versions import current_file, history, read_text
from guidebot.web import export_tables, exports
from guidebot.web.api.playbooks import ID_PATTERN
from guidebot.web.api.sop import holdout_view
from guidebot.web.keys import CLOCK, SESSIONS, SETTINGS, SOP
from guidebot.web.lang import language_of
from guidebot.web.pages import _hq_only, _json_script, _signed_in, _visible_stores, render


async def studio_page(request: web.Request) -> web.StreamResponse:
    who = await _signed_in(request)
    _hq_only(who)
    playbook_id = request.match_info["id"]
    registry = request.app[SOP].registry
    loaded = current_file(registry, playbook_id)
    if loaded is None:
        raise web.HTTPNotFound()
    text = await asyncio.to_thread(read_text, Path(loaded.file))
    playbook = _shown_playbook(loaded, registry.broken())
    # Offsets as the file writes them, when the file is the playbook shown (not while broken).
    current = playbook is not None and playbook is loaded.playbook
    written = await asyncio.to_thread(written_values, text or "") if current else {}
    now = request.app[CLOCK].now()
    async with request.app[SESSIONS]() as session:
        funnel = await studio.step_funnel(session, playbook_id)
        goals = await queries.goal_outcomes(session, now)
        lifts = await lift_by_playbook(session, now)  # its holdout's lift (sop.holdout)
        versions = await history(session, playbook_id)
        stores = await _visible_stores(session, who)
    lang = language_of(request, who)
    # The file's problems in the page's language, as `sop check` says them.
    errors, warnings = studio.diagnostics(loaded, lang)
    entries = studio.timeline(playbook, lang, written) if playbook is not None else []
    goal = None
    if playbook is not None and playbook.goal is not None:
        counted = goals.get((playbook_id, playbook.goal.event))
        goal = counted or {"met": 0, "open": 0, "missed": 0}
    zone = ZoneInfo(request.app[SETTINGS].timezone)
    if fmt := exports.export_format(request, lang):
        exports.chosen_table(request, lang, ("funnel",))
        columns = export_tables.funnel_columns(lang)
        name = playbook.name if playbook is not None else playbook_id
        return await exports.respond(fmt, name, columns, _funnel_rows(playbook, funnel, lang), lang)
    return render(
        request,
        "studio.html",
        {
            "loaded": loaded,
            "file_name": Path(loaded.file).name,
            "playbook": playbook,
            "current": loaded.playbook is not None and loaded.enabled,
            "errors": errors,
            "warnings": warnings,
            "timeline": entries,
            "axis": _axis(entries),
            "funnel": _funnel_rows(playbook, funnel, lang),
            "goal": goal,
            "holdout": holdout_view(playbook, lifts.get(playbook_id)),
            "versions": versions,
            "stores": stores,
            "text": text or "",
            "zone": zone,
            "added_at": now.astimezone(zone).strftime("%Y-%m-%dT%H:%M"),
            "studio_data": _json_script(
                {
                    "id": playbook_id,
                    "version": loaded.version,
                    "lang": "en" if lang == i18n.EN else "zh",
                    "errors": errors,
                }
            ),
        },
    )


def _shown_playbook(loaded: LoadedPlaybook, broken: list[Playbook]) -> Playbook | None:
    """The file's playbook; while the file is broken, its last good version (if any)."""
    if loaded.playbook is not None and loaded.enabled:
        return loaded.playbook
    return next((p for p in broken if p.id == loaded.id), None)


def _axis(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The day axis: its length in days (at least 1) and the ticks to label."""
    days = [e["day"] for e in entries if e["day"] is not None]
    length = max([1.0, *days])
    step = 1 if length <= 10 else 7 if length <= 70 else 30
    ticks = list(range(0, int(length) + 1, step))
    return {"length": length, "ticks": ticks}


def _funnel_rows(
    playbook: Playbook | None, funnel: dict[str, dict[str, Any]], lang: str
) -> list[dict[str, Any]]:
    """One row per step of the shown version (named as guides read it: its name, else its
    action's), then steps only older versions had (by their id)."""
    shown = playbook.steps if playbook is not None else ()
    steps = [s.id for s in shown]
    names = {s.id: s.name or i18n.label("action", s.action, lang) for s in shown}
    rows = [
        {"id": s, "name": names.get(s), "retired": False, **funnel.get(s, studio.no_funnel())}
        for s in steps
    ]
    rows += [
        {"id": s, "name": None, "retired": True, **counts}
        for s, counts in sorted(funnel.items())
        if s not in steps
    ]
    return rows


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/admin/playbooks/{id:" + ID_PATTERN.strip("^$") + "}", studio_page)
