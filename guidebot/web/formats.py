"""What the API's declared text may hold, and the formats it names (guidebot.web.api.declare).

Strings never hold control characters (C0, DEL, C1): they end up in URLs, response headers,
multipart headers to WeCom and HTML; text a person reads (a message, a note) may hold line feeds.
The formats are checked, not only named: `date-time` is ISO 8601 with a UTC offset, `date` is
YYYY-MM-DD, `date-or-time` is either (a time without an offset is GUIDEBOT_TIMEZONE's), all in
the years FIRST_YEAR..LAST_YEAR; `time-zone` is an IANA name; `http-url` is an absolute http(s)
URL. Each check returns None, or what is wrong, in English, after `where` (the field's name).
The tests' reference validator (tests/fuzz/test_openapi_agreement.py) uses the same checks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import available_timezones

from guidebot.clock import FIRST_YEAR, LAST_YEAR

# Regular expressions that read the same in Python and in ECMA 262 (OpenAPI's dialect).
CONTROL = "[\\x00-\\x1f\\x7f-\\x9f]"
CONTROL_BUT_LF = "[\\x00-\\x09\\x0b-\\x1f\\x7f-\\x9f]"
CONTROL_CHARACTER = re.compile(CONTROL)

# The ranges of the database's integer columns (PostgreSQL's; SQLite's INTEGER is 64-bit):
# INT32_MAX for Integer (departments.id, content_items.id, store ids), INT64_MAX for BigInteger
# (task, mass-send, order row ids).
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def _years(year: int, where: str) -> str | None:
    if not FIRST_YEAR <= year <= LAST_YEAR:
        return f"{where} must fall in the years {FIRST_YEAR} to {LAST_YEAR}"
    return None


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _date(value: str, where: str) -> str | None:
    if not _DATE.fullmatch(value):
        return f"{where} must be a date YYYY-MM-DD, got {value[:40]!r}"
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return f"{where} {value!r} is not a calendar date"
    return _years(day.year, where)


def _instant(value: str, where: str, *, naive_ok: bool) -> str | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return f"{where} {value[:40]!r} is not an ISO 8601 date-time"
    if parsed.tzinfo is None and not naive_ok:
        return f"{where} {value[:40]!r} has no UTC offset (add Z or +08:00)"
    # The local year and, with an offset, the UTC year: near the ends either may overflow.
    if problem := _years(parsed.year, where):
        return problem
    if parsed.tzinfo is not None:
        offset = parsed.utcoffset()
        assert offset is not None
        if abs(offset.total_seconds()) >= 86_400:
            return f"{where} {value[:40]!r} has an offset of a day or more"
        year = (parsed.replace(tzinfo=None) - offset).year
        return _years(year, where)
    return None


def _date_time(value: str, where: str) -> str | None:
    return _instant(value, where, naive_ok=False)


def _date_or_time(value: str, where: str) -> str | None:
    if _DATE.fullmatch(value):
        problem = _date(value, where)
        moment = None if problem else datetime.fromisoformat(value)
    else:
        problem = _instant(value, where, naive_ok=True)
        moment = None if problem else datetime.fromisoformat(value)
    if problem or moment is None or moment.tzinfo is not None:
        return problem
    # A date or a time without an offset is read in a zone the schema does not know: within a
    # day of either end of the window it may be a UTC instant outside it (1970-01-01 in
    # Shanghai is 1969-12-31 in UTC), which no answer could then show.
    return _years((moment - timedelta(days=1)).year, where) or _years(
        (moment + timedelta(days=1)).year, where
    )


@cache
def time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _time_zone(value: str, where: str) -> str | None:
    if value not in time_zones():
        return f"{where} {value[:40]!r} is not an IANA time zone name (such as Asia/Shanghai)"
    return None


def _http_url(value: str, where: str) -> str | None:
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in value
    except ValueError:  # an unbalanced IPv6 bracket, a port out of range
        ok = False
    if not ok:
        return f"{where} must be an http(s) URL with a host"
    return None


FORMATS: dict[str, Callable[[str, str], str | None]] = {
    "date": _date,
    "date-time": _date_time,
    "date-or-time": _date_or_time,
    "time-zone": _time_zone,
    "http-url": _http_url,
}


def format_ok(name: str, value: Any) -> bool:
    """For other checkers (the tests' reference validator): does `value` have format `name`?"""
    return not isinstance(value, str) or FORMATS[name](value, "value") is None


def kind(value: Any) -> str:
    """The JSON type of a decoded value, for reasons ("got a boolean")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction" if value != int(value) else "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def decimal_multiple(value: int | float, step: int | float) -> bool:
    """value is a whole multiple of step, read as the decimals JSON wrote."""
    try:
        return (Decimal(repr(value)) % Decimal(repr(step))) == 0
    except InvalidOperation:  # too many digits for the context: no such amount
        return False
