"""Bad input is a 400 (or 404 for a path naming no row) with a reason, and changes nothing.

Integers are bounded to their column before any query (ids and store ids are int32 columns on
PostgreSQL), floats and booleans are not integers, PATCH reads null as "clear" where clearing
means something and refuses it where it does not, and NUL or out-of-range dates never reach the
database. Runs on SQLite and, when configured, PostgreSQL (store 11 张江店, guides g1..g3).
"""

from __future__ import annotations

import base64
import itertools
import json
import random
from datetime import UTC
from typing import Annotated, Any

import pytest
from pydantic import Field, create_model

from guidebot.content import links
from guidebot.content.errors import Invalid
from guidebot.content.fields import MediaInput, check_complete, clean_fields
from guidebot.content.models import ContentItem
from guidebot.web.api.common import INT32_MAX, INT64_MAX, ApiError, ApiRoutes, int_field
from guidebot.web.api.declare import Body, Query, Text
from tests.fuzzing import examples
from tests.metrics.conftest import at
from tests.web.conftest import READS_ONLY, admin_cookie, guide_cookie

PNG = b"\x89PNG\r\n\x1a\n"

HUGE = [10**30, -(10**30), 2**63, -(2**63) - 1, INT32_MAX + 1]
NOT_INTEGERS = [True, False, 1.0, 1.5, -0.0, 1e300, "1", [], {}]


async def call(h, method: str, path: str, body: Any = None, **kwargs: Any) -> tuple[int, dict]:
    if body is not None:
        kwargs["data"] = json.dumps(body)
    response = await h.client.request(
        method,
        f"/api/v1{path}",
        headers={"Authorization": "Bearer admin-token-for-tests"},
        **kwargs,
    )
    assert response.content_type == "application/json", (response.status, await response.text())
    return response.status, await response.json()


def reason(answer: dict) -> str:
    return answer["error"]["reason"]


# The tests that only read (GET) share one harness (shared_h, tests/web/conftest.py) on the
# module's event loop; the others write, or read what they wrote, and each has its own.


# ---- the helper --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", HUGE + NOT_INTEGERS)
def test_int_field_refuses_what_is_not_an_integer_in_range(value):
    with pytest.raises(ApiError) as caught:
        int_field({"n": value}, "n", lo=1, hi=INT32_MAX)
    assert caught.value.status == 400
    assert "'n'" in caught.value.reason and str(INT32_MAX) in caught.value.reason


def test_int_field_takes_the_bounds_and_null_only_when_optional():
    assert int_field({"n": 1}, "n", lo=1, hi=INT64_MAX) == 1
    assert int_field({"n": INT64_MAX}, "n", lo=1, hi=INT64_MAX) == INT64_MAX
    assert int_field({"n": None}, "n", lo=1, hi=9, required=False) is None
    assert int_field({}, "n", lo=1, hi=9, required=False) is None
    for body in ({}, {"n": None}):
        with pytest.raises(ApiError, match="'n' is required"):
            int_field(body, "n", lo=1, hi=9)


@pytest.mark.parametrize(
    "declared",
    [int, Annotated[int, Field(ge=1)], float, str, list[Text(5)]],
)
def test_a_route_cannot_declare_an_unbounded_parameter(declared):
    async def view(request):
        raise AssertionError("never mounted")

    # The guard walks the JSON Schema pydantic writes for the declaration.
    query = create_model("Things", __base__=Query, n=(declared, None))
    body = create_model("Thing", __base__=Body, n=(declared, ...))
    routes = ApiRoutes()
    with pytest.raises(ValueError, match="needs"):
        routes.get("/things", "Things", query=query, response={})(view)
    with pytest.raises(ValueError, match="needs"):
        routes.post("/things", "Things", body=body, response={})(view)


# ---- integers in bodies, paths and queries ------------------------------------------------------


async def test_a_mass_sends_item_out_of_range_or_not_an_integer_is_400_naming_it(h):
    for item in [*HUGE, *NOT_INTEGERS, None, 0, -1]:
        status, answer = await call(h, "POST", "/mass-sends", {"guide": "g1", "item": item})
        assert status == 400, (item, answer)
        assert "'item'" in reason(answer), (item, answer)
    assert (await call(h, "GET", "/mass-sends"))[1] == {"mass_sends": []}


