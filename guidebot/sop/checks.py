"""From playbook text to a Playbook, or to every problem in it with its line and column.

Two stages, both total (they report, they never raise for bad content):

1. `compose`: PyYAML's node tree (yaml.compose), converted here with YAML 1.2-style scalars:
   quoted text is a string; plain `-?[0-9]+` is an integer; only `true`/`false` are booleans;
   `null`, `~` and nothing are null; everything else (`22:00`, `no`, `on`, `2025-01-01`, `1.5`)
   stays a string. Every value and every key keeps its 1-based line and column. Duplicate keys,
   aliases and explicit tags are problems.
2. `build`: the schema (unknown keys with a did-you-mean and the expected keys, types naming
   what was expected and what was found) and the semantic checks of design-anchors B4.

`loader` adds the file name and wraps both into `LoadedPlaybook`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import lru_cache
from typing import Any, ClassVar, NamedTuple
from zoneinfo import ZoneInfo, available_timezones

import jinja2
import yaml

from guidebot.sop.playbook import (
    ACTIONS,
    DAY_NAMES,
    DEFAULT_TAG_EXPIRY,
    ENROLL,
    GOAL_EVENTS,
    SENDING_ACTIONS,
    STOP_EVENTS,
    TAG_EVENT_PREFIX,
    TRIGGER_EVENTS,
    WELCOME_CODE_LIFETIME,
    Audience,
    EnrollRule,
    Goal,
    Playbook,
    SendWindow,
    Step,
    Trigger,
    format_duration,
)
from guidebot.sop.templates import check_template, template_warnings

FILE = "(file)"  # the path shown for problems with the file as a whole
MAX_DEPTH = 32
MAX_DURATION = timedelta(days=3650)
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
    "steps",
)
TRIGGER_KEYS = ("event", "tag", "field", "cron", "audience")
AUDIENCE_KEYS = ("channels", "states", "stores", "tags")
ENROLL_KEYS = ("once_per", "reenter_after")
WINDOW_KEYS = ("hours", "days")
GOAL_KEYS = ("event", "within")
STEP_KEYS = ("id", "at", "action", "template", "expire_after", "tag", "content")
TRIGGER_ONLY = {"tag": "tag.added", "field": "date", "cron": "cron"}

# Names people reach for that difflib would not connect to ours.
SYNONYMS = {
    "send": "action",
    "do": "action",
    "when": "audience",
    "filter": "audience",
    "filters": "audience",
    "id": "playbook",
    "title": "name",
    "window": "send_window",
    "quiet_hours": "send_window",
    "tz": "timezone",
    "time_zone": "timezone",
    "zone": "timezone",
    "exit": "stop_when",
    "exit_when": "stop_when",
    "stop": "stop_when",
    "cap": "max_messages_per_day",
    "frequency_cap": "max_messages_per_day",
    "expires": "expire_after",
    "expiry": "expire_after",
    "ttl": "expire_after",
    "delay": "at",
    "wait": "at",
    "days_of_week": "days",
    "weekdays": "days",
    "time": "hours",
    "times": "hours",
    "message": "template",
    "re_enter_after": "reenter_after",
    "reenroll_after": "reenter_after",
}

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_STEP_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_FIELD = re.compile(r"[a-z][a-z0-9_]{0,63}")
_INT = re.compile(r"-?[0-9]+")
_DURATION = re.compile(r"(?:[0-9]+[smhdw])+")
_DURATION_PART = re.compile(r"([0-9]+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_AT = re.compile(r"\s*([^\s+]+)\s*(?:\+\s*(.*?)\s*)?")
_HOURS = re.compile(r"\s*([0-9]{1,2}):([0-9]{2})\s*-\s*([0-9]{1,2}):([0-9]{2})\s*")

_STR_TAG = "tag:yaml.org,2002:str"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAP_TAG = "tag:yaml.org,2002:map"
_ALIAS_TAG = "!guidebot/alias"


class Issue(NamedTuple):
    line: int
    col: int
    path: str
    message: str


# ---- stage 1: text to nodes ------------------------------------------------------------------

STR, INT, BOOL, NULL, MAP, SEQ, BAD = "str", "int", "bool", "null", "map", "seq", "bad"


@dataclass(eq=False)
class Node:
    """A converted YAML value with its position (1-based) and, in a mapping, its key's."""

    kind: str
    value: Any  # str | int | bool | None | dict[str, Node] | list[Node]
    line: int
    col: int
    key_line: int = 0
    key_col: int = 0
    quoted: bool = False


