"""`guidebot sop check` and `guidebot sop simulate`: the playbook tools HQ runs by hand and in CI.

Neither needs the GUIDEBOT_* secrets. Playbooks come from the PATHs given, else from
GUIDEBOT_SOP_DIR (default `sop`); message templates from `templates/messages` beside the
playbook directory (`<dir>/../templates/messages`), else from `templates/messages` in the
current directory (`loader.templates_dir_for`).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

import jinja2
from sqlalchemy.engine import make_url

from guidebot import i18n
from guidebot.config import (
    DEFAULT_DATABASE_URL,
    DEMO_DATABASE_URL,
    ConfigError,
    database_url_from_env,
)
from guidebot.contacts.directory import find_store
from guidebot.contacts.reading_hours import Reading, estimate
from guidebot.db.migrate import open_database
from guidebot.sop.actions import STEP_ACTIONS
from guidebot.sop.check_language import cli_language, translate
from guidebot.sop.cli_groups import picked_groups
from guidebot.sop.enrollment import reaches_anyone
from guidebot.sop.holdout import GROUP_NAMES, HOLDOUT, TREATED, assign, format_share
from guidebot.sop.loader import (
    PLAYBOOK_SUFFIXES,
    LoadedPlaybook,
    PlaybookError,
    load_directory,
    load_playbook,
    templates_dir_for,
)
from guidebot.sop.planner import PlannedStep, add_local, enrollment_instant, local_time, plan
from guidebot.sop.playbook import DAY_NAMES, ENROLL, Playbook, Step, format_duration
from guidebot.sop.queries import ACTION_NAMES
from guidebot.sop.templates import message_environment, render_message, sample_variables

STORE_LOOKUP_TIMEOUT = 5.0


def default_sop_dir() -> Path:
    return Path(os.environ.get("GUIDEBOT_SOP_DIR", "").strip() or "sop")


# ---- check -----------------------------------------------------------------------------------


def check_command(
    paths: list[str],
    out: TextIO | None = None,
    err: TextIO | None = None,
    lang: str | None = None,
) -> int:
    """Print one `file:line:col: path: CODE message` per error and answer 1, else "N playbooks
    OK". Warnings (`path: warning W1xx: message`) are printed too and leave the answer 0. The
    language: `lang`, else the environment's (check_language.cli_language: Chinese unless
    LC_ALL, LC_MESSAGES or LANG says English); the codes are the same in both."""
    out = out or sys.stdout
    err = err or sys.stderr
    lang = cli_language(lang, dict(os.environ))
    targets = [Path(p) for p in paths] or [default_sop_dir()]
    loaded: list[LoadedPlaybook] = []
    missing = False
    for target in targets:
        if target.is_dir():
            loaded.extend(load_directory(target, templates_dir_for(target)))
        elif target.is_file():
            loaded.append(load_playbook(target, templates_dir_for(target.parent)))
        else:
            print(i18n.gettext("%(path)s: no such file or directory", lang, path=target), file=err)
            missing = True
    errors = [e for item in loaded for e in item.errors]
    warnings = [w for item in loaded for w in item.warnings]
    for item in loaded:
        for line in sorted((*item.errors, *item.warnings), key=lambda e: (e.line, e.col)):
            print(check_line(line, lang), file=out)
    warned = (
        i18n.ngettext(" (%(num)s warning)", " (%(num)s warnings)", len(warnings), lang)
        if warnings
        else ""
    )
    if errors or missing:
        broken = sum(1 for item in loaded if item.errors)
        summary = i18n.ngettext(
            "%(num)s error in %(broken)s of %(total)s playbooks",
            "%(num)s errors in %(broken)s of %(total)s playbooks",
            len(errors),
            lang,
            broken=broken,
            total=len(loaded),
        )
        print(summary + warned, file=err)
        return 1
    ok = i18n.ngettext("%(num)s playbook OK", "%(num)s playbooks OK", len(loaded), lang)
    print(ok + warned, file=out)
    return 0


def check_line(error: PlaybookError, lang: str) -> str:
    """`file:line:col: path: E201 message` (a warning: `... path: warning W101: message`)."""
    code, message = translate(error.message, lang)
    if code.startswith("W"):
        said = i18n.gettext("warning %(code)s: %(message)s", lang, code=code, message=message)
    else:
        said = f"{code} {message}"
    return f"{error.file}:{error.line}:{error.col}: {error.path}: {said}"


# ---- simulate --------------------------------------------------------------------------------


@dataclass
class StoreInfo:
    code: str
    name: str
    timezone: str | None


def _write_group_step(write, step) -> None:
    """A group step's targets: sent once per occurrence, never per customer."""
    targets = step.targets.describe() if step.targets else "all"
    if step.action == "group_message":
        write(f"   groups   {targets} (live groups)")
        try:
            url, source = store_database()
            lines = picked_groups(url, step.targets)
        except ConfigError as exc:
            lines, source = [f"(no usable database: {exc})"], ""
        for number, line in enumerate(lines):
            write(f"   picks    {line}{source if number == 0 else ''}")
        write(
            "   sends    一位群主一条群发任务，群主在企业微信确认 / one group mass send per owner"
        )
    else:
        write(f"   guides   {targets} (active guides)")
        write("   sends    每位导购一条朋友圈任务，导购发表后完成 / one Moments task per guide")