async def test_orders_refuse_huge_amounts_stores_and_dates_and_store_nothing(h):
    h.set_time(at(9, 10))
    good = {
        "order_id": "big-1",
        "external_userid": "wmc01",
        "amount": "10.00",
        "paid_at": "2026-03-09T10:00:00+08:00",
    }
    spoiled = [
        ("amount", "1e999999"),
        ("amount", "-1e999999"),
        ("amount", 10**30),
        ("amount", True),
        ("store", 10**30),
        ("store", 2**63),
        ("store", INT32_MAX + 1),
        ("store", True),
        ("store", 1.5),
        ("paid_at", "0001-01-01T00:00:00+14:00"),
        ("paid_at", "9999-12-31T23:59:59-14:00"),
        ("refunded_at", "0001-01-01T00:00:00Z"),
    ]
    for name, value in spoiled:
        status, answer = await call(h, "POST", "/orders", {**good, name: value})
        assert status == 400, (name, value, answer)
        assert f"'{name}'" in reason(answer), (name, value, answer)
    # A digit string no department id can be names no store (not a database error): the
    # order fits its schema, but nothing stored answers to it.
    for store in ("99999999999999999999", "2147483648", "²"):
        status, answer = await call(h, "POST", "/orders", {**good, "store": store})
        assert (status, reason(answer)) == (422, f"no store {store!r}"), answer
    assert (await call(h, "GET", "/orders/big-1"))[0] == 404
    assert (await call(h, "POST", "/orders", {**good, "store": 11}))[0] == 201
    status, answer = await call(
        h, "POST", "/orders/big-1/refund", {"refunded_at": "9999-12-31T23:59:59-14:00"}
    )
    assert status == 400 and "'refunded_at'" in reason(answer), answer
    assert (await call(h, "GET", "/orders/big-1"))[1]["status"] == "paid"


@pytest.mark.parametrize(
    "path",
    [
        "/content/2147483648",
        "/content/9223372036854775808",
        "/content/²",
        "/content/0",
        "/mass-sends/9223372036854775808",
        "/mass-sends/١٢",
        "/tasks/9223372036854775808",
        "/tasks/99999999999999999999999999",
        "/stores/2147483648/metrics",
        "/stores/²/metrics",
    ],
)
@READS_ONLY
async def test_a_path_id_no_row_can_have_is_404(shared_h, path):
    status, answer = await call(shared_h, "GET", path)
    assert (status, answer["error"]["code"]) == (404, "not_found"), answer


async def test_writes_to_a_path_id_no_row_can_have_are_404(h):
    for method, path, body in [
        ("PATCH", "/content/2147483648", {"title": "x"}),
        ("DELETE", "/content/9223372036854775808", None),
        ("POST", "/tasks/9223372036854775808/done", {}),
        ("POST", "/tasks/²/skip", {"reason": "x"}),
        ("PATCH", "/stores/2147483648", {"timezone": "Asia/Tokyo"}),
        ("PATCH", "/stores/99999999999999999999999", {"timezone": "Asia/Tokyo"}),
    ]:
        status, answer = await call(h, method, path, body)
        assert status == 404, (method, path, answer)


@READS_ONLY
async def test_store_and_integer_query_parameters_out_of_range(shared_h):
    h = shared_h
    for path in ("/customers", "/guides", "/contact-ways", "/leaderboard"):
        for store in ("99999999999999999999", "2147483648", "²", "9" * 5000):
            status, answer = await call(h, "GET", path, params={"store": store})
            # Too long to be a store: 400; no store has it: 422 (a filter) or 404 (a path).
            assert status in (400, 404, 422), (path, store[:30], answer)
    for path, name in [("/customers", "per_page"), ("/tasks", "page"), ("/leaderboard", "limit")]:
        for raw in ("9223372036854775808", "1.5", "true", "9" * 5000):
            status, answer = await call(h, "GET", path, params={name: raw})
            assert status == 400 and repr(name) in reason(answer), (path, raw[:30], answer)


@READS_ONLY
async def test_dates_out_of_range_in_queries_are_400(shared_h):
    h = shared_h
    for path, params in [
        ("/tasks", {"due_before": "0001-01-01T00:00:00+14:00"}),
        ("/tasks", {"due_before": "9999-12-31T23:59:59-14:00"}),
        # The default `from` is six days before `to`: before 0001-01-01 there is no date.
        ("/metrics", {"to": "0001-01-01"}),
        ("/leaderboard", {"to": "0001-01-01"}),
        ("/guides/g1/metrics", {"to": "0001-01-03"}),
    ]:
        status, answer = await call(h, "GET", path, params=params)
        assert status == 400, (path, params, answer)