class _Composer(yaml.SafeLoader):
    """PyYAML's parser and composer without YAML 1.1 implicit types; aliases are kept apart."""

    yaml_implicit_resolvers: ClassVar[dict] = {}

    depth = 0

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.get_event()
            return yaml.ScalarNode(_ALIAS_TAG, event.anchor or "", event.start_mark, event.end_mark)
        if self.depth >= MAX_DEPTH:  # stop before Python's recursion limit does
            raise _TooDeep(self.peek_event().start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class _TooDeep(Exception):
    def __init__(self, mark: yaml.Mark) -> None:
        super().__init__("too deep")
        self.mark = mark


def compose(text: str) -> tuple[Node | None, list[Issue]]:
    """The document's node tree, or None with the syntax problem."""
    loader = None
    try:
        loader = _Composer(text)
        raw = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return None, [Issue(line, col, FILE, f"YAML syntax error: {_syntax_message(exc)}")]
    except yaml.reader.ReaderError as exc:
        before = text[: max(exc.position, 0)]
        line = before.count("\n") + 1
        col = len(before) - (before.rfind("\n") + 1) + 1
        shown = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        return None, [
            Issue(
                line, col, FILE, f"YAML syntax error: character {shown} is not allowed in YAML text"
            )
        ]
    except yaml.YAMLError as exc:
        return None, [Issue(1, 1, FILE, f"YAML syntax error: {exc}")]
    except _TooDeep as exc:
        line, col = exc.mark.line + 1, exc.mark.column + 1
        return None, [Issue(line, col, FILE, f"nested too deeply (at most {MAX_DEPTH} levels)")]
    except RecursionError:
        return None, [Issue(1, 1, FILE, f"nested too deeply (at most {MAX_DEPTH} levels)")]
    finally:
        if loader is not None:
            loader.dispose()
    if raw is None:
        return None, []
    issues: list[Issue] = []
    return _convert(raw, "", 0, issues), issues


def _syntax_message(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or ""
    context = exc.context or ""
    if context.endswith("; first occurrence"):  # found duplicate anchor 'a'; first occurrence
        first = f" (first at line {exc.context_mark.line + 1})" if exc.context_mark else ""
        message = context.removesuffix("; first occurrence") + first
    elif context and problem and not context.startswith("while"):
        message = f"{context}, {problem}"  # "expected a single document ..., but found ..."
    elif context and problem:
        where = f" at line {exc.context_mark.line + 1}" if exc.context_mark else ""
        message = f"{problem} ({context}{where})"
    else:
        message = problem or context or "the text cannot be parsed"
    if "'\\t'" in problem or "\t" in problem:
        message += "; indent with spaces, not tabs"
    elif "<block end>" in problem or "<block mapping start>" in problem:
        message += "; check the indentation"
    elif "mapping values are not allowed" in problem:
        message += "; check the indentation, and quote text that contains ': '"
    return message


def _convert(raw: yaml.Node, path: str, depth: int, issues: list[Issue]) -> Node:
    line, col = raw.start_mark.line + 1, raw.start_mark.column + 1
    shown = path or FILE
    if depth > MAX_DEPTH:
        issues.append(Issue(line, col, shown, f"nested too deeply (at most {MAX_DEPTH} levels)"))
        return Node(BAD, None, line, col)
    if raw.tag == _ALIAS_TAG:
        issues.append(
            Issue(
                line,
                col,
                shown,
                f"aliases (*{raw.value}) are not supported in playbooks; write the value out",
            )
        )
        return Node(BAD, None, line, col)
    if isinstance(raw, yaml.ScalarNode):
        if raw.tag != _STR_TAG:
            return _bad_tag(raw, shown, line, col, issues)
        if raw.style is None:
            return Node(*_plain(raw.value), line, col)
        return Node(STR, raw.value, line, col, quoted=True)
    if isinstance(raw, yaml.SequenceNode):
        if raw.tag != _SEQ_TAG:
            return _bad_tag(raw, shown, line, col, issues)
        items = [
            _convert(item, f"{path}[{i}]", depth + 1, issues) for i, item in enumerate(raw.value)
        ]
        return Node(SEQ, items, line, col)
    if isinstance(raw, yaml.MappingNode):
        if raw.tag != _MAP_TAG:
            return _bad_tag(raw, shown, line, col, issues)
        result: dict[str, Node] = {}
        for key_raw, value_raw in raw.value:
            kline, kcol = key_raw.start_mark.line + 1, key_raw.start_mark.column + 1
            if (
                not isinstance(key_raw, yaml.ScalarNode)
                or key_raw.tag != _STR_TAG
                or not isinstance(key_raw.value, str)
            ):
                what = "a list" if isinstance(key_raw, yaml.SequenceNode) else "a mapping"
                if isinstance(key_raw, yaml.ScalarNode):
                    what = "an alias" if key_raw.tag == _ALIAS_TAG else "a tagged value"
                issues.append(Issue(kline, kcol, shown, f"a key must be plain text, got {what}"))
                continue
            key = key_raw.value
            child_path = _join(path, key)
            if key in result:
                first = result[key]
                issues.append(
                    Issue(
                        kline,
                        kcol,
                        child_path,
                        f"duplicate key {key!r}: first at line {first.key_line}, again at line "
                        f"{kline}; a key may appear only once",
                    )
                )
                continue
            child = _convert(value_raw, child_path, depth + 1, issues)
            child.key_line, child.key_col = kline, kcol
            result[key] = child
        return Node(MAP, result, line, col)
    return Node(BAD, None, line, col)  # pragma: no cover - PyYAML has no other node kinds


def _plain(text: str) -> tuple[str, Any]:
    if _INT.fullmatch(text) and len(text) <= 18:
        return INT, int(text)
    if text in ("true", "false"):
        return BOOL, text == "true"
    if text in ("", "~", "null"):
        return NULL, None
    return STR, text


def _bad_tag(raw: yaml.Node, path: str, line: int, col: int, issues: list[Issue]) -> Node:
    tag = raw.tag.replace("tag:yaml.org,2002:", "!!")
    issues.append(
        Issue(
            line,
            col,
            path,
            f"YAML tag {tag!r} is not supported in playbooks; write the plain value (quote text)",
        )
    )
    return Node(BAD, None, line, col)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# ---- durations, days, hours ------------------------------------------------------------------


def parse_duration(text: str) -> timedelta:
    """`3d`, `20s`, `1d12h` (units s, m, h, d, w). ValueError with a message for HQ."""
    value = text.strip()
    if _INT.fullmatch(value):
        raise ValueError(f"duration {text!r} needs a unit: s, m, h, d or w (e.g. '{value}d')")
    if not _DURATION.fullmatch(value):
        raise ValueError(
            f"{text!r} is not a duration; write a whole number and a unit s, m, h, d or w, "
            "such as '3d', '20s' or '1d12h'"
        )
    seconds = 0
    for count, unit in _DURATION_PART.findall(value):
        if len(count) > 9:
            raise ValueError(f"duration {text!r} is too long (at most {MAX_DURATION.days}d)")
        seconds += int(count) * _UNITS[unit]
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"duration {text!r} is too long (at most {MAX_DURATION.days}d)")
    return timedelta(seconds=seconds)


def parse_days(items: Iterable[str]) -> frozenset[int]:
    """Day names and ranges (mon-fri, sat-sun; a range may wrap: fri-mon). ValueError."""
    days: set[int] = set()
    for item in items:
        for part in item.split(","):
            word = part.strip().lower()
            if not word:
                continue
            ends = [w.strip() for w in word.split("-")]
            if len(ends) > 2:
                raise ValueError(f"day range {part.strip()!r} has more than two ends")
            for end in ends:
                if end not in DAY_NAMES:
                    close = difflib.get_close_matches(end, DAY_NAMES, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise ValueError(
                        f"unknown day {end!r}{hint}; expected mon, tue, wed, thu, fri, sat or "
                        "sun, or a range such as 'mon-fri'"
                    )
            first, last = DAY_NAMES.index(ends[0]), DAY_NAMES.index(ends[-1])
            day = first
            days.add(day)
            while day != last:
                day = (day + 1) % 7
                days.add(day)
    return frozenset(days)


def parse_hours(text: str) -> tuple[time, time]:
    """`10:00-21:00` to (start, end); `24:00` ends at the end of the day. ValueError."""
    match = _HOURS.fullmatch(text)
    if not match:
        raise ValueError(f"hours {text!r} must be a range 'HH:MM-HH:MM', such as '10:00-21:00'")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    for hour, minute, shown in ((h1, m1, text.split("-")[0]), (h2, m2, text.split("-")[-1])):
        if hour > 24 or minute > 59 or (hour == 24 and minute):
            raise ValueError(f"{shown.strip()!r} is not a time of day (00:00 to 24:00)")
    if h1 == 24:
        raise ValueError("a window cannot start at 24:00")
    start = time(h1, m1)
    end = time.max if h2 == 24 else time(h2, m2)
    if end == start:
        raise ValueError(f"window {text.strip()!r} is empty; its end must be after its start")
    if end < start:
        raise ValueError(
            f"window {text.strip()!r} ends before it starts; a window cannot cross midnight and "
            "is never swapped: use one range within a day, such as '08:00-22:00'"
        )
    return start, end


@lru_cache(maxsize=1)
def _zone_names() -> tuple[str, ...]:
    return tuple(sorted(available_timezones()))


def valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError, IsADirectoryError, ...
        return False
    return True


# ---- stage 2: nodes to a Playbook -------------------------------------------------------------


def describe(node: Node) -> str:
    if node.kind == STR:
        text = node.value if len(node.value) <= 40 else node.value[:37] + "..."
        return f"string {text!r}" if node.value else "an empty string"
    if node.kind == INT:
        return f"integer {node.value}"
    if node.kind == BOOL:
        return f"boolean {'true' if node.value else 'false'}"
    if node.kind == NULL:
        return "an empty value"
    if node.kind == MAP:
        return "a mapping"
    if node.kind == SEQ:
        return "a list"
    return "an unreadable value"


def suggest(word: str, choices: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if close:
        return close[0]
    synonym = SYNONYMS.get(word.lower())
    return synonym if synonym in choices else None


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    hint = suggest(word, choices)
    return f" (did you mean {hint!r}?)" if hint else ""


@dataclass
class _StepDraft:
    index: int
    node: Node
    id: str | None = None
    anchor: str | None = None
    offset: timedelta | None = None
    action: str | None = None
    template: str | None = None
    expire_after: timedelta | None = None
    tag: str | None = None
    content: str | None = None
    ok: bool = True


class _Builder:
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
        if node.kind == STR and node.quoted and _INT.fullmatch(node.value) and "integer" in what:
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
                _join(path, key),
                f"unexpected key {key!r} in {section}{shown}; expected one of {sorted(keys)!r}",
            )
        for key, explanation in (required or {}).items():
            if key not in node.value and key not in suggested:
                self.error(node, _join(path, key), "required key is missing" + explanation)
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
        cap = 1
        if "max_messages_per_day" in top:
            cap = self.integer(
                top["max_messages_per_day"], "max_messages_per_day", "a positive integer", 1, 1000
            )
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
            source_text=self.text,
        )

    def playbook_id(self, node: Node | None) -> str | None:
        if node is None:
            return None
        value = self.string(node, "playbook", "the playbook id (text)")
        if value is None:
            return None
        if not _ID.fullmatch(value):
            self.error(
                node,
                "playbook",
                f"playbook id {value!r} may use only letters, digits, '_' and '-' (at most 64)",
            )
            return None
        if value != self.stem:
            self.error(
                node,
                "playbook",
                f"playbook id {value!r} must equal the file name {self.stem!r}; rename one of them",
            )
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
                f"unknown time zone {value!r}{_did_you_mean(value, _zone_names())}; use an IANA "
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
                f"unknown trigger event {event!r}{_did_you_mean(event, TRIGGER_EVENTS)}; "
                f"expected one of {list(TRIGGER_EVENTS)!r}",
            )
            return None, audience
        values: dict[str, str | None] = {"tag": None, "field": None, "cron": None}
        ok = True
        for key, needs in TRIGGER_ONLY.items():
            if key in keys and event != needs:
                self.key_error(
                    keys[key], f"trigger.{key}", f"'{key}' is only for trigger event '{needs}'"
                )
                ok = False
            elif key not in keys and event == needs:
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
        if not ok:
            return None, audience
        return Trigger(event=event, **values), audience  # type: ignore[arg-type]

    def date_field(self, node: Node) -> str | None:
        value = self.string(node, "trigger.field", "a date field name such as 'birthday'")
        if value is not None and not _FIELD.fullmatch(value):
            self.error(
                node,
                "trigger.field",
                f"date field {value!r} must be a lowercase name such as 'birthday'",
            )
            return None
        return value

    def cron(self, node: Node, zone_name: str | None) -> str | None:
        value = self.string(node, "trigger.cron", "a crontab such as '0 10 * * mon'")
        if value is None:
            return None
        fields = value.split()
        if len(fields) != 5:
            self.error(
                node,
                "trigger.cron",
                f"cron {value!r} needs 5 fields (minute hour day month day-of-week), "
                f"got {len(fields)}",
            )
            return None
        if any(c.isdigit() for c in fields[4]):
            self.error(
                node,
                "trigger.cron",
                f"cron day-of-week {fields[4]!r} must use names (mon, tue, ... sun, or mon-fri): "
                "numbers mean different days in different cron dialects",
            )
            return None
        from apscheduler.triggers.cron import CronTrigger

        zone = ZoneInfo(zone_name or "UTC")
        try:
            trigger = CronTrigger.from_crontab(value, timezone=zone)
            fires = trigger.get_next_fire_time(None, datetime(2024, 1, 1, tzinfo=zone))
        except Exception as exc:
            self.error(node, "trigger.cron", f"invalid cron {value!r}: {exc}")
            return None
        if fires is None:
            self.error(node, "trigger.cron", f"cron {value!r} never fires (no such date)")
            return None
        return " ".join(fields)

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
                    f"unknown once_per {value!r}{_did_you_mean(value, ONCE_PER)}; expected one "
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
        hint = _did_you_mean(value, choices)
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

    def steps(self, node: Node | None, trigger: Trigger | None) -> list[Step] | None:
        if node is None:
            return None
        if node.kind != SEQ:
            self.expected(node, "steps", "a list of steps")
            return None
        if not node.value:
            self.error(node, "steps", "a playbook needs at least one step")
            return None
        drafts = [self.step_shape(i, item) for i, item in enumerate(node.value)]
        index_of: dict[str, int] = {}
        for draft in drafts:
            if draft.id is None:
                continue
            if draft.id in index_of:
                self.error(
                    draft.node.value["id"],
                    f"steps[{draft.index}].id",
                    f"step id {draft.id!r} already used by steps[{index_of[draft.id]}]; ids are "
                    "idempotency keys and must be unique",
                )
                draft.ok = False
            else:
                index_of[draft.id] = draft.index
        welcome_at: int | None = None
        for draft in drafts:
            self.step_anchor(draft, index_of)
            self.step_rules(draft, trigger, welcome_at)
            if draft.action == "welcome" and welcome_at is None:
                welcome_at = draft.index
        if not all(d.ok for d in drafts):
            return None
        return [
            Step(
                id=d.id,  # type: ignore[arg-type]
                anchor=d.anchor,  # type: ignore[arg-type]
                offset=d.offset,  # type: ignore[arg-type]
                action=d.action,  # type: ignore[arg-type]
                template=d.template,
                expire_after=d.expire_after,  # type: ignore[arg-type]
                tag=d.tag,
                content=d.content,
            )
            for d in drafts
        ]

    def step_shape(self, index: int, node: Node) -> _StepDraft:
        draft = _StepDraft(index, node)
        path = f"steps[{index}]"
        if node.kind != MAP:
            self.expected(node, path, "a step (a mapping with id, at, action, template, ...)")
            draft.ok = False
            return draft
        keys = self.mapping(
            node,
            path,
            "step",
            STEP_KEYS,
            {
                "id": " (a unique name such as 'day3')",
                "at": " ('enroll' or '<earlier step id> + <duration>')",
                "action": f"; expected one of {list(ACTIONS)!r}",
            },
        )
        assert keys is not None
        if len(keys) != len(node.value) or not {"id", "at", "action"} <= keys.keys():
            draft.ok = False
        if "id" in keys:
            draft.id = self.step_id(keys["id"], f"{path}.id")
            draft.ok = draft.ok and draft.id is not None
        if "action" in keys:
            action = self.string(keys["action"], f"{path}.action", "an action")
            if action is not None and action not in ACTIONS:
                self.error(
                    keys["action"],
                    f"{path}.action",
                    f"unknown action {action!r}{_did_you_mean(action, ACTIONS)}; "
                    f"expected one of {list(ACTIONS)!r}",
                )
                action = None
            draft.action = action
            draft.ok = draft.ok and action is not None
        if "expire_after" in keys:
            draft.expire_after = self.duration(keys["expire_after"], f"{path}.expire_after")
            draft.ok = draft.ok and draft.expire_after is not None
        if "template" in keys:
            draft.template = self.string(
                keys["template"], f"{path}.template", "a template file name"
            )
            draft.ok = draft.ok and draft.template is not None
        if "tag" in keys:
            draft.tag = self.string(keys["tag"], f"{path}.tag", "a tag name or id")
            draft.ok = draft.ok and draft.tag is not None
        if "content" in keys:
            content = keys["content"]
            if content.kind == INT:
                draft.content = str(content.value)
            else:
                draft.content = self.string(content, f"{path}.content", "a content item id")
                draft.ok = draft.ok and draft.content is not None
        return draft

    def step_id(self, node: Node, path: str) -> str | None:
        value = self.string(node, path, "a step id (text)")
        if value is None:
            return None
        if value == ENROLL:
            self.error(node, path, "'enroll' names the enrollment itself; choose another step id")
            return None
        if not _STEP_ID.fullmatch(value):
            self.error(
                node,
                path,
                f"step id {value!r} may use only letters, digits, '_' and '-', starting with a "
                "letter (at most 64)",
            )
            return None
        return value

    def step_anchor(self, draft: _StepDraft, index_of: Mapping[str, int]) -> None:
        if draft.node.kind != MAP or "at" not in draft.node.value:
            return
        node: Node = draft.node.value["at"]
        path = f"steps[{draft.index}].at"
        if node.kind == INT:
            self.error(
                node,
                path,
                f"expected 'enroll' or '<earlier step id> + <duration>', got integer "
                f"{node.value}; write 'enroll + {node.value}d' for {node.value} days after "
                "enrolling",
            )
            draft.ok = False
            return
        text = self.string(node, path, "'enroll' or '<earlier step id> + <duration>'")
        if text is None:
            draft.ok = False
            return
        match = _AT.fullmatch(text)
        if not match:
            self.error(
                node,
                path,
                f"expected 'enroll' or '<earlier step id> + <duration>' such as 'welcome + 3d', "
                f"got {text!r}",
            )
            draft.ok = False
            return
        anchor, offset_text = match.group(1), match.group(2)
        earlier = [ENROLL] + [
            d_id for d_id, i in sorted(index_of.items(), key=lambda kv: kv[1]) if i < draft.index
        ]
        if anchor not in earlier:
            draft.ok = False
            if anchor == draft.id:
                self.error(node, path, f"step {anchor!r} cannot be anchored on itself")
            elif anchor in index_of:
                self.error(
                    node,
                    path,
                    f"anchor {anchor!r} is steps[{index_of[anchor]}], which comes later; a step "
                    "can only follow an earlier one",
                )
            elif offset_text is None and _looks_like_duration(anchor):
                self.error(
                    node,
                    path,
                    f"{anchor!r} has no anchor; write 'enroll + {anchor}' or "
                    f"'<earlier step id> + {anchor}'",
                )
            else:
                self.error(
                    node,
                    path,
                    f"unknown anchor {anchor!r}{_did_you_mean(anchor, earlier)}; "
                    f"expected one of {earlier!r}",
                )
            return
        offset = timedelta(0)
        if offset_text is not None:
            try:
                offset = parse_duration(offset_text)
            except ValueError as exc:
                self.error(node, path, str(exc))
                draft.ok = False
                return
        draft.anchor, draft.offset = anchor, offset

    def step_rules(
        self, draft: _StepDraft, trigger: Trigger | None, welcome_at: int | None
    ) -> None:
        if draft.node.kind != MAP or draft.action is None:
            return
        keys: dict[str, Node] = draft.node.value
        path = f"steps[{draft.index}]"
        action = draft.action
        sends = action in SENDING_ACTIONS
        if sends and "expire_after" not in keys:
            self.error(
                draft.node,
                path,
                "a sending step needs 'expire_after' (what to do if the step is overdue after an "
                "outage); otherwise a late restart sends stale messages",
            )
            draft.ok = False
        if sends and "template" not in keys:
            self.error(
                draft.node,
                f"{path}.template",
                f"required key is missing for action {action!r} (a file in the message templates)",
            )
            draft.ok = False
        if not sends and "template" in keys:
            self.key_error(
                keys["template"],
                f"{path}.template",
                "action 'tag' sends no message; remove 'template'",
            )
            draft.ok = False
        if action == "tag" and "tag" not in keys:
            self.error(
                draft.node,
                f"{path}.tag",
                "required key is missing for action 'tag' (the corp tag to mark)",
            )
            draft.ok = False
        if action != "tag" and "tag" in keys:
            self.key_error(keys["tag"], f"{path}.tag", "'tag' is only for action 'tag'")
            draft.ok = False
        if action not in ("welcome", "guide_task") and "content" in keys:
            self.key_error(
                keys["content"],
                f"{path}.content",
                "'content' is only for actions welcome and guide_task",
            )
            draft.ok = False
        if action == "tag" and draft.expire_after is None and "expire_after" not in keys:
            draft.expire_after = DEFAULT_TAG_EXPIRY
        if action == "welcome":
            self.welcome_rules(draft, keys, path, trigger, welcome_at)
        if sends and draft.template is not None and self.env is not None:
            problems = check_template(self.env, draft.template)
            for problem in problems:
                self.error(keys["template"], f"{path}.template", problem)
                draft.ok = False
            if not problems:
                for warning in template_warnings(self.env, draft.template):
                    self.warning(keys["template"], f"{path}.template", warning)

    def welcome_rules(
        self,
        draft: _StepDraft,
        keys: Mapping[str, Node],
        path: str,
        trigger: Trigger | None,
        welcome_at: int | None,
    ) -> None:
        if welcome_at is not None:
            self.error(
                keys["action"],
                f"{path}.action",
                f"only one welcome step per playbook (already steps[{welcome_at}]); a welcome "
                "code works once",
            )
            draft.ok = False
        if trigger is not None and trigger.event != "customer.added":
            self.error(
                keys["action"],
                f"{path}.action",
                f"action 'welcome' needs trigger event 'customer.added', not {trigger.event!r}: "
                "only an add carries a welcome code",
            )
            draft.ok = False
        if draft.anchor is not None and (draft.anchor != ENROLL or draft.offset):
            self.error(
                keys["at"],
                f"{path}.at",
                "a welcome step must be at 'enroll': WeCom's welcome code lives 20 s after the add",
            )
            draft.ok = False
        if draft.expire_after is not None and draft.expire_after > WELCOME_CODE_LIFETIME:
            self.error(
                keys["expire_after"],
                f"{path}.expire_after",
                "a welcome step must expire within 20s (WeCom's welcome code lives 20 s), got "
                f"{format_duration(draft.expire_after)}",
            )
            draft.ok = False

    def reentry(self, reenter_after: timedelta, node: Node, steps: list[Step]) -> None:
        totals: dict[str, timedelta] = {}
        for step in steps:
            base = timedelta(0) if step.anchor == ENROLL else totals[step.anchor]
            totals[step.id] = base + step.offset
        last = max(steps, key=lambda s: totals[s.id])
        if reenter_after < totals[last.id]:
            self.error(
                node,
                "enroll.reenter_after",
                f"reenter_after {format_duration(reenter_after)} is shorter than the playbook: "
                f"its last step {last.id!r} is {format_duration(totals[last.id])} after enroll; "
                "a customer could be in two runs at once",
            )


def _looks_like_duration(text: str) -> bool:
    return bool(_DURATION.fullmatch(text) or _INT.fullmatch(text))


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