def _simulated_playbook(
    playbook_ref: str, out: TextIO, err: TextIO
) -> tuple[Path, Playbook] | None:
    """The playbook to simulate, or None (and why, on `err`)."""
    path = _find_playbook(playbook_ref)
    if path is None:
        sop_dir = default_sop_dir()
        print(
            f"playbook {playbook_ref!r} not found (no such file, and no {playbook_ref}.yaml "
            f"in {sop_dir})",
            file=err,
        )
        return None
    loaded = load_playbook(path, templates_dir_for(path.parent))
    if not loaded.enabled or loaded.playbook is None:
        for error in loaded.errors:
            print(error, file=out)
        print(f"{path}: the playbook has errors; fix them first (guidebot sop check)", file=err)
        return None
    return path, loaded.playbook


def simulate_command(
    playbook_ref: str,
    added_at: str | None = None,
    store_code: str | None = None,
    customer: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    now: datetime | None = None,
    reads_at: str | None = None,
) -> int:
    """Print the timeline a customer added at `added_at` would get, with the real planner;
    `reads_at`: local times the customer read at (HH:MM, comma-separated), for best_time."""
    out = out or sys.stdout
    err = err or sys.stderr
    found = _simulated_playbook(playbook_ref, out, err)
    if found is None:
        return 1
    path, playbook = found
    zone, zone_note, store = _simulated_zone(playbook, store_code)
    try:
        event_at = _parse_instant(added_at, zone, now)
    except ValueError as exc:
        print(f"--added-at: {exc}", file=err)
        return 2
    enrolled_at = enrollment_instant(playbook.trigger, event_at, zone)
    try:
        reading = reading_from_times(reads_at, enrolled_at, zone)
    except ValueError as exc:
        print(f"--reads-at: {exc}", file=err)
        return 2

    write = lambda line="": print(line, file=out)  # noqa: E731
    _write_header(write, playbook, path, event_at, enrolled_at, zone, zone_note)
    held_out = _write_holdout(write, playbook, customer)

    env = message_environment(templates_dir_for(path.parent))
    failed = False
    planned = plan(playbook, enrolled_at, zone, reading.scores if reading else None)
    due_by_id = {p.step_id: p.due_at for p in planned}
    for number, (step, item) in enumerate(zip(playbook.steps, planned, strict=True), start=1):
        anchor_due = enrolled_at if step.anchor == ENROLL else due_by_id[step.anchor]
        nominal = add_local(anchor_due, step.offset, zone)
        write()
        write(f"{number}. {step.id} · {_action_text(step)} · at {_at_text(step)}")
        write(f"   due      {_when(item.due_at, zone)}")
        if step.immediate:
            write("            at once, on the add (not moved by the window)")
        elif step.best_time:
            write_best_time(write, playbook, item, reading, reads_at, zone)
        elif nominal != item.due_at:
            write(f"            moved into the window from {_local(nominal, zone)}")
        after = format_duration(step.expire_after)
        write(f"   expires  {_when(item.expires_at, zone)} (after {after})")
        if step.content:
            write(f"   content  {step.content}")
        if step.tag:
            write(f"   tag      {step.tag}")
        if STEP_ACTIONS[step.action].group_step:
            _write_group_step(write, step)
            continue
        if held_out and reaches_anyone(step.action):
            write("   held out 对照组客户不发送、不建任务 / not sent, no task: customer held out")
            continue
        if not STEP_ACTIONS[step.action].sends:
            continue
        failed = not _write_message(write, env, playbook, step, store) or failed
    write()
    write("note: messages are filled with sample values (customer 王女士, guide 李娜).")
    return 1 if failed else 0


