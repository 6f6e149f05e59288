"""The OpenAPI document and the API agree, answer for answer.

For every operation in /api/v1/openapi.json, requests are generated from the document itself
(bodies, query and path parameters drawn from their schemas) and hostile
ones beside them (tests/fuzz/test_api_fuzz.py's spoiled bodies and strange query values). A
reference validator (jsonschema, with the readings the document states: integers have no
fraction, multipleOf is decimal, formats are checked) decides what fits. Then:

* what fits is never refused with 400 (422 is for values that fit but contradict each other or
  what is stored), and what does not fit is a 400;
* every answer, whatever was sent, has a status the operation declares, is JSON, and its body
  validates against the schema the document gives for that status;
* nothing is a 5xx, and the router's own answers (an unknown path, a method the path does not
  take) are the API's JSON errors too.

Runs on SQLite and, when configured, PostgreSQL.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import jsonschema
import pytest
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker
from yarl import URL

from guidebot.web.formats import CONTROL, FORMATS, decimal_multiple, format_ok, time_zones
from tests.fuzz.test_api_fuzz import (
    AUTH,
    VALID,
    collect,
    fill_path,
    spoiled,
    start,
    wrongly_typed,
)
from tests.fuzzing import examples

# Drawn per operation, of each kind: the draws add up over every operation of the API (five
# each with the dev profile, about 275 requests a kind; CI draws 30 each).
EXAMPLES = examples(30, floor=5)

# ---- the reference validator ---------------------------------------------------------------------


def _integer(checker, value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _multiple_of(validator, step, value, schema):
    if validator.is_type(value, "number") and not decimal_multiple(value, step):
        yield jsonschema.ValidationError(f"{value!r} is not a multiple of {step}")


FORMAT_CHECKER = FormatChecker(formats=())
for _name in FORMATS:
    FORMAT_CHECKER.checks(_name)(lambda value, name=_name: format_ok(name, value))

Reference = jsonschema.validators.extend(
    Draft202012Validator,
    validators={"multipleOf": _multiple_of},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _integer),
)


def fits(schema: dict[str, Any], value: Any, document: dict[str, Any]) -> bool:
    validator = Reference(_resolve(schema, document), format_checker=FORMAT_CHECKER)
    return validator.is_valid(value)


def _resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    """The document's "#/components/schemas/X" references, inlined (for the validator)."""
    text = json.dumps(schema)
    for name, target in document["components"]["schemas"].items():
        text = text.replace(
            json.dumps({"$ref": f"#/components/schemas/{name}"}), json.dumps(target)
        )
    return json.loads(text)


def has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, list):
        return any(map(has_surrogate, value))
    if isinstance(value, dict):
        return any(map(has_surrogate, value)) or any(map(has_surrogate, value.values()))
    return False


# ---- strategies from the document ----------------------------------------------------------------

_DAY = st.dates(min_value=datetime(1960, 1, 1).date(), max_value=datetime(9999, 12, 31).date())
_OFFSET = st.integers(-14 * 60, 14 * 60).map(lambda m: timedelta(minutes=m))


def _instant(naive: datetime, offset: timedelta) -> str:
    return naive.replace(tzinfo=timezone(offset)).isoformat()


_NAIVE = st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(9999, 12, 31))
CUSTOM_FORMATS = {
    "date": _DAY.map(lambda d: d.isoformat()),
    "date-time": st.builds(_instant, _NAIVE, _OFFSET),
    "date-or-time": st.one_of(
        _DAY.map(lambda d: d.isoformat()),
        _NAIVE.map(lambda d: d.isoformat()),
        st.builds(_instant, _NAIVE, _OFFSET),
    ),
    "time-zone": st.sampled_from(sorted(time_zones())),
    "http-url": st.from_regex(
        r"\Ahttps?://[a-z0-9]{1,20}(\.[a-z]{2,6})?(/[A-Za-z0-9._~-]{0,20})*\Z"
    ),
}


_TEXT = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=40)


