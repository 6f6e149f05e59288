"""The values a playbook is written in: durations, days, hours, time zones; and how a
problem names what it found and suggests what was meant."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from datetime import time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from guidebot.sop.playbook import DAY_NAMES
from guidebot.sop.yaml_nodes import BOOL, INT, INT_TEXT, MAP, NULL, SEQ, STR, Node

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
_DURATION = re.compile(r"(?:[0-9]+[smhdw])+")
_DURATION_PART = re.compile(r"([0-9]+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_HOURS = re.compile(r"\s*([0-9]{1,2}):([0-9]{2})\s*-\s*([0-9]{1,2}):([0-9]{2})\s*")

MAX_DURATION = timedelta(days=3650)


# ---- durations, days, hours ------------------------------------------------------------------


def parse_duration(text: str) -> timedelta:
    """`3d`, `20s`, `1d12h` (units s, m, h, d, w). ValueError with a message for HQ."""
    value = text.strip()
    if INT_TEXT.fullmatch(value):
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
def zone_names() -> tuple[str, ...]:
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


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    hint = suggest(word, choices)
    return f" (did you mean {hint!r}?)" if hint else ""


def looks_like_duration(text: str) -> bool:
    return bool(_DURATION.fullmatch(text) or INT_TEXT.fullmatch(text))