def _write_header(
    write: Callable[..., None],
    playbook: Playbook,
    path: Path,
    event_at: datetime,
    enrolled_at: datetime,
    zone: ZoneInfo,
    zone_note: str,
) -> None:
    write(f"{playbook.id} v{playbook.version} · {playbook.name} ({path})")
    write(f"trigger    {_trigger_text(playbook)}")
    write(f"added      {_when(event_at, zone)}")
    if enrolled_at != event_at:
        write(f"enrolled   {_when(enrolled_at, zone)}")
    write(f"time zone  {zone_note}")
    write(f"window     {playbook.send_window}")
    if playbook.stop_when:
        write(f"stop when  {', '.join(sorted(playbook.stop_when))}")
    if playbook.goal:
        write(f"goal       {playbook.goal.event} within {format_duration(playbook.goal.within)}")
    if not all(STEP_ACTIONS[step.action].group_step for step in playbook.steps):
        write(f"daily cap  {playbook.max_messages_per_day} message(s) per customer")


def reading_from_times(text: str | None, day: datetime, zone: ZoneInfo) -> Reading | None:
    """A reading learned from local times (HH:MM) on `day`'s date, with no store prior."""
    if not text:
        return None
    counts = [0] * 24
    for part in text.split(","):
        try:
            wall = time.fromisoformat(part.strip())
        except ValueError:
            raise ValueError(f"expected times such as 20:10,21:05, got {part.strip()!r}") from None
        local = datetime.combine(day.astimezone(zone).date(), wall, tzinfo=zone)
        counts[local.astimezone(UTC).hour] += 1
    return estimate(counts, [0] * 24, [0] * 24)


def write_best_time(
    write: Callable[..., None],
    playbook: Playbook,
    item: PlannedStep,
    reading: Reading | None,
    reads_at: str | None,
    zone: ZoneInfo,
) -> None:
    """Why a best_time step lands where it does."""
    if reading is None or item.best_hour is None:
        write(
            "            best_time: no readings given (--reads-at HH:MM,...), so the planned "
            "time; a live customer gets the hour they read, else their store's customers'"
        )
        return
    learned = reading.local_hour(zone, item.due_at.astimezone(zone).date())
    write(
        f"            best_time: placed at {item.best_hour:02d}:00, the customer's best hour "
        f"(learned {learned:02d}:00 from {reading.observations} reading(s): {reads_at})"
    )
    if learned != item.best_hour:
        write(
            f"            {learned:02d}:00 is outside the window {playbook.send_window} (or "
            "already past); the best-scored hour the window allows"
        )


def _write_holdout(write: Callable[..., None], playbook: Playbook, customer: str | None) -> bool:
    """The holdout line(s); whether `customer` is held out."""
    if not playbook.holdout:
        if customer:
            write(f"holdout    none: {customer} is treated (处理组), as everyone")
        return False
    share = format_share(playbook.holdout)
    write(f"holdout    {share} of customers held out (对照组), by sha256(playbook id, customer)")
    if not customer:
        write("           (give --customer EXTERNAL_USERID to see which group a customer is in)")
        return False
    group = assign(playbook.id, customer, playbook.holdout)
    write(f"customer   {customer}: {GROUP_NAMES[group or TREATED]}")
    return group == HOLDOUT


