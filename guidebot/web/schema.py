"""The JSON API's declarations, as JSON Schema, and the one checker that holds requests to them.

Every path parameter, query parameter and body of /api/v1 is declared once, with the builders
below, in its route's decorator (guidebot.web.api). The same dict is the OpenAPI document's
schema and what `check` holds the request to, so the document and the validation cannot drift.

`check` knows these keywords and refuses a schema with any other (so nothing the document says
goes unenforced): type, enum, minLength, maxLength, pattern, not, format, minimum, maximum,
multipleOf, items, minItems, maxItems, properties, required, additionalProperties, anyOf;
description and default are annotations. Three deliberate readings, said in the document too:

* an integer is a JSON number written without a fraction: 1.0 and true are not integers;
* multipleOf is decimal: 0.07 is a multiple of 0.01 (JSON numbers are decimal text);
* formats are checked: `date-time` is ISO 8601 with a UTC offset, `date` is YYYY-MM-DD,
  `date-or-time` is either (a time without an offset is GUIDEBOT_TIMEZONE's), all in the years
  FIRST_YEAR..LAST_YEAR; `time-zone` is an IANA name; `http-url` is an absolute http(s) URL.

Strings never hold control characters (C0, DEL, C1): they end up in URLs, response headers,
multipart headers to WeCom and HTML. `text(multiline=True)` lets a line feed through, for
words a person reads (a message, a note); nothing else.
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

Schema = dict[str, Any]

# Regular expressions that read the same in Python and in ECMA 262 (OpenAPI's dialect).
CONTROL = "[\\x00-\\x1f\\x7f-\\x9f]"
CONTROL_BUT_LF = "[\\x00-\\x09\\x0b-\\x1f\\x7f-\\x9f]"
_CONTROL = re.compile(CONTROL)
# "not" a string holding one (a null, where allowed, is no string at all).
_NOT_LINE = {"type": "string", "pattern": CONTROL}
_NOT_TEXT = {"type": "string", "pattern": CONTROL_BUT_LF}

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

KEYWORDS = frozenset(
    {
        "type",
        "enum",
        "minLength",
        "maxLength",
        "pattern",
        "not",
        "format",
        "minimum",
        "maximum",
        "multipleOf",
        "items",
        "minItems",
        "maxItems",
        "properties",
        "required",
        "additionalProperties",
        "anyOf",
        "description",
        "default",
    }
)


class SchemaError(ValueError):
    """The value does not fit its declaration; `reason` names the field and says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---- builders ----------------------------------------------------------------------------------


def text(
    max_length: int,
    *,
    min_length: int = 1,
    multiline: bool = False,
    pattern: str | None = None,
    enum: list[str] | tuple[str, ...] | None = None,
    fmt: str | None = None,
    nullable: bool = False,
    description: str | None = None,
) -> Schema:
    """A string of min_length..max_length characters without control characters."""
    schema: Schema = {"type": ["string", "null"] if nullable else "string"}
    if enum is not None:
        schema["enum"] = [*enum, None] if nullable else list(enum)
    else:
        schema["minLength"] = min_length
        schema["maxLength"] = max_length
        if pattern is not None:
            schema["pattern"] = pattern
        schema["not"] = _NOT_TEXT if multiline else _NOT_LINE
    if fmt is not None:
        schema["format"] = fmt
    if description is not None:
        schema["description"] = description
    return schema


def integer(
    lo: int, hi: int, *, default: int | None = None, description: str | None = None
) -> Schema:
    schema: Schema = {"type": "integer", "minimum": lo, "maximum": hi}
    if default is not None:
        schema["default"] = default
    if description is not None:
        schema["description"] = description
    return schema


def boolean(*, description: str | None = None) -> Schema:
    schema: Schema = {"type": "boolean"}
    if description is not None:
        schema["description"] = description
    return schema


def array(items: Schema, *, max_items: int, min_items: int = 0) -> Schema:
    return {"type": "array", "items": items, "minItems": min_items, "maxItems": max_items}


