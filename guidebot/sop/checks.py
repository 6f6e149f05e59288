"""From playbook text to a Playbook, or to every problem in it with its line and column.

Two stages, both total (they report, they never raise for bad content):

1. `compose` (guidebot.sop.yaml_nodes): the YAML text to nodes with their lines and columns.
2. `build`, here: the schema (unknown keys with a did-you-mean and the expected keys, types naming
   what was expected and what was found) and the semantic checks (unique step ids, an `at` that
   names an earlier step, ...).

`loader` adds the file name and wraps both into `LoadedPlaybook`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import NamedTuple

import jinja2

from guidebot.sop.holdout import check_holdout
from guidebot.sop.playbook import (
    DEFAULT_CATCH_UP,
    EVENT_TRIGGERS,
    GOAL_EVENTS,
    MAX_CATCH_UP,
    STOP_EVENTS,
    TAG_EVENT_PREFIX,
    TIMED_TRIGGERS,
    TRIGGER_EVENTS,
    Audience,
    EnrollRule,
    Goal,
    Playbook,
    SendWindow,
    Trigger,
    format_duration,
)
from guidebot.sop.step_checks import StepChecks
from guidebot.sop.trigger_checks import TRIGGER_KEYS, TriggerChecks
from guidebot.sop.trigger_options import TriggerOptionChecks
from guidebot.sop.values import (
    describe,
    did_you_mean,
    parse_days,
    parse_duration,
    parse_hours,
    suggest,
    valid_zone,
    zone_names,
)
from guidebot.sop.yaml_nodes import (
    BAD,
    BOOL,
    FILE,
    INT,
    INT_TEXT,
    MAP,
    SEQ,
    STR,
    Issue,
    Node,
    join_path,
)

MAX_VERSION = 2**31 - 1
ONCE_PER = ("customer", "relation")

TOP_KEYS = (
    "playbook",
    "version",
    "name",
    "trigger",
    "enroll",
    "timezone",
    "send_window",
    "stop_when",
    "goal",
    "max_messages_per_day",
    "escalate_after",
    "catch_up",
    "holdout",
    "paused",
    "steps",
)
AUDIENCE_KEYS = ("channels", "states", "stores", "tags")
ENROLL_KEYS = ("once_per", "reenter_after")
WINDOW_KEYS = ("hours", "days")
GOAL_KEYS = ("event", "within")
TRIGGER_ONLY = {"tag": "tag.added", "field": "date", "cron": "cron"}


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class _Builder(StepChecks, TriggerChecks, TriggerOptionChecks):
    def __init__(
        self,
        stem: str,
        source: str,
        text: str,
        env: jinja2.Environment | None,
        issues: list[Issue],
    ) -> None:
        self.stem = stem
        self.source = source
        self.text = text
        self.env = env
        self.issues = issues
        self.warnings: list[Issue] = []
        self.version: int | None = None
        self.version_at: tuple[int, int] = (1, 1)

    # -- reporting

    def error(self, node: Node, path: str, message: str) -> None:
        self.issues.append(Issue(node.line, node.col, path or FILE, message))

    def warning(self, node: Node, path: str, coded: str) -> None:
        """Worth a look, but the playbook still loads: "W101: message"."""
        code, message = coded.split(": ", 1)
        self.warnings.append(Issue(node.line, node.col, path, f"warning {code}: {message}"))

    def key_error(self, node: Node, path: str, message: str) -> None:
        self.issues.append(Issue(node.key_line, node.key_col, path, message))

    def expected(self, node: Node, path: str, what: str) -> None:
        if node.kind == BAD:
            return  # already reported while converting
        hint = ""
        if (
            node.kind == STR
            and node.quoted
            and INT_TEXT.fullmatch(node.value)
            and "integer" in what
        ):
            hint = " (remove the quotes)"
        self.error(node, path, f"expected {what}, got {describe(node)}{hint}")

    # -- shapes

    def mapping(
        self,
        node: Node,
        path: str,
        section: str,
        keys: Sequence[str],
        required: Mapping[str, str] | None = None,
    ) -> dict[str, Node] | None:
        if node.kind != MAP:
            self.expected(node, path, f"a mapping with keys {', '.join(keys)}")
            return None
        suggested: set[str] = set()
        for key, child in node.value.items():
            if key in keys:
                continue
            hint = suggest(key, keys)
            if hint:
                suggested.add(hint)
            shown = f" (did you mean {hint!r}?)" if hint else ""
            self.key_error(
                child,
                join_path(path, key),
                f"unexpected key {key!r} in {section}{shown}; expected one of {sorted(keys)!r}",
            )
        for key, explanation in (required or {}).items():
            if key not in node.value and key not in suggested:
                self.error(node, join_path(path, key), "required key is missing" + explanation)
        return {k: v for k, v in node.value.items() if k in keys}

    def string(self, node: Node, path: str, what: str = "text") -> str | None:
        if node.kind != STR or not node.value.strip():
            self.expected(node, path, what)
            return None
        return node.value.strip()

    def integer(self, node: Node, path: str, what: str, low: int, high: int) -> int | None:
        if node.kind != INT:
            self.expected(node, path, what)
            return None
        if node.value < low:
            self.error(node, path, f"expected {what}, got integer {node.value}")
            return None
        if node.value > high:
            self.error(node, path, f"{node.value} is too large for {path} (at most {high})")
            return None
        return node.value

    def duration(self, node: Node, path: str, *, positive: bool = True) -> timedelta | None:
        if node.kind == INT:
            self.error(
                node,
                path,
                f"duration '{node.value}' needs a unit: s, m, h, d or w (e.g. '{node.value}d')",
            )
            return None
        if node.kind != STR:
            self.expected(node, path, "a duration such as '3d' or '20s'")
            return None
        try:
            value = parse_duration(node.value)
        except ValueError as exc:
            self.error(node, path, str(exc))
            return None
        if positive and not value:
            self.error(node, path, f"duration {node.value!r} must be longer than zero")
            return None
        return value

    def strings(self, node: Node, path: str, what: str) -> list[tuple[str, Node, str]]:
        """One string or a list of strings: (value, node, path) for each good one."""
        if node.kind == STR:
            items = [(node, path)]
        elif node.kind == SEQ:
            items = [(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        else:
            self.expected(node, path, f"{what} or a list of them")
            return []
        found = []
        for item, item_path in items:
            value = self.string(item, item_path, what)
            if value is not None:
                found.append((value, item, item_path))
        return found

    # -- the playbook

    def build(self, root: Node | None) -> Playbook | None:
        if root is None:
            if self.issues:  # the text could not be parsed; that error says it all
                return None
            self.issues.append(
                Issue(
                    1,
                    1,
                    FILE,
                    f"the file is empty; a playbook is a mapping of keys ({', '.join(TOP_KEYS)})",
                )
            )
            return None
        top = self.mapping(
            root,
            "",
            "playbook",
            TOP_KEYS,
            {
                "playbook": f" (the playbook id, equal to the file name {self.stem!r})",
                "version": " (a positive integer, bumped on every edit)",
                "trigger": " (such as {event: customer.added})",
                "timezone": " (an IANA name such as 'Asia/Shanghai')",
                "send_window": " (such as {hours: '10:00-21:00', days: mon-sun})",
                "steps": " (a list of steps)",
            },
        )
        if top is None:
            return None
        pid = self.playbook_id(top.get("playbook"))
        version = None
        if "version" in top:
            version = self.integer(top["version"], "version", "a positive integer", 1, MAX_VERSION)
            self.version = version
            self.version_at = (top["version"].line, top["version"].col)
        name = self.string(top["name"], "name") if "name" in top else pid
        zone_name = self.timezone(top.get("timezone"))
        trigger, audience = self.trigger(top.get("trigger"), zone_name)
        enroll, reenter_node = self.enroll(top.get("enroll"))
        window = self.window(top.get("send_window"))
        stop_when = self.events(top.get("stop_when"), "stop_when", STOP_EVENTS, "stop condition")
        goal = self.goal(top.get("goal"))
        cap = self.daily_cap(top.get("max_messages_per_day"))
        escalate = top.get("escalate_after")  # a bad one is an issue: the playbook stays disabled
        escalate = self.duration(escalate, "escalate_after") if escalate is not None else None
        holdout = check_holdout(self, top["holdout"]) if "holdout" in top else 0.0
        catch_up = self.catch_up(top["catch_up"]) if "catch_up" in top else DEFAULT_CATCH_UP
        paused = self.paused(top["paused"]) if "paused" in top else False
        steps = self.steps(top.get("steps"), trigger)
        if steps and enroll and enroll.reenter_after is not None and reenter_node is not None:
            self.reentry(enroll.reenter_after, reenter_node, steps)
        parts = (pid, version, name, zone_name, trigger, window, steps, enroll, stop_when, cap)
        if self.issues or any(part is None for part in parts):
            if not self.issues:  # a bug here must still leave the playbook disabled, with a reason
                self.issues.append(Issue(1, 1, FILE, "internal error: the playbook is incomplete"))
            return None
        assert pid and version and name and zone_name and trigger and window and steps
        return Playbook(
            id=pid,
            version=version,
            name=name,
            source=self.source,
            trigger=trigger,
            audience=audience or Audience(),
            enroll=enroll or EnrollRule(),
            timezone=zone_name,
            send_window=window,
            stop_when=frozenset(stop_when or ()),
            goal=goal,
            steps=tuple(steps),
            max_messages_per_day=cap or 1,
            escalate_after=escalate,
            catch_up=catch_up or timedelta(0),
            holdout=holdout or 0.0,
            paused=paused,
            source_text=self.text,
        )

    def daily_cap(self, node: Node | None) -> int | None:
        if node is None:
            return 1
        return self.integer(node, "max_messages_per_day", "a positive integer", 1, 1000)

    def paused(self, node: Node) -> bool:
        if node.kind != BOOL:
            self.expected(node, "paused", "true or false")
            return False
        return bool(node.value)

    def catch_up(self, node: Node) -> timedelta | None:
        value = self.duration(node, "catch_up", positive=False)
        if value is not None and value > MAX_CATCH_UP:
            self.error(node, "catch_up", f"catch_up is at most {format_duration(MAX_CATCH_UP)}")
            return None
        return value

    def playbook_id(self, node: Node | None) -> str | None:
        if node is None:
            return None
        value = self.string(node, "playbook", "the playbook id (text)")
        if value is None:
            return None
        if not _ID.fullmatch(value):
            rule = "may use only letters, digits, '_' and '-' (at most 64)"
            self.error(node, "playbook", f"playbook id {value!r} {rule}")
            return None
        if value != self.stem:
            rule = f"must equal the file name {self.stem!r}; rename one of them"
            self.error(node, "playbook", f"playbook id {value!r} {rule}")
            return None
        return value

    def timezone(self, node: Node | None) -> str | None:
        if node is None:
            return None
        value = self.string(node, "timezone", "an IANA time zone name such as 'Asia/Shanghai'")
        if value is None:
            return None
        if not valid_zone(value):
            self.error(
                node,
                "timezone",
                f"unknown time zone {value!r}{did_you_mean(value, zone_names())}; use an IANA "
                "name such as 'Asia/Shanghai'",
            )
            return None
        return value

    def trigger(self, node: Node | None, zone_name: str | None) -> tuple[Trigger | None, Audience]:
        if node is None:
            return None, Audience()
        keys = self.mapping(
            node,
            "trigger",
            "trigger",
            TRIGGER_KEYS,
            {"event": f"; expected one of {list(TRIGGER_EVENTS)!r}"},
        )
        if keys is None:
            return None, Audience()
        audience = self.audience(keys["audience"]) if "audience" in keys else Audience()
        if "event" not in keys:
            return None, audience
        event = self.string(keys["event"], "trigger.event", "a trigger event")
        if event is None:
            return None, audience
        if event not in TRIGGER_EVENTS:
            self.error(
                keys["event"],
                "trigger.event",
                f"unknown trigger event {event!r}{did_you_mean(event, TRIGGER_EVENTS)}; "
                f"expected one of {list(TRIGGER_EVENTS)!r}",
            )
            return None, audience
        group, group_ok = self.group_filter(keys, event)  # group.joined's keys, or misplaced
        if event in EVENT_TRIGGERS or event in TIMED_TRIGGERS:
            trigger = self.behaviour_trigger(event, keys, node)
            return (trigger if group_ok else None), audience
        values: dict[str, str | None] = {"tag": None, "field": None, "cron": None}
        ok = self.misplaced_trigger_keys(keys, event)
        for key, needs in TRIGGER_ONLY.items():
            if key not in keys and event == needs:
                self.error(
                    node,
                    f"trigger.{key}",
                    f"required key is missing for trigger event '{event}'"
                    + {
                        "tag": " (the corp tag whose addition enrolls the customer)",
                        "field": " (the customer's date field, such as 'birthday')",
                        "cron": " (a crontab such as '0 10 * * mon')",
                    }[key],
                )
                ok = False
        if event == "tag.added" and "tag" in keys:
            values["tag"] = self.string(keys["tag"], "trigger.tag", "a tag name or id")
            ok = ok and values["tag"] is not None
        if event == "date" and "field" in keys:
            values["field"] = self.date_field(keys["field"])
            ok = ok and values["field"] is not None
        if event == "cron" and "cron" in keys:
            values["cron"] = self.cron(keys["cron"], zone_name)
            ok = ok and values["cron"] is not None
        if not (ok and group_ok):
            return None, audience
        return Trigger(event=event, group=group, **values), audience  # type: ignore[arg-type]

    def audience(self, node: Node) -> Audience:
        keys = self.mapping(node, "trigger.audience", "audience", AUDIENCE_KEYS)
        if keys is None:
            return Audience()
        sets = {}
        for key, child in keys.items():
            what = {"stores": "a store code", "tags": "a tag name or id"}.get(key, f"a {key[:-1]}")
            sets[key] = frozenset(
                v for v, _n, _p in self.strings(child, f"trigger.audience.{key}", what)
            )
        return Audience(**sets)

    def enroll(self, node: Node | None) -> tuple[EnrollRule | None, Node | None]:
        if node is None:
            return EnrollRule(), None
        keys = self.mapping(node, "enroll", "enroll", ENROLL_KEYS)
        if keys is None:
            return None, None
        once_per_customer = True
        if "once_per" in keys:
            value = self.string(keys["once_per"], "enroll.once_per", "'customer' or 'relation'")
            if value is not None and value not in ONCE_PER:
                self.error(
                    keys["once_per"],
                    "enroll.once_per",
                    f"unknown once_per {value!r}{did_you_mean(value, ONCE_PER)}; expected one "
                    f"of {list(ONCE_PER)!r} (relation: once per guide and customer)",
                )
            once_per_customer = value != "relation"
        reenter = None
        if "reenter_after" in keys:
            reenter = self.duration(keys["reenter_after"], "enroll.reenter_after")
        return EnrollRule(once_per_customer, reenter), keys.get("reenter_after")

    def window(self, node: Node | None) -> SendWindow | None:
        if node is None:
            return None
        keys = self.mapping(
            node,
            "send_window",
            "send_window",
            WINDOW_KEYS,
            {"hours": " (such as '10:00-21:00', in the playbook's or store's time zone)"},
        )
        if keys is None or "hours" not in keys:
            return None
        hours = None
        value = self.string(keys["hours"], "send_window.hours", "a range such as '10:00-21:00'")
        if value is not None:
            try:
                hours = parse_hours(value)
            except ValueError as exc:
                self.error(keys["hours"], "send_window.hours", str(exc))
        days: frozenset[int] | None = frozenset(range(7))
        if "days" in keys:
            days = self.days(keys["days"])
        if hours is None or days is None:
            return None
        return SendWindow(start=hours[0], end=hours[1], days=days)

    def days(self, node: Node) -> frozenset[int] | None:
        before = len(self.issues)
        items = self.strings(node, "send_window.days", "days such as 'mon-sun'")
        found: set[int] = set()
        for text, item, item_path in items:
            try:
                found |= parse_days([text])
            except ValueError as exc:
                self.error(item, item_path, str(exc))
        if len(self.issues) > before:
            return None
        if not found:
            self.error(node, "send_window.days", "no days: the window would never open")
            return None
        return frozenset(found)

    def events(
        self, node: Node | None, path: str, vocabulary: Sequence[str], what: str
    ) -> list[str] | None:
        if node is None:
            return []
        found = []
        for value, item, item_path in self.strings(node, path, f"a {what}"):
            if self.event_name(value, item, item_path, vocabulary, what):
                found.append(value)
        return found

    def event_name(
        self, value: str, node: Node, path: str, vocabulary: Sequence[str], what: str
    ) -> bool:
        if value in vocabulary and value != "tag.added:<tag>":
            return True
        if value.startswith(TAG_EVENT_PREFIX) and "tag.added:<tag>" in vocabulary:
            if value.removeprefix(TAG_EVENT_PREFIX).strip():
                return True
            self.error(node, path, f"{what} 'tag.added:' needs a tag, such as 'tag.added:VIP'")
            return False
        choices = [v for v in vocabulary if v != "tag.added:<tag>"]
        hint = did_you_mean(value, choices)
        if not hint and value.startswith("tag.added"):
            hint = " (write 'tag.added:<tag>', such as 'tag.added:VIP')"
        self.error(
            node, path, f"unknown {what} {value!r}{hint}; expected one of {list(vocabulary)!r}"
        )
        return False

    def goal(self, node: Node | None) -> Goal | None:
        if node is None:
            return None
        keys = self.mapping(
            node,
            "goal",
            "goal",
            GOAL_KEYS,
            {
                "event": f"; expected one of {list(GOAL_EVENTS)!r}",
                "within": " (the attribution window, such as '14d')",
            },
        )
        if keys is None or "event" not in keys or "within" not in keys:
            return None
        event = self.string(keys["event"], "goal.event", "a goal event")
        ok = event is not None and self.event_name(
            event, keys["event"], "goal.event", GOAL_EVENTS, "goal event"
        )
        within = self.duration(keys["within"], "goal.within")
        if not ok or within is None or event is None:
            return None
        return Goal(event=event, within=within)

    # -- steps


def build(
    root: Node | None,
    *,
    stem: str,
    source: str,
    text: str,
    env: jinja2.Environment | None,
    issues: Sequence[Issue] = (),
) -> Built:
    """The playbook (None when anything is wrong), every issue, the version if readable, and
    warnings (which do not keep it from loading).

    `issues` are those found while composing; any of them keeps the playbook from being built.
    """
    builder = _Builder(stem, source, text, env, list(issues))
    playbook = builder.build(root)
    return Built(playbook, builder.issues, builder.version, builder.version_at, builder.warnings)


class Built(NamedTuple):
    playbook: Playbook | None
    issues: list[Issue]
    version: int | None
    version_at: tuple[int, int]
    warnings: Sequence[Issue] = ()