def _simulated_zone(
    playbook: Playbook, store_code: str | None
) -> tuple[ZoneInfo, str, StoreInfo | None]:
    """The zone the timeline is planned in (the store's own, else the playbook's), a note
    saying why, and the store when one was named and found."""
    zone = ZoneInfo(playbook.timezone)
    if not store_code:
        return zone, f"{playbook.timezone}, the playbook's (no --store given)", None
    store, said = _lookup_store(store_code)
    if store is None:
        return zone, f"{playbook.timezone}, the playbook's: {said}", None
    if not store.timezone:
        note = (
            f"{playbook.timezone}, the playbook's: store {store.code} ({store.name}) has no "
            f"time zone of its own{said}"
        )
        return zone, note, store
    try:
        return (
            ZoneInfo(store.timezone),
            f"{store.timezone}, store {store.code} ({store.name})'s own{said}",
            store,
        )
    except Exception:
        note = (
            f"{playbook.timezone}, the playbook's: store {store.code} has an unknown "
            f"time zone {store.timezone!r}{said}"
        )
        return zone, note, store


def _write_message(
    write: Callable[..., None],
    env: jinja2.Environment,
    playbook: Playbook,
    step: Step,
    store: StoreInfo | None,
) -> bool:
    """The step's message with sample values; False when it cannot render."""
    variables = sample_variables(
        playbook={"id": playbook.id, "name": playbook.name, "version": playbook.version},
        step={
            "id": step.id,
            "action": step.action,
            "name": step.name or ACTION_NAMES["zh"].get(step.action, step.action),
        },
        store_name=store.name if store else None,
    )
    if step.content:
        variables["content"]["id"] = step.content
    try:
        text = render_message(env, step.template or "", variables)
    except jinja2.TemplateError as exc:
        write(f"   message  (cannot render {step.template}: {exc})")
        return False
    lines = text.splitlines() or [""]
    write(f"   message  {lines[0]}")
    for line in lines[1:]:
        write(f"            {line}")
    return True


def _find_playbook(ref: str) -> Path | None:
    path = Path(ref)
    if path.is_file():
        return path
    if path.suffix in PLAYBOOK_SUFFIXES or "/" in ref:
        return None
    for suffix in PLAYBOOK_SUFFIXES:
        candidate = default_sop_dir() / f"{ref}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _parse_instant(text: str | None, zone: ZoneInfo, now: datetime | None) -> datetime:
    if text is None:
        return (now or datetime.now(UTC)).astimezone(UTC)
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO 8601 time, such as 2025-03-07T20:55 or "
            "2025-03-07T12:55:00+00:00"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)  # a naive time is the zone's local time
    return value.astimezone(UTC)


def _lookup_store(code: str) -> tuple[StoreInfo | None, str]:
    """The store from GUIDEBOT_DATABASE_URL's directory (else the demo's), or None and why not."""
    try:
        url, source = store_database()
    except ConfigError as exc:
        return None, f"no usable database ({exc})"
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:" and not Path(database).exists():
            return None, f"no database at {database} to look up store {code!r}"
    try:
        store, problem = asyncio.run(
            asyncio.wait_for(_fetch_store(url, code), STORE_LOOKUP_TIMEOUT)
        )
    except TimeoutError:
        return None, f"the database did not answer within {STORE_LOOKUP_TIMEOUT:.0f} s"
    except Exception as exc:
        return None, f"store lookup failed ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
    return store, f"{problem}{source}"