def strategy(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values the schema allows, drawn from its keywords (the closed set guidebot.web.api.declare
    uses); every draw is then held to the reference validator, so none is taken on trust."""
    validator = Reference(schema, format_checker=FORMAT_CHECKER)
    return _values(schema).filter(validator.is_valid)


def _values(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "anyOf" in schema:
        return st.one_of(*(_values(option) for option in schema["anyOf"]))
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kinds = schema.get("type")
    if isinstance(kinds, list):
        return st.one_of(*(_values({**schema, "type": kind}) for kind in kinds))
    if kinds == "null":
        return st.none()
    if kinds == "boolean":
        return st.booleans()
    if kinds == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kinds == "number":
        lo, hi = schema.get("minimum"), schema.get("maximum")
        step = schema.get("multipleOf")
        if step is not None:
            steps = st.integers(int(lo / step) if lo is not None else None, int(hi / step))
            return steps.map(lambda k: float(Decimal(k) * Decimal(repr(step))))
        return st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    if kinds == "string":
        return _strings(schema)
    if kinds == "array":
        return st.lists(
            _values(schema.get("items", {})),
            min_size=schema.get("minItems", 0),
            max_size=min(schema.get("maxItems", 5), 5),
        )
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    return st.fixed_dictionaries(
        {name: _values(properties[name]) for name in required},
        optional={name: _values(sub) for name, sub in properties.items() if name not in required},
    )


def _strings(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    if "format" in schema:
        return CUSTOM_FORMATS[schema["format"]]
    pattern = schema.get("pattern")
    low, high = schema.get("minLength", 0), min(schema.get("maxLength", 40), 40)
    if pattern is not None and pattern.startswith("^"):
        return st.from_regex(pattern).filter(lambda v: low <= len(v) <= high)
    lines = st.lists(_TEXT, min_size=1, max_size=3).map("\n".join)
    words = st.one_of(_TEXT, lines) if schema.get("not", {}).get("pattern") != CONTROL else _TEXT
    if pattern is not None:
        words = words.filter(lambda v: re.search(pattern, v) is not None)
    return words.filter(lambda v: low <= len(v)).map(lambda v: v[:high])


def draw(strategy: st.SearchStrategy[Any], n: int) -> list[Any]:
    return collect(strategy, n)


def as_query(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def query_fits(schema: dict[str, Any], raw: str, document: dict[str, Any]) -> bool:
    """What the document's parameter means for a query value (a string in the URL)."""
    if raw == "":
        return True  # an empty value is no value
    if schema["type"] == "integer":
        return bool(re.fullmatch(r"-?[0-9]{1,20}", raw)) and fits(schema, int(raw), document)
    if schema["type"] == "boolean":
        return raw in ("true", "false")
    return fits(schema, raw, document)


HOSTILE_QUERY = [
    "0",
    "-1",
    "2147483648",
    "9223372036854775808",
    "9" * 30,
    "1.5",
    "true",
    "²",
    " ",
    "a\r\nb",
    "a\nb",
    "a\tb",
    "\x7f",
    "x" * 300,
    "2026-03-01",
    "2026-03-01T10:00:00Z",
    "Asia/Shanghai",
    "pending,sent",
]


# ---- the check -----------------------------------------------------------------------------------


class Answers:
    """Every answer checked against the operation's declared responses."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.seen: dict[str, set[int]] = {}

    async def check(self, op: dict[str, Any], key: str, response, sent: Any) -> int:
        status = response.status
        shown = (key, status, sent if not isinstance(sent, dict) else json.dumps(sent)[:300])
        assert status < 500, (*shown, await response.text())
        declared = op["responses"].get(str(status))
        assert declared is not None, ("undeclared status", *shown, await response.text())
        assert response.content_type == "application/json", shown
        body = await response.json()
        schema = _resolve(declared["content"]["application/json"]["schema"], self.document)
        validator = Reference(schema, format_checker=FORMAT_CHECKER)
        errors = [e.message for e in validator.iter_errors(body)]
        assert not errors, ("the answer does not fit its schema", *shown, errors[:3], body)
        self.seen.setdefault(key, set()).add(status)
        return status


def operations(document: dict[str, Any]):
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            yield method.upper(), path, op


async def test_every_answer_is_declared_and_what_fits_the_schema_is_not_a_400(
    aiohttp_client, database_url
):
    client, ids, document, _ = await start(aiohttp_client, database_url)
    ids |= {"userid": "g1", "external_userid": "c1"}
    answers = Answers(document)
    checked = 0
    for method, path, op in operations(document):
        key = f"{method} {path}"
        path_params = [p for p in op["parameters"] if p["in"] == "path"]
        query_params = [p for p in op["parameters"] if p["in"] == "query"]
        body_schema = (
            op["requestBody"]["content"]["application/json"]["schema"]
            if "requestBody" in op
            else None
        )
        known = {p["name"]: ids[p["name"]] for p in path_params if p["name"] in ids}
        path_strategy = st.fixed_dictionaries(
            {
                p["name"]: st.one_of(
                    st.just(known[p["name"]]) if p["name"] in known else st.nothing(),
                    strategy(p["schema"]).map(as_query),
                )
                for p in path_params
            }
        )
        query_strategy = st.fixed_dictionaries(
            {}, optional={p["name"]: strategy(p["schema"]).map(as_query) for p in query_params}
        )
        body_strategy = strategy(body_schema) if body_schema is not None else st.none()
        requests = draw(st.tuples(path_strategy, query_strategy, body_strategy), EXAMPLES)
        for path_values, query, body in requests:
            assert body is None or fits(body_schema, body, document), body
            for name, raw in query.items():
                schema = next(p["schema"] for p in query_params if p["name"] == name)
                assert query_fits(schema, raw, document), (name, raw)
            url = _url(path, path_values)
            kwargs: dict[str, Any] = {"params": query}
            if body is not None:
                kwargs["data"] = json.dumps(body)
            response = await client.request(method, url, headers=AUTH, **kwargs)
            status = await answers.check(
                op, key, response, {"path": path_values, **query, "body": body}
            )
            assert status != 400, (key, path_values, query, body, await response.text())
            checked += 1
        if body_schema is not None:
            # No body at all: a 400 where the document says one is required, never otherwise.
            url = _url(path, {p["name"]: known.get(p["name"], "1") for p in path_params})
            response = await client.request(method, url, headers=AUTH)
            status = await answers.check(op, key, response, "no body")
            required = op["requestBody"]["required"]
            assert (status == 400) == required, (key, required, await response.text())
    assert checked >= EXAMPLES * len(answers.seen) // 2, checked  # half of what was asked
    assert (await client.get("/healthz")).status == 200


async def test_what_does_not_fit_is_a_400_and_every_answer_is_declared(
    aiohttp_client, database_url
):
    client, ids, document, _ = await start(aiohttp_client, database_url)
    ids |= {"userid": "g1", "external_userid": "c1"}
    answers = Answers(document)
    refused = 0
    for method, path, op in operations(document):
        key = f"{method} {path}"
        url = _url(path, {name: value for name, value in ids.items()})
        # Bodies: valid ones with fields spoiled, and objects of wrongly typed fields.
        if "requestBody" in op:
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            valid = VALID.get((method, path.removeprefix("/api/v1")), {})
            bodies = collect(spoiled(valid, schema), EXAMPLES) + collect(wrongly_typed(schema), 10)
            for body in bodies:
                response = await client.request(method, url, data=json.dumps(body), headers=AUTH)
                status = await answers.check(op, key, response, body)
                if has_surrogate(body) or not fits(schema, body, document):
                    assert status == 400, (key, body, await response.text())
                    refused += 1
                else:
                    assert status != 400, (key, body, await response.text())
        # Query parameters: strange values, one at a time.
        for param in (p for p in op["parameters"] if p["in"] == "query"):
            for raw in HOSTILE_QUERY:
                response = await client.request(
                    method,
                    url,
                    params={param["name"]: raw},
                    headers=AUTH,
                    **(
                        {"json": VALID.get((method, path.removeprefix("/api/v1")), {})}
                        if "requestBody" in op
                        else {}
                    ),
                )
                status = await answers.check(op, key, response, {param["name"]: raw})
                if not query_fits(param["schema"], raw, document):
                    assert status == 400, (key, param["name"], raw, await response.text())
                    refused += 1
                else:
                    assert status != 400, (key, param["name"], raw, await response.text())
        # Path parameters that do not fit name nothing: 404, in the API's JSON.
        for param in (p for p in op["parameters"] if p["in"] == "path"):
            for raw in ("0", "9" * 30, "x" * 200, "²"):
                if query_fits(param["schema"], raw, document):
                    continue
                response = await client.request(
                    method,
                    _url(path, {**ids, param["name"]: raw}),
                    headers=AUTH,
                    **(
                        {"json": VALID.get((method, path.removeprefix("/api/v1")), {})}
                        if "requestBody" in op
                        else {}
                    ),
                )
                assert await answers.check(op, key, response, raw) == 404, (key, raw)
    assert refused > 100, refused


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/v1/nope", 404),
        ("POST", "/api/v1", 404),
        ("GET", "/api/v1/content/1/nope", 404),
        ("PUT", "/api/v1/content", 405),
        ("DELETE", "/api/v1/orders", 405),
    ],
)
async def test_the_routers_own_answers_are_the_apis_json_errors(
    aiohttp_client, database_url, method, path, status
):
    client, _, document, _ = await start(aiohttp_client, database_url)
    response = await client.request(method, path, headers=AUTH)
    assert response.status == status
    assert response.content_type == "application/json"
    body = await response.json()
    assert fits(document["components"]["schemas"]["Error"], body, document), body
    if status == 405:
        allowed = response.headers["Allow"]
        assert allowed and allowed in body["error"]["reason"], (allowed, body)


def _segment(value: Any) -> str:
    """A value as one path segment. "." and ".." are dot-segments, which a URL resolves away
    (/stores/./x is /stores/x): as a value they go percent-encoded, as a client must send them."""
    text = quote(str(value), safe="")
    return text.replace(".", "%2E") if text and set(text) <= {"."} else text


def _url(path: str, values: dict[str, str]) -> URL:
    """The path with its parameters filled in, each percent-encoded as one segment."""
    encoded = fill_path(
        path,
        {name: _segment(value) for name, value in values.items() if "{" + name + "}" in path},
    )
    return URL(encoded, encoded=True)
