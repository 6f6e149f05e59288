"""Hostile and wrongly typed JSON bodies for every documented request body: 4xx with a reason.

The routes come from the OpenAPI document itself, so a new POST/PATCH is fuzzed as soon as it
declares a body. Malformed bodies must get 400 with `{"error": {"code", "reason"}}`; objects
whose every property has the wrong type must get a 4xx error of that shape; nothing is written.
Then each route's valid body has some of its fields replaced by hostile values (integers far
beyond any column, floats, booleans, nulls, NUL characters, dates near year 1 or 9999): never a
5xx, and a refused request changed nothing. Path ids and integer query parameters get the same
treatment. Every test runs on SQLite and, when configured, on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.app import create_app
from guidebot.contacts.models import Department
from guidebot.db.engine import create_engine
from guidebot.web.formats import CONTROL_BUT_LF
from guidebot.web.startup import CONTACTS_STARTUP
from tests.conftest import _asyncpg_dsn
from tests.fuzzing import examples
from tests.support import make_settings

AUTH = {"Authorization": "Bearer admin-token-for-tests", "Content-Type": "application/json"}
EXAMPLES_PER_ROUTE = examples(200)

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

# Values no field should turn into a 500: beyond int32/int64 (ids, amounts, store ids), floats
# and booleans where an integer belongs, nulls, text PostgreSQL refuses, instants that overflow.
EDGE_INTS = [2**31 - 1, 2**31, -(2**31) - 1, 2**63 - 1, 2**63, -(2**63) - 1, 10**30, -(10**30)]
EDGE_TEXT = [
    "\x00",
    "a\x00b",
    "\ud800",
    "²",
    "١٢",
    "9" * 40,
    "1e999999",
    "-1e999999",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01",
    "",
    " ",
]
hostile_scalar = st.one_of(
    st.sampled_from(EDGE_INTS),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, 1.0, -1.0, 0.5, 1e300, -1e300, 2.0**63]),
    st.booleans(),
    st.none(),
    st.sampled_from(EDGE_TEXT),
    st.text(max_size=12),
)
hostile = st.one_of(
    hostile_scalar,
    st.lists(hostile_scalar, max_size=3),
    st.dictionaries(st.sampled_from(["tags", "appid", "page", "filename", "x"]), hostile_scalar),
)

# A body each route takes (or refuses only for what the database holds), for fields to spoil.
VALID: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/stores/{store}"): {"timezone": "Asia/Shanghai"},
    ("POST", "/contact-ways"): {
        "store": "S404",  # no such store: the way is refused before WeCom is asked
        "channel": "flyer",
        "campaign": "spring",
        "userids": ["g1"],
        "remark": "r",
    },
    ("POST", "/group-join-ways"): {
        "store": "S404",  # no such store: the join way is refused before WeCom is asked
        "channel": "poster",
        "campaign": "vip",
        "chat_ids": ["wrGROUP1"],
        "remark": "r",
    },
    ("PUT", "/stores/{store}/group-welcome"): {"template": "none.j2"},  # 422 before WeCom
    ("POST", "/transfers"): {
        "kind": "in_service",
        "handover_userid": "g1",
        "takeover_userid": "g2",
        "external_userids": ["c1"],
        "message": "hi",
    },
    ("POST", "/tasks/{id}/done"): {"note": "done"},
    ("POST", "/tasks/{id}/skip"): {"reason": "away"},
    ("POST", "/tasks/{id}/snooze"): {"delay": "2h"},
    ("POST", "/replies"): {"external_userid": "c1", "guide": "g1", "at": "2026-03-01T10:00:00Z"},
    # The playbook studio: text the checker refuses, so nothing is written into sop/.
    ("POST", "/playbooks/validate"): {"name": "first_contact", "text": "playbook: first_contact"},
    ("POST", "/playbooks/preview"): {
        "name": "first_contact",
        "text": "playbook: first_contact",
        "store": "S001",
        "added_at": "2026-03-01T10:00",
    },
    ("PUT", "/playbooks/{id}"): {"text": "playbook: first_contact", "base_version": 1},
    ("POST", "/content"): {
        "kind": "text",
        "title": "t",
        "body": "words",
        "summary": "s",
        "tags": ["a"],
        "stores": ["S001"],
        "valid_from": "2026-03-01T00:00:00+08:00",
        "valid_to": "2026-04-01T00:00:00+08:00",
    },
    ("PATCH", "/content/{id}"): {
        "title": "t2",
        "summary": "s",
        "valid_from": "2026-03-01",
        "valid_to": "2026-05-01T00:00:00Z",
    },
    ("POST", "/mass-sends"): {
        "guide": "g1",
        "item": 1,
        "text": "hi",
        "filter": {"tags": ["a"], "match": "any", "status": "active", "customers": ["c1"]},
    },
    ("POST", "/orders"): {
        "order_id": "order-2",
        "external_userid": "c1",
        "amount": "12.50",
        "paid_at": "2026-03-09T10:00:00+08:00",
        "store": "11",
    },
    ("POST", "/orders/{order_id}/refund"): {"refunded_at": "2026-03-10T10:00:00Z"},
    ("POST", "/privacy/customers/{external_userid}/erase"): {"reason": "the customer asked"},
}
# What a request with a hostile value may answer: a success (some fields take null, or a
# number for a string), a refusal (400 against the schema, 422 against what is stored), or "no
# such row". Never 5xx.
SPOILED_OK = {200, 201, 202, 400, 404, 409, 422}


def field_names(valid: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    return sorted(set(schema.get("properties", {})) | set(valid))


def edged(valid: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The valid body with one field replaced by each edge value, every one of them: random
    draws found an overflowing instant only now and then, so none is left to chance."""
    return [
        {**valid, name: value}
        for name in field_names(valid, schema)
        for value in EDGE_INTS + EDGE_TEXT
    ]


