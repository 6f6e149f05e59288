"""Each route's request is declared once, as a pydantic model (guidebot.web.api.declare): the
model validates the request and writes the route's part of the OpenAPI document. An unknown
query parameter or body field is a 400 naming it, on every operation, and changes nothing.
Runs on SQLite and, when configured, PostgreSQL (store 11 张江店, guides g1..g3)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from guidebot.web.api.common import ApiRoutes, Endpoint
from guidebot.web.api.contacts import CustomerFilter, StoreChange
from guidebot.web.api.declare import (
    Array,
    Body,
    Int,
    Invalid,
    Number,
    OneOf,
    Query,
    Text,
    json_schema,
    validate,
)
from guidebot.web.api.openapi import openapi_document
from guidebot.web.formats import CONTROL, CONTROL_BUT_LF
from tests.fuzz.test_openapi_agreement import FORMAT_CHECKER, Reference
from tests.harness import ADMIN

IDS = {
    "id": "1",
    "store": "11",
    "order_id": "o-1",
    "userid": "g1",
    "external_userid": "wmc01",
    "chat_id": "wrGROUP",
    "config_id": "joinway1",
    "label": "VIP",
}
CHINESE = re.compile("[\u4e00-\u9fff]")


def bilingual(reason: str) -> bool:
    """Chinese first, then English, as every error a guide or HQ reads."""
    zh, _, en = reason.partition(" / ")
    return bool(CHINESE.search(zh)) and bool(en) and not CHINESE.search(en)


async def _document(h) -> dict[str, Any]:
    return await (await h.client.get("/api/v1/openapi.json")).json()


def _operations(document: dict[str, Any]):
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            url = path
            for name, value in IDS.items():
                url = url.replace("{" + name + "}", value)
            yield method.upper(), url, op


# ---- unknown parameters and fields -------------------------------------------------------------


async def test_an_unknown_query_parameter_is_a_400_naming_it(h):
    response = await h.client.get("/api/v1/customers?foo=1", headers=ADMIN)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "bad_request"
    assert "unknown query parameter 'foo'" in error["reason"], error
    assert "per_page" in error["reason"]  # the parameters it does take
    assert bilingual(error["reason"]), error
    # A misspelt parameter is no longer silently ignored (it was: the whole list came back).
    response = await h.client.get("/api/v1/customers?per_pag=1", headers=ADMIN)
    assert response.status == 400 and "'per_pag'" in (await response.json())["error"]["reason"]
    assert (await h.client.get("/api/v1/customers?per_page=1", headers=ADMIN)).status == 200


async def test_every_operation_refuses_an_unknown_query_parameter(h):
    checked = 0
    for method, url, op in _operations(await _document(h)):
        kwargs = {"json": {}} if "requestBody" in op else {}
        response = await h.client.request(
            method, url, params={"zz_unknown": "1"}, headers=ADMIN, **kwargs
        )
        answer = await response.json()
        assert response.status == 400, (method, url, answer)
        assert "'zz_unknown'" in answer["error"]["reason"], (method, url, answer)
        checked += 1
    assert checked > 30, checked


async def test_every_body_refuses_an_unknown_field_and_changes_nothing(h):
    before = await h.api("GET", "/stores")
    checked = 0
    for method, url, op in _operations(await _document(h)):
        if "requestBody" not in op:
            continue
        # Reported first, before any field the body is missing.
        response = await h.client.request(method, url, json={"zz_unknown": 1}, headers=ADMIN)
        answer = await response.json()
        assert response.status == 400, (method, url, answer)
        reason = answer["error"]["reason"]
        assert "unknown field 'zz_unknown'" in reason and bilingual(reason), (method, url, answer)
        checked += 1
    assert checked >= 10, checked
    # Beside valid fields, and inside a nested object.
    status, answer = await h.api("PATCH", "/stores/11", json={"timezone": "Asia/Tokyo", "tz": 1})
    assert status == 400 and "unknown field 'tz'" in answer["error"]["reason"], answer
    status, answer = await h.api(
        "POST",
        "/mass-sends",
        json={"guide": "g1", "item": 1, "filter": {"tags": ["vip"], "colour": "red"}},
    )
    assert status == 400 and "'filter.colour'" in answer["error"]["reason"], answer
    assert "fields are tags, match, status, customers" in answer["error"]["reason"]
    assert await h.api("GET", "/stores") == before
    assert (await h.api("GET", "/mass-sends"))[1] == {"mass_sends": []}


# ---- one declaration, two uses -----------------------------------------------------------------


class Probe(Body):
    """a probe"""

    name: Text(10, pattern="^[a-z]+$", description="lower-case letters")
    count: Int(1, 5) = 1
    note: Text(100, min_length=0, multiline=True) | None = None
    kinds: Array(OneOf("a", "b"), max_items=2) = None
    when: Text(64, fmt="date-time") = None
    amount: Number(0, 100, multiple_of=0.01) = None


PROBE_SCHEMA = {
    "type": "object",
    "description": "a probe",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {
            "type": "string",
            "minLength": 1,
            "maxLength": 10,
            "pattern": "^[a-z]+$",
            "description": "lower-case letters",
            "not": {"type": "string", "pattern": CONTROL},
        },
        "count": {"type": "integer", "minimum": 1, "maximum": 5, "default": 1},
        "note": {
            "anyOf": [
                {
                    "type": "string",
                    "minLength": 0,
                    "maxLength": 100,
                    "not": {"type": "string", "pattern": CONTROL_BUT_LF},
                },
                {"type": "null"},
            ]
        },
        "kinds": {
            "type": "array",
            "items": {"type": "string", "enum": ["a", "b"]},
            "minItems": 0,
            "maxItems": 2,
        },
        "when": {
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "format": "date-time",
            "not": {"type": "string", "pattern": CONTROL},
        },
        "amount": {"type": "number", "minimum": 0, "maximum": 100, "multipleOf": 0.01},
    },
}


def test_a_model_writes_the_schema_the_document_shows():
    assert json_schema(Probe) == PROBE_SCHEMA
    Draft202012Validator.check_schema(PROBE_SCHEMA)

    async def view(request):
        raise AssertionError("never called")

    class ProbeQuery(Query):
        page: Int(1, 9) = 1
        word: Text(8) = None

    routes = ApiRoutes()
    routes.post("/probes", "Probe", body=Probe, query=ProbeQuery, response={})(view)
    operation = openapi_document(routes.endpoints, "/api/v1")["paths"]["/api/v1/probes"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == PROBE_SCHEMA
    assert [(p["name"], p["in"], p["schema"]) for p in operation["parameters"]] == [
        ("page", "query", {"type": "integer", "minimum": 1, "maximum": 9, "default": 1}),
        (
            "word",
            "query",
            {
                "type": "string",
                "minLength": 1,
                "maxLength": 8,
                "not": {"type": "string", "pattern": CONTROL},
            },
        ),
    ]


@pytest.mark.parametrize(
    ("body", "fits"),
    [
        ({"name": "abc"}, True),
        ({"name": "abc", "count": 5, "note": "two\nlines", "kinds": ["a"], "amount": 0.07}, True),
        ({"name": "abc", "when": "2026-03-09T10:00:00+08:00", "note": None}, True),
        ({"name": "ABC"}, False),  # the pattern
        ({"name": "a\tb"}, False),  # a control character (the `not`)
        ({"name": "abc", "count": 6}, False),  # beyond the maximum
        ({"name": "abc", "count": True}, False),  # a boolean is no integer
        ({"name": "abc", "count": 2.0}, False),  # nor a float
        ({"name": "abc", "kinds": ["a", "b", "a"]}, False),  # maxItems
        ({"name": "abc", "when": "2026-03-09T10:00:00"}, False),  # no UTC offset (the format)
        ({"name": "abc", "amount": 0.005}, False),  # multipleOf, read in decimal
        ({"name": "abc", "note": "a\x00b"}, False),
        ({}, False),  # required
    ],
)
def test_the_model_takes_exactly_what_its_schema_allows(body, fits):
    # The reference validator reads integers, formats and multipleOf as the document says.
    schema_says = Reference(PROBE_SCHEMA, format_checker=FORMAT_CHECKER).is_valid(body)
    try:
        validate(Probe, body)
        model_says = True
    except Invalid as exc:
        model_says = False
        assert bilingual(exc.reason), exc.reason
    assert model_says == schema_says == fits, (body, model_says, schema_says)


async def test_the_live_document_shows_the_routes_models(h):
    document = await _document(h)
    patch = document["paths"]["/api/v1/stores/{store}"]["patch"]
    assert patch["requestBody"]["content"]["application/json"]["schema"] == json_schema(StoreChange)
    listing = document["paths"]["/api/v1/customers"]["get"]
    assert {p["name"]: p["schema"] for p in listing["parameters"] if p["in"] == "query"} == (
        json_schema(CustomerFilter)["properties"]
    )


def test_a_route_without_query_parameters_declares_none():
    async def view(request):
        raise AssertionError("never called")

    endpoint = Endpoint(
        "GET", "/things/{id}", view, "Things", path_params={"id": Int(1, 9)}, response={}
    )
    assert endpoint.query_schema["properties"] == {}
    assert endpoint.path_schema["properties"]["id"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 9,
    }