async def test_nul_and_lone_surrogates_are_400_and_store_nothing(h):
    for title in ("a\x00b", "\ud800"):
        status, answer = await call(h, "POST", "/content", {"kind": "text", "title": title})
        assert status == 400, answer
    status, answer = await call(h, "POST", "/content", {"kind": "text", "title": "t", "x\x00": 1})
    assert status == 400, answer
    assert (await call(h, "GET", "/content"))[1]["total"] == 0
    for params in ({"guide": "g\x00"}, {"store\x00": "11"}):
        status, answer = await call(h, "GET", "/customers", params=params)
        assert status == 400 and "NUL" in reason(answer), answer
    assert (await call(h, "GET", "/orders/a%00b"))[0] == 400


# ---- null in a PATCH ---------------------------------------------------------------------------


async def _store(h) -> dict:
    stores = (await call(h, "GET", "/stores"))[1]["stores"]
    return next(s for s in stores if s["id"] == 11)


async def test_patch_store_null_timezone_clears_it_null_code_is_400(h):
    status, answer = await call(h, "PATCH", "/stores/11", {"timezone": "Asia/Tokyo"})
    assert status == 200 and answer["timezone"] == "Asia/Tokyo", answer
    before = await _store(h)

    for body in ({"code": None}, {"code": None, "timezone": None}, {"timezone": None, "nmae": 1}):
        status, answer = await call(h, "PATCH", "/stores/11", body)
        assert status == 400, (body, answer)
        assert await _store(h) == before  # nothing changed, not even the time zone
    status, answer = await call(h, "PATCH", "/stores/11", {"code": None})
    assert "'code' cannot be null" in reason(answer)
    status, answer = await call(h, "PATCH", "/stores/11", {"nmae": 1})
    assert "unknown field 'nmae'" in reason(answer)

    status, answer = await call(h, "PATCH", "/stores/11", {"timezone": None})
    assert status == 200 and answer["timezone"] is None, answer
    assert answer["code"] == before["code"]


async def test_patch_content_null_clears_optional_fields_and_is_400_for_required_ones(h):
    status, made = await call(
        h,
        "POST",
        "/content",
        {
            "kind": "text",
            "title": "春季新品",
            "body": "words",
            "summary": "a summary",
            "tags": ["spring"],
            "valid_from": "2026-03-01T00:00:00+08:00",
            "valid_to": "2026-04-01T00:00:00+08:00",
        },
    )
    assert status == 201, made
    path = f"/content/{made['id']}"

    for name in ("title", "kind", "key"):
        status, answer = await call(h, "PATCH", path, {name: None, "summary": None})
        assert status == 400 and repr(name) in reason(answer), (name, answer)
    kept = (await call(h, "GET", path))[1]
    assert (kept["title"], kept["summary"], kept["valid_to"]) == (
        "春季新品",
        "a summary",
        made["valid_to"],
    )

    status, answer = await call(h, "PATCH", path, {"valid_to": None, "summary": None, "tags": None})
    assert status == 200, answer
    assert (answer["valid_to"], answer["summary"], answer["tags"]) == (None, None, [])
    assert answer["valid_from"] == made["valid_from"] and answer["title"] == "春季新品"

    status, answer = await call(h, "PATCH", path, {"valid_from": "0001-01-01"})
    assert status == 400 and "'valid_from'" in reason(answer), answer
    assert (await call(h, "GET", path))[1]["valid_from"] == made["valid_from"]


# ---- control characters ------------------------------------------------------------------------


async def test_line_breaks_in_a_link_or_a_media_type_are_400_and_store_nothing(h):
    status, answer = await call(
        h,
        "POST",
        "/content",
        {"kind": "link", "title": "t", "url": "https://shop.example/a\r\nSet-Cookie: x=1"},
    )
    assert status == 400 and "'url'" in reason(answer), answer
    image = base64.b64encode(PNG + b"0" * 16).decode()
    media = {"filename": "a.png", "content_type": "image/png\r\nX-Evil: 1", "data_base64": image}
    status, answer = await call(
        h, "POST", "/content", {"kind": "image", "title": "t", "media": media}
    )
    assert status == 400 and "'media.content_type'" in reason(answer), answer
    assert (await call(h, "GET", "/content"))[1]["total"] == 0