def spoiled(valid: dict[str, Any], schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """The valid body with 1-3 of its documented fields replaced by hostile values."""
    names = field_names(valid, schema)

    @st.composite
    def build(draw) -> dict[str, Any]:
        body = dict(valid)
        for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True)):
            body[name] = draw(hostile)
        return body

    return build()


def declared_types(schema: dict[str, Any]) -> set[str]:
    if "anyOf" in schema:
        return set().union(*(declared_types(option) for option in schema["anyOf"]))
    declared = schema.get("type")
    return {declared} if isinstance(declared, str) else set(declared or JSON_TYPES)


def wrong_types(schema: dict[str, Any]) -> list[str]:
    declared = declared_types(schema)
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


def collect(strategy: st.SearchStrategy[Any], count: int = EXAMPLES_PER_ROUTE) -> list[Any]:
    """Hypothesis draws (it cannot drive an async test); the server then gets every example.
    At most `count` of them: a caller that sends fewer asks for fewer, not drawn for nothing."""
    drawn: list[Any] = []

    @settings(
        max_examples=count,
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


class Snapshot:
    """Each table's row count and all its rows, read with the plain driver in one statement:
    this runs after every refused request, and a statement per table (or SQLAlchemy's async
    adapter) cost more than the requests. SQLite gives each table's rows as one sorted text;
    PostgreSQL a digest of it, which is equal exactly when the rows are."""

    def __init__(self, url: str) -> None:
        self._url = make_url(url)
        self._sqlite: sqlite3.Connection | None = None
        self._pg: asyncpg.Connection | None = None
        self._statement = ""

    async def __call__(self) -> dict[str, tuple[int, str]]:
        if self._url.get_backend_name() == "sqlite":
            if self._sqlite is None:
                self._sqlite = sqlite3.connect(self._url.database, isolation_level=None)
                self._statement = _sqlite_snapshot(self._sqlite)
            rows = self._sqlite.execute(self._statement).fetchall()
        else:
            if self._pg is None:
                self._pg = await asyncpg.connect(_asyncpg_dsn(str(self._url)))
                names = await self._pg.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
                self._statement = " UNION ALL ".join(
                    f"SELECT '{name}', count(*), md5(coalesce(string_agg(t::text, chr(10) "
                    f"ORDER BY t::text), '')) FROM \"{name}\" t"
                    for (name,) in names
                )
            rows = await self._pg.fetch(self._statement)
        return {row[0]: (row[1], row[2]) for row in rows}

    async def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self._pg is not None:
            await self._pg.close()


def _sqlite_snapshot(conn: sqlite3.Connection) -> str:
    """One SELECT giving (table, row count, every row quoted, sorted, one per line)."""
    parts = []
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        columns = [row[1] for row in conn.execute(f'PRAGMA table_info("{name}")')]
        row = " || ',' || ".join(f'quote("{column}")' for column in columns)
        parts.append(
            f"SELECT '{name}', count(*), coalesce(group_concat(r, char(10)), '') "
            f'FROM (SELECT {row} AS r FROM "{name}" ORDER BY r)'
        )
    return " UNION ALL ".join(parts)


@pytest.fixture
async def snapshot(database_url):
    """Closed in teardown, so a failing assertion cannot leave a connection for the garbage
    collector to report in whichever test runs next."""
    snap = Snapshot(database_url)
    yield snap
    await snap.close()


async def assert_error(response, allowed: set[int], sent: bytes | dict) -> None:
    shown = sent[:120] if isinstance(sent, bytes) else sent
    assert response.status < 500, (response.status, response.url.path, shown)
    assert response.status in allowed, (response.status, response.url.path, shown)
    assert response.content_type == "application/json", (response.url.path, shown)
    error = (await response.json())["error"]
    assert isinstance(error["code"], str) and error["code"], (response.url.path, shown)
    assert isinstance(error["reason"], str) and error["reason"].strip(), (response.url.path, shown)


async def start(aiohttp_client, url: str):
    """The app on a migrated database holding one content item (so that PATCH /content/{id}
    reaches a row) and one order; the path ids to use; the documented request bodies."""
    client = await aiohttp_client(
        create_app(make_settings(url, wecom_api_base="http://127.0.0.1:9"), run_workers=False)
    )
    # The start-up directory sync would only retry an unreachable WeCom, writing as it goes.
    startup = client.server.app[CONTACTS_STARTUP]
    startup.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await startup
    engine = create_engine(url)
    async with AsyncSession(engine) as session, session.begin():
        session.add(Department(id=11, name="张江店", code="S001", updated_at=datetime.now(UTC)))
    await engine.dispose()
    made = await client.post(
        "/api/v1/content", headers=AUTH, json={"kind": "text", "title": "t", "body": "words"}
    )
    assert made.status == 201, await made.text()
    order = await client.post("/api/v1/orders", headers=AUTH, json=VALID[("POST", "/orders")])
    assert order.status == 201, await order.text()
    ids = {
        "id": str((await made.json())["id"]),
        "store": "11",
        "order_id": "order-2",
        "chat_id": "wrNOSUCHGROUP",  # no such group or join way: 404, WeCom is never asked
        "config_id": "nosuchjoinway",
        "label": "VIP",  # a group label (on no group: the group does not exist)
    }
    ids["external_userid"] = "c1"  # the order's customer
    document = await (await client.get("/api/v1/openapi.json")).json()
    routes = [
        (method.upper(), path, op["requestBody"]["content"]["application/json"]["schema"])
        for path, operations in document["paths"].items()
        for method, op in operations.items()
        if "requestBody" in op
    ]
    assert len(routes) >= 9, routes
    return client, ids, document, routes


async def test_every_request_body_refuses_hostile_json(aiohttp_client, database_url, snapshot):
    client, ids, _, routes = await start(aiohttp_client, database_url)
    ids["order_id"] = "order-1"  # no such order: an empty body must not refund one
    bodies = {path: collect(wrongly_typed(schema)) for _, path, schema in routes}

    before = await snapshot()
    assert before["content_items"][0] == 1  # the snapshot reads the server's database
    covered = []
    for method, path, _ in routes:
        url = fill_path(path, ids)
        # A path naming a row that does not exist may answer 404 before looking at a body that
        # only holds nulls (absent fields: nothing to check); everything else is 400.
        missing_ok = {400, 404} if "{" in path else {400}
        for raw in MALFORMED + HUGE_NUMBERS:
            response = await client.request(method, url, data=raw, headers=AUTH)
            # An empty body is no body: routes whose fields are all optional may take it.
            await assert_error(response, missing_ok if raw == b"" else {400}, raw)
        for body in bodies[path]:
            response = await client.request(method, url, data=json.dumps(body), headers=AUTH)
            await assert_error(response, missing_ok, body)
        covered.append(f"{method} {path}")

    assert await snapshot() == before
    assert (await client.get("/healthz")).status == 200
    assert len(covered) == len(routes)


async def test_hostile_values_in_every_field_are_never_a_5xx_and_a_refusal_writes_nothing(
    aiohttp_client, database_url, snapshot
):
    client, ids, _, routes = await start(aiohttp_client, database_url)
    valid = {(m, p): VALID.get((m, p.removeprefix("/api/v1"))) for m, p, _ in routes}
    missing = [f"{m} {p}" for (m, p), body in valid.items() if body is None]
    assert not missing, f"add a valid body to VALID for {missing}"
    bodies = {
        (m, p): edged(valid[(m, p)], schema) + collect(spoiled(valid[(m, p)], schema))
        for m, p, schema in routes
    }

    state = await snapshot()
    assert state["content_items"][0] == 1  # the snapshot reads the server's database
    seen: dict[str, set[int]] = {}
    for method, path, _ in routes:
        url = fill_path(path, ids)
        for body in bodies[(method, path)]:
            sent = json.dumps(body)  # ensure_ascii: NUL and lone surrogates travel as \u escapes
            response = await client.request(method, url, data=sent, headers=AUTH)
            shown = (method, path, body)
            assert response.status in SPOILED_OK, (response.status, shown, await response.text())
            seen.setdefault(f"{method} {path}", set()).add(response.status)
            if response.status >= 400:
                await assert_error(response, SPOILED_OK, body)
                assert await snapshot() == state, ("a refused request wrote", shown)
            else:
                state = await snapshot()
    # The hostile values reached the checks: every route refused some of them.
    assert all(400 in statuses for statuses in seen.values()), seen
    assert (await client.get("/healthz")).status == 200


PATH_IDS = ["0", "-1", "2147483648", "9223372036854775808", "9" * 40, "²", "١٢", "1.0", "1e3"]
QUERY_INTS = ["0", "-1", "2147483648", "9223372036854775808", "9" * 40, "9" * 5000]
QUERY_INTS += ["1.5", "1e3", "true", "null", "²", "", " ", "\x00", "NaN", "Infinity"]


async def test_path_ids_and_integer_query_parameters_are_never_a_5xx(aiohttp_client, database_url):
    client, ids, document, _ = await start(aiohttp_client, database_url)
    checked = 0
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            params = op["parameters"]
            in_path = [p["name"] for p in params if p["in"] == "path"]
            for name in in_path:
                for raw in PATH_IDS:
                    url = fill_path(path, {**ids, name: raw})
                    body = (
                        {}
                        if method == "get"
                        else VALID.get((method.upper(), path.removeprefix("/api/v1")), {})
                    )
                    kwargs = {} if method == "get" else {"json": body}
                    response = await client.request(method, url, headers=AUTH, **kwargs)
                    await assert_error(response, {400, 404}, {"path": url})
                    checked += 1
            if in_path or method != "get":
                continue
            for param in params:
                if param["in"] != "query" or param["schema"]["type"] != "integer":
                    continue
                for raw in QUERY_INTS:
                    response = await client.get(path, headers=AUTH, params={param["name"]: raw})
                    assert response.status in (200, 400), (path, param["name"], raw)
                    if response.status == 400:
                        await assert_error(response, {400}, {"query": {param["name"]: raw}})
                    checked += 1
    assert checked > 100


def string_fields(schema: dict[str, Any], prefix: tuple[str, ...] = ()):
    """(path, multiline) of every string a body may carry, nested objects and arrays included."""
    options = schema.get("anyOf", [schema])
    for option in options:
        kinds = option.get("type", [])
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if "string" in kinds and "enum" not in option:
            yield prefix, option.get("not", {}).get("pattern") == CONTROL_BUT_LF
        if "object" in kinds:
            for name, sub in option.get("properties", {}).items():
                yield from string_fields(sub, (*prefix, name))
        if "array" in kinds:
            yield from string_fields(option.get("items", {}), (*prefix, 0))


def with_value(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A copy of body with `value` at path (an int step: the array, holding just that)."""
    out = json.loads(json.dumps(body))
    target: Any = out
    for step, after in itertools.pairwise(path):
        if isinstance(step, int):
            if not target:
                target.append([] if isinstance(after, int) else {})
            target = target[0]
            continue
        if not isinstance(target.get(step), dict | list):
            target[step] = [] if isinstance(after, int) else {}
        target = target[step]
    if isinstance(path[-1], int):
        target[:] = [value]
    else:
        target[path[-1]] = value
    return out


async def test_control_characters_in_any_string_field_are_a_400_naming_it(
    aiohttp_client, database_url, snapshot
):
    """CR/LF in a URL drops the connection of whoever is redirected to it, in a media type
    it breaks WeCom's multipart upload: no string takes control characters, except line feeds
    in text people read."""
    client, ids, _, routes = await start(aiohttp_client, database_url)
    state = await snapshot()
    checked = 0
    for method, path, schema in routes:
        url = fill_path(path, ids)
        valid = VALID[(method, path.removeprefix("/api/v1"))]
        for field, multiline in string_fields(schema):
            name = [str(step) for step in field if not isinstance(step, int)][-1]
            bad = ["a\r\nb", "a\rb", "a\tb", "a\x1bb", "a\x7fb", "a\x85b"]
            for value in bad + ([] if multiline else ["a\nb"]):
                body = with_value(valid, field, value)
                response = await client.request(method, url, data=json.dumps(body), headers=AUTH)
                await assert_error(response, {400}, body)
                assert name in (await response.json())["error"]["reason"], body
                checked += 1
            assert await snapshot() == state, ("a refused request wrote", method, path, field)
            if multiline:  # a line feed is words on two lines: never refused for being one
                body = with_value(valid, field, "a\nb")
                response = await client.request(method, url, data=json.dumps(body), headers=AUTH)
                assert response.status != 400 or "control" not in await response.text(), body
                state = await snapshot()
    assert checked > 200, checked
