"""Request declarations: a route's query, path and body, declared once as pydantic models.

    class CustomerFilter(Query):
        guide: USERID = None                    # a query parameter is one line
        page: Int(1, 1_000_000) = 1

    class StoreChange(Body):
        \"\"\"What the OpenAPI document says about the body as a whole.\"\"\"
        code: CODE = None                       # absent: keep; null: a 400 (not nullable)
        timezone: Text(64, fmt="time-zone") | None = None   # null: clear it

The model is what the request is validated with and, through `json_schema` (pydantic's
`model_json_schema`, made self-contained), what the OpenAPI document shows, so the two cannot
drift. Every model refuses an unknown field or query parameter (`extra="forbid"`), takes JSON's
types as they are (`strict`: 1.0 and true are not integers, "1" is not a number) and reads
patterns as Python (and the document's reference validator) does.

The field types below add what pydantic has no word for and say it in the schema too: text
never holds control characters (`not`), formats are checked (guidebot.web.formats), a number's
`multipleOf` is decimal. `verify_schema` refuses, when a route is declared, a schema with a
number without both bounds, a string without a maxLength, an array without a maxItems, or a
keyword nothing enforces. `reason` turns pydantic's errors into the API's 400 reason: Chinese
first, then English, naming the field ("'media.content_type'").
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from guidebot.clock import FIRST_YEAR, LAST_YEAR
from guidebot.web.formats import (
    CONTROL,
    CONTROL_BUT_LF,
    CONTROL_CHARACTER,
    FORMATS,
    decimal_multiple,
    kind,
)

Schema = dict[str, Any]


class Declared(BaseModel):
    # An unknown field is refused, never ignored; JSON's types are taken as they are; patterns
    # read as Python's re reads them, as the tests' reference validator (jsonschema) does.
    model_config = ConfigDict(extra="forbid", strict=True, regex_engine="python-re")


class Query(Declared):
    """Query parameters: strings, integers (digits) and booleans (true/false) only."""


class Body(Declared):
    """A JSON request body (an object)."""


# ---- field types -------------------------------------------------------------------------------


def _refuse(zh: str, en: str) -> PydanticCustomError:
    # `reason` puts the field's name before both halves.
    return PydanticCustomError("guidebot", "{en}", {"zh": zh, "en": en})


def _no_control(value: str) -> str:
    # isprintable is False for every control character: a fast pass for most text (a 20 MB
    # file in base64 is 27 M characters).
    if not value.isprintable() and CONTROL_CHARACTER.search(value):
        raise _refuse(
            "不能包含控制字符（包括换行）", "may not hold control characters, line breaks included"
        )
    return value


def _no_control_but_lf(value: str) -> str:
    if not value.isprintable() and CONTROL_CHARACTER.search(value.replace("\n", "")):
        raise _refuse(
            "不能包含换行以外的控制字符", "may not hold control characters other than line feeds"
        )
    return value


_FORMAT_ZH = {
    "date": f"应为 {FIRST_YEAR} 到 {LAST_YEAR} 年间的日期 YYYY-MM-DD",
    "date-time": f"应为 {FIRST_YEAR} 到 {LAST_YEAR} 年间、带 UTC 偏移的 ISO 8601 时间",
    "date-or-time": f"应为 {FIRST_YEAR} 到 {LAST_YEAR} 年间的日期或 ISO 8601 时间",
    "time-zone": "应为 IANA 时区名（如 Asia/Shanghai）",
    "http-url": "应为带主机名的 http(s) 网址",
}


def _format(name: str) -> Callable[[str], str]:
    check = FORMATS[name]

    def holds(value: str) -> str:
        problem = check(value, "")
        if problem is not None:
            raise _refuse(_FORMAT_ZH[name], problem.strip())
        return value

    return holds


def Text(  # a type, so named like one
    max_length: int,
    *,
    min_length: int = 1,
    multiline: bool = False,
    pattern: str | None = None,
    fmt: str | None = None,
    description: str | None = None,
) -> Any:
    """A string of min_length..max_length characters without control characters (a line feed
    is allowed in `multiline` text, words a person reads); `fmt` names a checked format."""
    extra: Schema = {"not": {"type": "string", "pattern": CONTROL_BUT_LF if multiline else CONTROL}}
    checks = [AfterValidator(_no_control_but_lf if multiline else _no_control)]
    if fmt is not None:
        extra["format"] = fmt
        checks.append(AfterValidator(_format(fmt)))
    field = Field(
        min_length=min_length,
        max_length=max_length,
        pattern=pattern,
        description=description,
        json_schema_extra=extra,
    )
    return Annotated[str, field, *checks]


def OneOf(*values: str, description: str | None = None) -> Any:
    """One of these words (an enum)."""
    return Annotated[Literal[values], Field(description=description)]  # type: ignore[valid-type]


def Int(lo: int, hi: int, *, description: str | None = None) -> Any:
    """An integer from lo to hi (written without a fraction: 1.0 and true are refused)."""
    return Annotated[int, Field(ge=lo, le=hi, description=description)]


def Number(
    lo: float, hi: float, *, multiple_of: float | None = None, description: str | None = None
) -> Any:
    """A number from lo to hi; `multiple_of` is read in decimal (0.07 is a multiple of 0.01)."""
    if multiple_of is None:
        return Annotated[float, Field(ge=lo, le=hi, description=description)]
    step = multiple_of

    def multiple(value: float) -> float:
        if not decimal_multiple(value, step):
            raise _refuse(f"应为 {step} 的整数倍", f"must be a multiple of {step}")
        return value

    extra = {"multipleOf": step}
    field = Field(ge=lo, le=hi, description=description, json_schema_extra=extra)
    return Annotated[float, field, AfterValidator(multiple)]


def Bool(*, description: str | None = None) -> Any:
    return Annotated[bool, Field(description=description)]


def Array(item: Any, *, max_items: int, min_items: int = 0) -> Any:
    """A list of min_items..max_items items."""
    return Annotated[list[item], Field(min_length=min_items, max_length=max_items)]  # type: ignore[valid-type]


def Either(*options: Any, description: str) -> Any:
    """One of several forms (a store's code or its department id); `description` names them."""
    union = options[0]
    for option in options[1:]:
        union = union | option
    return Annotated[union, Field(description=description)]


# ---- the schema --------------------------------------------------------------------------------


@cache
def json_schema(model: type[BaseModel]) -> Schema:
    """The model's JSON Schema as the OpenAPI document shows it: self-contained (nested models
    inlined), without pydantic's titles, `const` as a one-word enum, and no `default: null` (in
    a PATCH, leaving a field out and sending null mean different things)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.pop("$defs", {})
    return _clean(raw, definitions)


def _clean(node: Schema, definitions: dict[str, Schema]) -> Schema:
    if "$ref" in node:
        target = definitions[node["$ref"].rsplit("/", 1)[-1]]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    out: Schema = {}
    for key, value in node.items():
        if key == "title" or (key == "default" and value is None):
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "properties":
            out[key] = {name: _clean(sub, definitions) for name, sub in value.items()}
        elif key in ("items", "not", "additionalProperties") and isinstance(value, dict):
            out[key] = _clean(value, definitions)
        elif key == "anyOf":
            out[key] = [_clean(sub, definitions) for sub in value]
        else:
            out[key] = value
    return out


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


def _types(schema: Schema) -> list[str]:
    declared = schema.get("type", [])
    return declared if isinstance(declared, list) else [declared]


def verify_schema(schema: Schema, where: str = "schema", *, values: bool = True) -> None:
    """A declaration bounds every number, string and array and uses only keywords that are
    enforced (called when a route is declared, so an unbounded field never starts)."""
    unknown = set(schema) - KEYWORDS
    if unknown:
        raise ValueError(f"{where}: keyword {sorted(unknown)[0]!r} is not enforced")
    kinds = _types(schema) if values else []  # a "not" describes what is refused, not a value
    if {"integer", "number"} & set(kinds) and not {"minimum", "maximum"} <= set(schema):
        raise ValueError(f"{where}: a number needs both bounds (minimum and maximum)")
    if "string" in kinds and "enum" not in schema and "maxLength" not in schema:
        raise ValueError(f"{where}: a string needs a maxLength")
    if "array" in kinds and "maxItems" not in schema:
        raise ValueError(f"{where}: an array needs a maxItems")
    if "object" in kinds and schema.get("additionalProperties") is not False:
        raise ValueError(f"{where}: an object needs additionalProperties false")
    if "format" in schema and schema["format"] not in FORMATS:
        raise ValueError(f"{where}: unknown format {schema['format']!r}")
    for key in ("items", "not", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            verify_schema(schema[key], f"{where}.{key}", values=key != "not")
    for key, sub in schema.get("properties", {}).items():
        verify_schema(sub, f"{where}.{key}")
    for i, sub in enumerate(schema.get("anyOf", ())):
        verify_schema(sub, f"{where}.anyOf[{i}]")


# ---- reasons -----------------------------------------------------------------------------------

_KIND = {
    "string": ("字符串", "a string"),
    "integer": ("整数", "an integer"),
    "number": ("数字", "a number"),
    "boolean": ("布尔值 true 或 false", "a boolean"),
    "array": ("数组", "an array"),
    "object": ("对象", "an object"),
}
_TYPE_ERRORS = {
    "string_type": "string",
    "int_type": "integer",
    "float_type": "number",
    "bool_type": "boolean",
    "list_type": "array",
    "model_type": "object",
    "dict_type": "object",
}


def _path(error: Any, value: Any) -> list[str | int]:
    """Where in the input the error is: pydantic's location without the names it gives the
    forms of a union ("constrained-str"), which are no part of the input."""
    loc = list(error["loc"])
    last = loc.pop() if error["type"] == "missing" else None
    path: list[str | int] = []
    for part in loc:
        in_dict = isinstance(value, dict) and part in value
        in_list = isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value)
        if in_dict or in_list:
            value = value[part]
            path.append(part)
    return [*path, last] if last is not None else path


def _dotted(path: list[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _schema_at(schema: Schema, path: list[str | int]) -> Schema:
    for part in path:
        options = [schema, *schema.get("anyOf", [])]
        key = "items" if isinstance(part, int) else "properties"
        found = next((o for o in options if key in o), None)
        if found is None:
            return {}
        schema = found["items"] if key == "items" else found["properties"].get(part, {})
    return schema


def _form(schema: Schema, json_type: str) -> Schema:
    """The anyOf form of a (nullable or union) schema that has this JSON type."""
    for option in [schema, *schema.get("anyOf", [])]:
        if json_type in _types(option):
            return option
    return schema


def _expected(schema: Schema, json_type: str) -> tuple[str, str]:
    form = _form(schema, json_type)
    if json_type == "integer" and "minimum" in form and "maximum" in form:
        lo, hi = form["minimum"], form["maximum"]
        return f"{lo} 到 {hi} 之间的整数", f"an integer from {lo} to {hi}"
    return _KIND[json_type]


def _says(error: Any, name: str, schema: Schema, given: Any) -> tuple[str, str]:
    """One error, in Chinese and English, naming `name`."""
    kind_of, ctx = error["type"], error.get("ctx") or {}
    if kind_of == "guidebot":
        return f"{name} {ctx['zh']}", f"{name} {ctx['en']}"
    if kind_of == "missing":
        return f"缺少必填字段 {name}", f"{name} is required"
    if kind_of in _TYPE_ERRORS:
        zh, en = _expected(schema, _TYPE_ERRORS[kind_of])
        if given is None:
            return (
                f"{name} 不能为 null（不修改就不要传）",
                f"{name} cannot be null; give {en}, or leave it out",
            )
        return f"{name} 应为{zh}", f"{name} must be {en}, got {kind(given)}"
    if kind_of == "literal_error":
        shown = ", ".join(str(v) for v in _form(schema, "string").get("enum", []))
        return (
            f"{name} 只能是 {shown} 之一",
            f"{name} must be one of {shown}; got {str(given)[:40]!r}",
        )
    if kind_of in ("greater_than_equal", "less_than_equal"):
        # An integer given where a number is declared is held to the number's bounds.
        form = _form(schema, "integer" if isinstance(given, int) else "number")
        if "minimum" not in form:
            form = _form(schema, "number")
        lo, hi = form.get("minimum"), form.get("maximum")
        return f"{name} 应在 {lo} 到 {hi} 之间", f"{name} must be between {lo} and {hi}"
    if kind_of == "string_too_short":
        if ctx["min_length"] == 1:
            return f"{name} 不能为空", f"{name} may not be empty"
        n = ctx["min_length"]
        return f"{name} 至少要 {n} 个字符", f"{name} must be at least {n} characters"
    if kind_of == "string_too_long":
        n = ctx["max_length"]
        return f"{name} 超过 {n} 个字符", f"{name} is longer than {n} characters"
    if kind_of == "string_pattern_mismatch":
        said = _form(schema, "string").get("description")
        return f"{name} 格式不对", (
            f"{name} must be {said}" if said else f"{name} has the wrong form"
        )
    if kind_of == "too_short":
        n = ctx["min_length"]
        return f"{name} 至少要有 {n} 项", f"{name} needs at least {n} entries"
    if kind_of == "too_long":
        n = ctx["max_length"]
        return f"{name} 最多 {n} 项", f"{name} has more than {n} entries"
    return f"{name} 不符合要求", f"{name}: {error['msg']}"


def reason(exc: ValidationError, given: Any, schema: Schema, *, query: bool = False) -> str:
    """The first thing wrong with `given`, as one bilingual reason."""
    errors = exc.errors(include_url=False)
    # An unknown field first, then what was given (its reason is the useful one), then what
    # is missing.
    errors.sort(key=lambda e: {"extra_forbidden": 0, "missing": 2}.get(e["type"], 1))
    first = errors[0]
    path = _path(first, given)
    name = repr(_dotted(path)[:60]) if path else "body"
    zh_what, en_what = ("查询参数 ", "query parameter ") if query else ("", "")
    if first["type"] == "extra_forbidden":
        holder = _form(_schema_at(schema, path[:-1]), "object")
        known = ", ".join(holder.get("properties", {}))
        what_zh, what_en = ("查询参数", "query parameter") if query else ("字段", "field")
        zh = f"未知{what_zh} {name}" + (
            f"（可用：{known}）" if known else f"（这里不接受{what_zh}）"
        )
        en = f"unknown {what_en} {name}; " + (
            f"{what_en}s are {known}" if known else f"this takes no {what_en}s"
        )
        return f"{zh} / {en}"
    at = _schema_at(schema, path)
    value = _value_at(given, path)
    # Several errors at one place are a union's forms: the one of the value's type (it got
    # past the type check) says what is wrong; if none, the value has none of the types.
    same = [e for e in errors if _path(e, given) == path]
    typed = [e for e in same if e["type"] not in _TYPE_ERRORS]
    if len(same) > 1 and not typed:
        wanted = [_KIND[_TYPE_ERRORS[e["type"]]] for e in same]
        zh = f"{zh_what}{name} 应为{'或'.join(w[0] for w in wanted)}"
        en = f"{en_what}{name} must be {' or '.join(w[1] for w in wanted)}, got {kind(value)}"
        return f"{zh} / {en}"
    zh, en = _says(typed[0] if typed else first, name, at, value)
    return f"{zh_what}{zh} / {en_what}{en}"


def _value_at(value: Any, path: list[str | int]) -> Any:
    for part in path:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def validate(model: type[Declared], given: dict[str, Any], *, query: bool = False) -> Declared:
    """The model instance, or ValueError carrying the reason (see `reason`)."""
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        raise Invalid(reason(exc, given, json_schema(model), query=query)) from None


class Invalid(ValueError):
    """The input does not fit its declaration; `reason` says where and why, in both languages."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