def test_the_importers_way_in_refuses_them_too():
    # Files and YAML reach the library through clean_fields and the media check, not the API.
    with pytest.raises(Invalid, match="control characters"):
        clean_fields({"kind": "link", "title": "t", "url": "https://a.example/\r\nb"}, tz=UTC)
    item = ContentItem(kind="image", title="t")
    media = MediaInput("a.png", "image/png\r\nX: 1", PNG + b"0" * 16)
    with pytest.raises(Invalid, match=r"media\.content_type"):
        check_complete(item, media)


async def test_a_link_stored_with_a_line_break_shows_its_page_instead_of_dropping(h):
    status, made = await call(
        h, "POST", "/content", {"kind": "link", "title": "会员日", "url": "https://shop.example/a"}
    )
    assert status == 201, made
    async with h.sessions() as session, session.begin():  # a row from before the check
        item = await session.get(ContentItem, made["id"])
        item.url = "https://shop.example/a\r\nSet-Cookie: x=1"
    token, _ = links.mint(h.settings.secret_key, item_id=made["id"], guide="g1", now=h.clock.now())
    # A link naming no customer first hands the browser its visitor id (302 ?seen=<ref>).
    first = await h.client.get(f"/r/{token}", allow_redirects=False)
    assert first.status == 302 and first.headers["Location"].startswith("?seen=")
    response = await h.client.get(f"/r/{token}{first.headers['Location']}", allow_redirects=False)
    assert response.status == 200 and "会员日" in await response.text()
    assert "Location" not in response.headers


# ---- page parameters ---------------------------------------------------------------------------

HUGE_TEXT = ["99999999999999999999999", "9223372036854775808", "-1", "0", "²", "1e3", "9" * 5000]
PAGE_PARAMS = [
    "page",
    "per_page",
    "task",
    "limit",
    "id",
    "store",
    "from",
    "to",
    "metric",
    "q",
    "lang",
    "format",
]


async def test_every_page_route_bounds_its_parameters(h, sessions):
    """Every GET route outside the API, signed in as HQ and as a guide, with huge or strange
    values for the parameters pages read: never a 5xx; a number that is not a page or a task
    is a 400 with a reason."""
    await h.add("g1", "wmc01")
    admin = admin_cookie(await sessions.account("boss", "hq", []))
    guide = guide_cookie(sessions.guide("g1"))
    # Signing out revokes the session, so the sign-out routes come last.
    routes = sorted(
        {
            route.resource.canonical
            for route in h.client.server.app.router.routes()
            if route.method == "GET"
            and route.resource is not None
            and not route.resource.canonical.startswith("/api/")
        },
        key=lambda canonical: (canonical.endswith("/logout"), canonical),
    )
    assert {"/admin/customers", "/sidebar", "/admin", "/r/{token}"} <= set(routes), routes
    # Every parameter with every value on every route (CI's profile); `make test` a share of
    # them per route and cookie, a different share on each route (tests/fuzzing.py).
    combinations = list(itertools.product(PAGE_PARAMS, HUGE_TEXT))
    share = examples(len(combinations))
    checked = 0
    for canonical in routes:
        path = canonical.replace("{userid}", "g1").replace("{name}", "admin.css")
        path = path.replace("{external_userid}", "wmc01")
        path = path.replace("{token}", "x").replace("{chat_id}", "x")
        for who, cookie in (("hq", admin), ("guide", guide)):
            drawn = random.Random(f"{canonical} {who}").sample(combinations, share)
            for name, value in drawn:
                response = await h.client.get(
                    path, params={name: value}, headers=cookie, allow_redirects=False
                )
                assert response.status < 500, (path, name, value[:30], response.status)
                checked += 1
    assert checked == len(routes) * 2 * share >= 20 * 2 * 10, checked
    admin = admin_cookie(await sessions.account("boss2", "hq", []))
    guide = guide_cookie(sessions.guide("g1"))
    # The admin's reason is in its language (Chinese by default), the sidebar's in both.
    for path, name, cookie, reason in [
        ("/admin/customers", "page", admin, "页码须为 1 到 1000000 的整数"),
        ("/sidebar", "task", guide, repr("task")),
    ]:
        for value in HUGE_TEXT:
            response = await h.client.get(path, params={name: value}, headers=cookie)
            assert response.status == 400, (path, name, value[:30])
            assert reason in await response.text()