def obj(properties: dict[str, Schema], *required: str, description: str | None = None) -> Schema:
    """An object with exactly these properties (an unknown one is refused, never ignored)."""
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    if description is not None:
        schema["description"] = description
    return schema


def nullable(schema: Schema) -> Schema:
    """The schema, or null (in a PATCH: clear the field)."""
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    out = {**schema, "type": [*kinds, "null"]}
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


# ---- formats -----------------------------------------------------------------------------------


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


# ---- the checker -------------------------------------------------------------------------------


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


def _is(value: Any, type_name: str) -> bool:
    if type_name == "null":
        return value is None
    if type_name == "boolean":
        return isinstance(value, bool)
    if type_name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if type_name == "string":
        return isinstance(value, str)
    if type_name == "array":
        return isinstance(value, list)
    return isinstance(value, dict)


_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "array": "an array",
    "object": "an object",
    "null": "null",
}


def _name(where: str) -> str:
    return repr(where) if where else "body"


def decimal_multiple(value: int | float, step: int | float) -> bool:
    """value is a whole multiple of step, read as the decimals JSON wrote."""
    try:
        return (Decimal(repr(value)) % Decimal(repr(step))) == 0
    except InvalidOperation:  # too many digits for the context: no such amount
        return False


def check(schema: Schema, value: Any, where: str = "") -> None:
    """Raise SchemaError naming `where` (a dotted path: "filter.tags[2]") when value does not
    fit schema."""
    name = _name(where)
    declared = schema.get("type")
    if declared is not None:
        kinds = declared if isinstance(declared, list) else [declared]
        if not any(_is(value, k) for k in kinds):
            expected = _expected(schema, kinds)
            if value is None:
                raise SchemaError(f"{name} cannot be null; give {expected}, or leave it out")
            raise SchemaError(f"{name} must be {expected}, got {kind(value)}")
    if "enum" in schema and value not in schema["enum"]:
        shown = ", ".join("null" if v is None else str(v) for v in schema["enum"])
        raise SchemaError(f"{name} must be one of {shown}; got {str(value)[:40]!r}")
    if isinstance(value, str):
        _check_string(schema, value, name)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _check_number(schema, value, name)
    elif isinstance(value, list):
        _check_array(schema, value, where)
    elif isinstance(value, dict):
        _check_object(schema, value, where)
    if "not" in schema and _fits(schema["not"], value):
        if schema["not"] == _NOT_LINE:
            raise SchemaError(f"{name} may not hold control characters, line breaks included")
        if schema["not"] == _NOT_TEXT:
            raise SchemaError(f"{name} may not hold control characters other than line feeds")
        raise SchemaError(f"{name} is not allowed here")
    if "anyOf" in schema and not any(_fits(option, value) for option in schema["anyOf"]):
        # The one form of the value's type says best what is wrong with it ("1.005": too many
        # decimals for a string amount); else the forms' description.
        typed = [o for o in schema["anyOf"] if any(_is(value, k) for k in _types(o))]
        if len(typed) == 1:
            check(typed[0], value, where)
        raise SchemaError(f"{name} must be {schema.get('description') or 'of another form'}")


def _types(schema: Schema) -> list[str]:
    declared = schema.get("type", [])
    return declared if isinstance(declared, list) else [declared]


def _expected(schema: Schema, kinds: list[str]) -> str:
    if "integer" in kinds and "minimum" in schema and "maximum" in schema:
        return f"an integer from {schema['minimum']} to {schema['maximum']}"
    return " or ".join(_TYPE_WORDS[k] for k in kinds)


def _fits(schema: Schema, value: Any) -> bool:
    try:
        check(schema, value)
    except SchemaError:
        return False
    return True


def _check_string(schema: Schema, value: str, name: str) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        if schema["minLength"] == 1:
            raise SchemaError(f"{name} may not be empty")
        raise SchemaError(f"{name} must be at least {schema['minLength']} characters")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise SchemaError(f"{name} is longer than {schema['maxLength']} characters")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        said = schema.get("description")
        raise SchemaError(f"{name} must be {said}" if said else f"{name} has the wrong form")
    if "format" in schema:
        problem = FORMATS[schema["format"]](value, name)
        if problem is not None:
            raise SchemaError(problem)


