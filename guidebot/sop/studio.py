"""The playbook studio's reading of a playbook (the admin's editor and timeline page).

* `check_text`: playbook text HQ is typing, checked by the same loader `guidebot sop check`
  and the server's registry use (guidebot.sop.loader), off the event loop, a few at a time.
* `diagnostics`: each problem as line, column, path, message, hint (the did-you-mean or the
  expected values, split from the message) and a short code the editor can key on.
* `timeline`: the playbook as data for a timeline: trigger, steps on a day axis, send window,
  stop conditions, goal. Words for people are the page's (its templates): this says `action:
  remind`, the page says 提醒.
* `preview`: the real planner for a sample customer (a store's zone, an add time) and each
  message rendered in the sandbox the engine renders in, with sample values.
* `step_funnel`: per step, what became of its task rows (planned, sent, done, expired, failed,
  skipped by hand, stopped by reason, waiting).

Saving (versions, the file, the reload) is guidebot.sop.versions.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot import i18n
from guidebot.sop.actions import STEP_ACTIONS
from guidebot.sop.check_language import translate
from guidebot.sop.loader import MAX_FILE_BYTES, LoadedPlaybook, PlaybookError, parse_playbook
from guidebot.sop.models import SopTask, TaskStatus
from guidebot.sop.planner import add_local, enrollment_instant, plan
from guidebot.sop.playbook import ENROLL, Playbook, format_duration
from guidebot.sop.queries import ACTION_NAMES
from guidebot.sop.templates import message_environment, render_off_loop, sample_variables
from guidebot.sop.trigger_words import trigger_summary
from guidebot.sop.yaml_nodes import FILE

CHECK_THREADS = 2  # checks at a time, off the event loop
DAY = 86400

# ---- checking --------------------------------------------------------------------------------

_CHECKERS: ThreadPoolExecutor | None = None
_CHECKERS_LOCK = threading.Lock()


def check_text(text: str, playbook_id: str, templates_dir: Path) -> LoadedPlaybook:
    """The text checked as the file `<playbook_id>.yaml` would be (its id must match)."""
    size = len(text.encode("utf-8", "surrogatepass"))
    file = f"{playbook_id}.yaml"
    if size > MAX_FILE_BYTES:
        message = f"the text is {size} bytes; a playbook is at most {MAX_FILE_BYTES // 1024} KiB"
        return LoadedPlaybook(file, None, (PlaybookError(file, 1, 1, FILE, message),), playbook_id)
    return parse_playbook(text, file, templates_dir, stem=playbook_id)


async def check_off_loop(text: str, playbook_id: str, templates_dir: Path) -> LoadedPlaybook:
    """`check_text` in a worker thread; at most CHECK_THREADS run at once."""
    global _CHECKERS
    with _CHECKERS_LOCK:
        if _CHECKERS is None:
            _CHECKERS = ThreadPoolExecutor(CHECK_THREADS, thread_name_prefix="guidebot-check")
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_CHECKERS, check_text, text, playbook_id, templates_dir)


# What a message's tail says that is advice rather than the fault itself.
_DID_YOU_MEAN = re.compile(r" ?\((did you mean [^)]*\?)\)")
_TAIL = re.compile(r"; (?=expected|use |write |check |rename |remove |bump |quote |keep |fix |at )")
_CODES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("yaml_syntax", re.compile(r"^YAML syntax error|^not UTF-8|^nested too deeply")),
    ("yaml_unsupported", re.compile(r"^aliases|^YAML tag|^a key must be plain text")),
    ("duplicate_key", re.compile(r"^duplicate key")),
    ("unknown_key", re.compile(r"^unexpected key")),
    ("missing_key", re.compile(r"^required key is missing")),
    ("unknown_action", re.compile(r"^unknown action")),
    ("unknown_value", re.compile(r"^unknown ")),
    ("wrong_type", re.compile(r"^expected ")),
    ("template", re.compile(r"template|模板")),
    ("version", re.compile(r"version")),
    ("id_mismatch", re.compile(r"^playbook id")),
    ("too_large", re.compile(r"bytes; a playbook is at most")),
)


def diagnostic(error: PlaybookError, warning: bool = False, lang: str = i18n.EN) -> dict[str, Any]:
    """One problem for the editor: where, what, the advice apart, and a code. In Chinese the
    message is `sop check`'s Chinese sentence, its advice inside it (hint None)."""
    text = error.message
    code = "invalid"
    if warning:
        text = text.removeprefix("warning ")
        code, _, text = text.partition(": ")
    else:
        code = next((name for name, rule in _CODES if rule.search(text)), "invalid")
    if lang == i18n.ZH:
        said = translate(error.message, i18n.ZH)[1]
        message = said.split(": ", 1)[1] if warning and ": " in said else said
        return {
            "line": error.line,
            "col": error.col,
            "path": error.path,
            "message": message,
            "hint": None,
            "code": code,
        }
    hints = [found.group(1) for found in _DID_YOU_MEAN.finditer(text)]
    text = _DID_YOU_MEAN.sub("", text)
    head, *tail = _TAIL.split(text, maxsplit=1)
    hints.extend(part.strip() for part in tail)
    return {
        "line": error.line,
        "col": error.col,
        "path": error.path,
        "message": head.strip(),
        "hint": " · ".join(hints) or None,
        "code": code,
    }