def store_database(environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The database stores are looked up in, and a note when it is the demo's.

    GUIDEBOT_DATABASE_URL when set; else guidebot.db when it exists; else the database
    `make demo` left in this directory (guidebot-demo.db), so that `sop simulate --store`
    finds the demo's stores without any setting."""
    env = os.environ if environ is None else environ
    url = database_url_from_env(env)
    if env.get("GUIDEBOT_DATABASE_URL", "").strip():
        return url, ""
    own, demo = (
        Path(make_url(u).database or "") for u in (DEFAULT_DATABASE_URL, DEMO_DATABASE_URL)
    )
    if not own.exists() and demo.exists():
        note = f" (stores from the demo's database {demo}: GUIDEBOT_DATABASE_URL is not set)"
        return DEMO_DATABASE_URL, note
    return url, ""


async def _fetch_store(url: str, code: str) -> tuple[StoreInfo | None, str]:
    async with open_database(url, prepare=False, pool_size=1) as sessions, sessions() as session:
        store = await find_store(session, code)
        if store is None:
            return None, f"store {code!r} is not in the database"
        return StoreInfo(store.code, store.name, store.timezone), ""


def behaviour_texts(trigger) -> dict[str, str]:
    """The behaviour triggers in `sop simulate` (--added-at plays the fact's instant)."""
    after = format_duration(trigger.after) if trigger.after else ""
    narrowed = (
        f" of item {trigger.item!r}"
        if trigger.item
        else f" of an item tagged {trigger.tag!r}"
        if trigger.tag
        else ""
    )
    plural = "order" if trigger.orders == 1 else "orders"
    orders = (
        f" (customers with exactly {trigger.orders} counted {plural})" if trigger.orders else ""
    )
    return {
        "content.opened": f"content.opened: when the customer opens a guide's link{narrowed}, "
        "once per link (--added-at plays the open)",
        "opened_no_order": f"opened_no_order: {after} after the first open of a link with no "
        "order since, once per link (--added-at plays the open)",
        "silent": f"silent: after {after} with no reply, open or order, once per silence "
        "(--added-at plays the last act)",
        "repurchase_due": f"repurchase_due: {after} after the last counted order{orders}, once "
        "per order (--added-at plays the order)",
        "stage.changed": f"stage.changed: when the stage goes from {trigger.from_stage or 'any'}"
        f" to {trigger.to_stage or 'any'}, once per change (--added-at plays the change)",
    }


def _trigger_text(playbook: Playbook) -> str:
    trigger = playbook.trigger
    text = {
        "customer.added": "customer.added: when a customer adds the guide",
        "tag.added": f"tag.added: when the customer gets tag {trigger.tag!r}",
        "date": f"date: on the customer's {trigger.field}, from 00:00 local "
        "(--added-at's day plays that date)",
        "cron": f"cron {trigger.cron!r}: enrolls at the next run after --added-at",
        **behaviour_texts(trigger),
        "group.joined": "group.joined: when the customer joins a customer group of the guide's "
        f"({trigger.group.describe() if trigger.group else 'any group'}; --added-at plays the "
        "join)",
    }[trigger.event]
    audience = playbook.audience
    parts = [
        f"{name} {', '.join(sorted(values))}"
        for name, values in (
            ("channels", audience.channels),
            ("states", audience.states),
            ("stores", audience.stores),
            ("tags", audience.tags),
        )
        if values
    ]
    return text + (f"; only {'; '.join(parts)}" if parts else "")


def _action_text(step: Step) -> str:
    return STEP_ACTIONS[step.action].describe


def _at_text(step: Step) -> str:
    if not step.offset:
        return step.anchor
    return f"{step.anchor} + {format_duration(step.offset)}"


def _local(instant: datetime, zone: ZoneInfo) -> str:
    local = local_time(instant, zone)
    offset = local.strftime("%z")
    offset = f"{offset[:3]}:{offset[3:]}" if offset else ""
    return f"{local:%Y-%m-%d %H:%M:%S} {DAY_NAMES[local.weekday()].capitalize()} ({offset})"


def _when(instant: datetime, zone: ZoneInfo) -> str:
    return f"{_local(instant, zone)} = {instant.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