def _check_number(schema: Schema, value: int | float, name: str) -> None:
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if lo is not None and hi is not None:
            raise SchemaError(f"{name} must be between {lo} and {hi}")
        bound = f"at least {lo}" if lo is not None else f"at most {hi}"
        raise SchemaError(f"{name} must be {bound}")
    if "multipleOf" in schema and not decimal_multiple(value, schema["multipleOf"]):
        raise SchemaError(f"{name} must be a multiple of {schema['multipleOf']}")


def _check_array(schema: Schema, value: list[Any], where: str) -> None:
    name = _name(where)
    if len(value) < schema.get("minItems", 0):
        raise SchemaError(f"{name} needs at least {schema['minItems']} entries")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        raise SchemaError(f"{name} has more than {schema['maxItems']} entries")
    if "items" in schema:
        for i, item in enumerate(value):
            check(schema["items"], item, f"{where}[{i}]")


def _check_object(schema: Schema, value: dict[str, Any], where: str) -> None:
    properties: dict[str, Schema] = schema.get("properties", {})
    prefix = f"{where}." if where else ""
    if schema.get("additionalProperties") is False:
        unknown = sorted(set(value) - set(properties))
        if unknown:
            raise SchemaError(
                f"unknown field {(prefix + unknown[0])[:60]!r}; fields are {', '.join(properties)}"
            )
    for key, item in value.items():  # what was given first: its reason is the useful one
        if key in properties:
            check(properties[key], item, prefix + key)
    for required in schema.get("required", ()):
        if required not in value:
            raise SchemaError(f"{prefix + required!r} is required")


def verify_schema(schema: Schema, where: str = "schema", *, values: bool = True) -> None:
    """A declaration uses only the keywords `check` enforces, and bounds every number and string
    (called when routes are declared, so an unbounded parameter never starts)."""
    unknown = set(schema) - KEYWORDS
    if unknown:
        raise ValueError(f"{where}: keyword {sorted(unknown)[0]!r} is not enforced by check()")
    kinds = _types(schema) if values else []  # a "not" describes what is refused, not a value
    if {"integer", "number"} & set(kinds) and not {"minimum", "maximum"} <= set(schema):
        raise ValueError(f"{where}: a number needs both bounds (minimum and maximum)")
    if "string" in kinds and "enum" not in schema and "maxLength" not in schema:
        raise ValueError(f"{where}: a string needs a maxLength")
    if "array" in kinds and "maxItems" not in schema:
        raise ValueError(f"{where}: an array needs a maxItems")
    if "format" in schema and schema["format"] not in FORMATS:
        raise ValueError(f"{where}: unknown format {schema['format']!r}")
    for key in ("items", "not", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            verify_schema(schema[key], f"{where}.{key}", values=key != "not")
    for key, sub in schema.get("properties", {}).items():
        verify_schema(sub, f"{where}.{key}")
    for i, sub in enumerate(schema.get("anyOf", ())):
        verify_schema(sub, f"{where}.anyOf[{i}]")


# ---- answers -----------------------------------------------------------------------------------
# Response bodies are documented with the same JSON Schema (tests hold every answer to them).

STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
NUMBER: Schema = {"type": "number"}
BOOLEAN: Schema = {"type": "boolean"}
INSTANT: Schema = {"type": "string", "format": "date-time"}
ANY: Schema = {}


def maybe(schema: Schema) -> Schema:
    """The schema, or null."""
    if not schema:
        return schema
    return nullable(schema)


def shape(properties: dict[str, Schema], *, optional: tuple[str, ...] = ()) -> Schema:
    """An answer's object: every property present unless optional, nothing else."""
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }


def list_of(item: Schema) -> Schema:
    return {"type": "array", "items": item}


def mapping(values: Schema) -> Schema:
    """An object whose keys are data (a step id, a version) and whose values are alike."""
    return {"type": "object", "additionalProperties": values}