def diagnostics(
    loaded: LoadedPlaybook, lang: str = i18n.EN
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The errors and the warnings (W1xx), each as `diagnostic` says, in `lang`."""
    return (
        [diagnostic(e, lang=lang) for e in loaded.errors],
        [diagnostic(w, warning=True, lang=lang) for w in loaded.warnings],
    )


# ---- the timeline ----------------------------------------------------------------------------


def timeline(
    playbook: Playbook, lang: str = i18n.EN, written: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Trigger, steps (with their day from enrollment, before the window moves them), send
    window, stop conditions and goal, in that order: the page's timeline and the API's. What
    narrows the trigger is said in `lang`; offsets and durations are as the file writes them
    where `written` (trigger_words.written_values of its text) has them."""
    written = written or {}
    trigger = playbook.trigger
    audience = playbook.audience
    entries: list[dict[str, Any]] = [
        _entry(
            "trigger",
            event=trigger.event,
            value=trigger_summary(trigger, lang, written),
            day=0,
            detail=", ".join(
                f"{name}: {', '.join(sorted(values))}"
                for name, values in (
                    ("channels", audience.channels),
                    ("states", audience.states),
                    ("stores", audience.stores),
                    ("tags", audience.tags),
                )
                if values
            )
            or None,
        )
    ]
    for step in playbook.steps:
        offset = playbook.offset_from_enroll(step.id)
        at = step.anchor if not step.offset else f"{step.anchor} + {format_duration(step.offset)}"
        at = written.get(f"steps.{step.id}.at", at)
        expire = written.get(f"steps.{step.id}.expire_after") or format_duration(step.expire_after)
        entries.append(
            _entry(
                "step",
                id=step.id,
                name=step.name,
                action=step.action,
                at=at,
                day=round(offset.total_seconds() / DAY, 3),
                template=step.template,
                value=step.tag or step.content,
                detail=f"expire_after {expire}"
                + (f"; {step.targets.describe()}" if step.targets else ""),
                immediate=step.immediate,
            )
        )
    hours, _, days = str(playbook.send_window).partition(" ")  # "10:00-21:00 mon-sun"
    entries.append(_entry("window", value=hours, detail=days))
    for event in sorted(playbook.stop_when):
        entries.append(_entry("stop", event=event))
    if playbook.goal is not None:
        within = playbook.goal.within
        entries.append(
            _entry(
                "goal",
                event=playbook.goal.event,
                value=written.get("goal.within") or format_duration(within),
                day=round(within.total_seconds() / DAY, 3),
            )
        )
    return entries


def _entry(kind: str, **fields: Any) -> dict[str, Any]:
    entry = dict.fromkeys(ENTRY_FIELDS)
    entry["kind"], entry["immediate"] = kind, False
    entry.update(fields)
    return entry


ENTRY_FIELDS = (
    "kind",
    "id",
    "name",
    "action",
    "event",
    "at",
    "day",
    "template",
    "value",
    "detail",
    "immediate",
)


# ---- the preview -----------------------------------------------------------------------------


async def preview(
    playbook: Playbook,
    templates_dir: Path,
    *,
    added_at: datetime,
    zone: ZoneInfo,
    store: dict[str, str] | None,
) -> dict[str, Any]:
    """A customer added at `added_at` (in `zone`, the store's or the playbook's): when each
    step is due and each message as its reader gets it, rendered off the loop."""
    enrolled_at = enrollment_instant(playbook.trigger, added_at, zone)
    planned = plan(playbook, enrolled_at, zone)
    env = message_environment(templates_dir)
    jobs: list[tuple[str, dict[str, Any]]] = []
    steps: list[dict[str, Any]] = []
    due_by_id = {p.step_id: p.due_at for p in planned}
    for step, item in zip(playbook.steps, planned, strict=True):
        anchor_due = enrolled_at if step.anchor == ENROLL else due_by_id[step.anchor]
        nominal = add_local(anchor_due, step.offset, zone)
        action = STEP_ACTIONS[step.action]
        steps.append(
            {
                "id": step.id,
                "name": step.name,
                "action": step.action,
                "to": "customer" if action.to_customer else "guide" if action.sends else None,
                "due_at": item.due_at.isoformat(),
                "due_local": item.due_at.astimezone(zone).isoformat(),
                "moved": nominal != item.due_at and not step.immediate,
                "immediate": step.immediate,
                "expires_local": item.expires_at.astimezone(zone).isoformat(),
                "message": None,
                "error": None,
            }
        )
        if action.sends and step.template:
            variables = sample_variables(
                playbook={"id": playbook.id, "name": playbook.name, "version": playbook.version},
                step={
                    "id": step.id,
                    "action": step.action,
                    "name": step.name or ACTION_NAMES["zh"].get(step.action, step.action),
                },
                store_name=store["name"] if store else None,
            )
            if store:
                variables["store"]["code"] = store["code"]
            if step.content:
                variables["content"]["id"] = step.content
            jobs.append((step.template, variables))
            steps[-1]["_job"] = len(jobs) - 1
    rendered = await render_off_loop(env, jobs)
    for entry in steps:
        index = entry.pop("_job", None)
        if index is None:
            continue
        result = rendered[index]
        if isinstance(result, jinja2.TemplateError):
            entry["error"] = str(result)
        else:
            entry["message"] = result
    return {
        "zone": zone.key,
        "added_at": added_at.isoformat(),
        "enrolled_at": enrolled_at.astimezone(zone).isoformat(),
        "steps": steps,
    }


# ---- the funnel ------------------------------------------------------------------------------

WAITING = (TaskStatus.PENDING, TaskStatus.CLAIMED, TaskStatus.SENDING, TaskStatus.SNOOZED)
STOPPED_PREFIX = "stopped: "


def no_funnel() -> dict[str, Any]:
    return {
        "planned": 0,
        "sent": 0,
        "done": 0,
        "expired": 0,
        "failed": 0,
        "skipped": 0,
        "waiting": 0,
        "stopped": {},
    }


async def step_funnel(session: AsyncSession, playbook_id: str) -> dict[str, dict[str, Any]]:
    """Per step (every version's rows): planned (task rows), sent (handed to WeCom), done,
    expired, failed or unknown, skipped by a person, stopped by reason, still waiting."""
    stopped_reason = SopTask.reason.like(STOPPED_PREFIX + "%")
    rows = await session.execute(
        select(
            SopTask.step_id,
            SopTask.status,
            func.count(),
            func.count(SopTask.sent_at),
        )
        .where(SopTask.playbook_id == playbook_id)
        .group_by(SopTask.step_id, SopTask.status)
    )
    funnel: dict[str, dict[str, Any]] = defaultdict(no_funnel)
    for step_id, status, n, sent in rows.all():
        counts = funnel[step_id]
        counts["planned"] += n
        counts["sent"] += sent
        if status in (TaskStatus.DONE, TaskStatus.EXPIRED):
            counts[status] += n
        elif status in (TaskStatus.FAILED, TaskStatus.UNKNOWN):
            counts["failed"] += n
        elif status in WAITING or status == TaskStatus.SENT:
            counts["waiting"] += n
    stopped = await session.execute(
        select(SopTask.step_id, SopTask.reason, func.count())
        .where(
            SopTask.playbook_id == playbook_id,
            SopTask.status == TaskStatus.SKIPPED,
            stopped_reason,
        )
        .group_by(SopTask.step_id, SopTask.reason)
    )
    by_step: dict[str, int] = defaultdict(int)
    for step_id, reason, n in stopped.all():
        # "stopped: contact.lost (checked at send time)", "stopped: guide.changed: g2 already
        # runs this playbook ...", "stopped: tag.added:VIP": the event alone.
        why = reason.removeprefix(STOPPED_PREFIX).split(" (", 1)[0].split(": ", 1)[0].strip()
        why = why or "ended"
        reasons = funnel[step_id]["stopped"]
        reasons[why] = reasons.get(why, 0) + n
        by_step[step_id] += n
    skipped = await session.execute(
        select(SopTask.step_id, func.count())
        .where(SopTask.playbook_id == playbook_id, SopTask.status == TaskStatus.SKIPPED)
        .group_by(SopTask.step_id)
    )
    for step_id, n in skipped.all():
        funnel[step_id]["skipped"] += n - by_step[step_id]
    return dict(funnel)
