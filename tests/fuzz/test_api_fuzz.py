"""Hostile and wrongly typed JSON bodies for every documented request body: 4xx with a reason.

The routes come from the OpenAPI document itself, so a new POST/PATCH is fuzzed as soon as it
declares a body. Malformed bodies must get 400 with `{"error": {"code", "reason"}}`; objects
whose every property has the wrong type must get a 4xx error of that shape; nothing is written.
"""

from __future__ import annotations

import json
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from guidebot.app import create_app
from guidebot.db.engine import create_engine
from guidebot.db.migrate import upgrade
from tests.support import make_settings

AUTH = {"Authorization": "Bearer admin-token-for-tests", "Content-Type": "application/json"}
EXAMPLES_PER_ROUTE = 200

# Bodies that are not a JSON object at all.
MALFORMED: list[bytes] = [
    b"",
    b"{",
    b'{"a":',
    b'{"a": 1,',
    b'{"title": "x", "kind": "text"',
    b"not json",
    b"\x00\x01\x02\xff\xfe binary",
    bytes(range(256)),
    b"[]",
    b"[1, 2, 3]",
    b'"a string"',
    b"42",
    b"null",
    b"true",
    b"[" * 10_000,
    b"[" * 10_000 + b"]" * 10_000,
    b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    b"1" * 10_000,
    b'{"a": ' + b"9" * 10_000 + b"}",
    b"1e999999",
    b"NaN",
    b'{"a": NaN}',
    b'{"title": "\xff\xfe", "kind": "text"}',
    b'{"a": "\xc3\x28"}',
    b"\xef\xbb\xbf{}",
    b'{"a": "\\ud800"}'[:-2],
]
# Bodies that are objects but must still be refused because of their numbers.
# (Python refuses integers of more than 4300 digits; floats this large would become ±inf.)
HUGE_NUMBERS = [b'{"a": 1e999999}', b'{"a": -1e999999}', b'{"a": ' + b"9" * 5000 + b"}"]

JSON_TYPES = ("string", "integer", "number", "boolean", "null", "array", "object")
scalar = st.one_of(
    st.text(max_size=20),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "string": st.text(max_size=30),
    "integer": st.integers(min_value=-(2**70), max_value=2**70),
    "number": st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f)),
    "boolean": st.booleans(),
    "null": st.none(),
    "array": st.lists(scalar, max_size=4),
    "object": st.dictionaries(st.text(max_size=8), scalar, max_size=4),
}


def wrong_types(schema: dict[str, Any]) -> list[str]:
    declared = schema.get("type")
    declared = {declared} if isinstance(declared, str) else set(declared or JSON_TYPES)
    if "number" in declared:
        declared.add("integer")
    return [kind for kind in JSON_TYPES if kind not in declared]


def wrongly_typed(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects carrying every required property and some optional ones, all of a wrong type."""
    props: dict[str, Any] = schema.get("properties", {})
    required = [name for name in schema.get("required", []) if name in props]
    optional = [name for name in props if name not in required]

    def value(name: str) -> st.SearchStrategy[Any]:
        return st.sampled_from(wrong_types(props[name])).flatmap(VALUES.__getitem__)

    @st.composite
    def build(draw) -> dict[str, Any]:
        names = (
            required + draw(st.lists(st.sampled_from(optional), unique=True))
            if optional
            else required
        )
        if not names:
            names = [draw(st.sampled_from(optional))]
        return {name: draw(value(name)) for name in names}

    return build()


def collect(strategy: st.SearchStrategy[Any]) -> list[Any]:
    """Hypothesis draws (it cannot drive an async test); the server then gets every example."""
    drawn: list[Any] = []

    @settings(
        max_examples=EXAMPLES_PER_ROUTE,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def draw(example: Any) -> None:
        drawn.append(example)

    draw()
    return drawn


def fill_path(path: str, ids: dict[str, str]) -> str:
    for name, value in ids.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, path
    return path


async def snapshot(url: str) -> dict[str, list[tuple]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            names = await conn.scalars(
                text("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            )
            return {
                name: sorted(
                    map(tuple, await conn.execute(text(f'SELECT * FROM "{name}"'))), key=repr
                )
                for name in list(names)
            }
    finally:
        await engine.dispose()


async def assert_error(response, allowed: set[int], sent: bytes | dict) -> None:
    shown = sent[:120] if isinstance(sent, bytes) else sent
    assert response.status < 500, (response.status, response.url.path, shown)
    assert response.status in allowed, (response.status, response.url.path, shown)
    assert response.content_type == "application/json", (response.url.path, shown)
    error = (await response.json())["error"]
    assert isinstance(error["code"], str) and error["code"], (response.url.path, shown)
    assert isinstance(error["reason"], str) and error["reason"].strip(), (response.url.path, shown)


async def test_every_request_body_refuses_hostile_json(aiohttp_client, sqlite_url):
    started = time.monotonic()
    await upgrade(sqlite_url)
    client = await aiohttp_client(
        create_app(
            make_settings(sqlite_url, wecom_api_base="http://127.0.0.1:9"), run_workers=False
        )
    )
    # One real content item, so that PATCH /content/{id} reaches an existing row.
    made = await client.post(
        "/api/v1/content", headers=AUTH, json={"kind": "text", "title": "t", "body": "words"}
    )
    assert made.status == 201, await made.text()
    ids = {"id": str((await made.json())["id"]), "store": "S001", "order_id": "order-1"}

    document = await (await client.get("/api/v1/openapi.json")).json()
    routes = [
        (method.upper(), path, op["requestBody"]["content"]["application/json"]["schema"])
        for path, operations in document["paths"].items()
        for method, op in operations.items()
        if "requestBody" in op
    ]
    assert len(routes) >= 9, routes

    bodies = {path: collect(wrongly_typed(schema)) for _, path, schema in routes}

    before = await snapshot(sqlite_url)
    covered = []
    for method, path, _ in routes:
        url = fill_path(path, ids)
        # A path naming a row that does not exist may answer 404 before looking at a body that
        # only holds nulls (treated as "not given" for optional fields); everything else is 400.
        missing_ok = {400, 404} if "{" in path else {400}
        for raw in MALFORMED + HUGE_NUMBERS:
            response = await client.request(method, url, data=raw, headers=AUTH)
            # An empty body is no body: routes whose fields are all optional may take it.
            await assert_error(response, missing_ok if raw == b"" else {400}, raw)
        for body in bodies[path]:
            response = await client.request(method, url, data=json.dumps(body), headers=AUTH)
            await assert_error(response, missing_ok, body)
        covered.append(f"{method} {path}")

    assert await snapshot(sqlite_url) == before
    assert (await client.get("/healthz")).status == 200
    assert len(covered) == len(routes)
    assert time.monotonic() - started < 60, covered
