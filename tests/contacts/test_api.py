"""The contacts JSON API: filters, pagination, detail, errors, auth and the OpenAPI document."""

from __future__ import annotations

import pytest

from guidebot.contacts.directory import store_zone
from guidebot.contacts.models import Department


async def seed(h) -> None:
    """wmc1: g1 through a poster code of store 12; wmc2: g2 (store 12); wmc3: g3, then lost."""
    _, way = await h.api(
        "POST",
        "/contact-ways",
        json={"store": "12", "channel": "poster", "userids": ["g1"]},
    )
    await h.act("contact/add", {"config_id": way["config_id"], "external_userid": "wmc1"})
    h.advance(60)
    await h.add("g2", "wmc2")
    h.advance(60)
    await h.add("g3", "wmc3")
    h.advance(60)
    await h.act("contact/delete_by_customer", {"userid": "g3", "external_userid": "wmc3"})


async def customers(h, **params) -> tuple[list[str], int]:
    status, body = await h.api("GET", "/customers", params=params)
    assert status == 200, body
    return [c["external_userid"] for c in body["customers"]], body["total"]


async def test_customers_filter_by_guide_store_status_and_channel(h):
    await seed(h)
    assert await customers(h) == (["wmc3", "wmc2", "wmc1"], 3)  # newest first
    assert await customers(h, guide="g1") == (["wmc1"], 1)
    assert await customers(h, store="12") == (["wmc2", "wmc1"], 2)  # wmc1 by the poster's store
    assert await customers(h, store="11") == (["wmc3"], 1)
    assert await customers(h, status="lost") == (["wmc3"], 1)
    assert await customers(h, channel="poster") == (["wmc1"], 1)
    assert await customers(h, guide="g2", status="active") == (["wmc2"], 1)
    assert await customers(h, guide="g2", status="lost") == ([], 0)

    _, body = await h.api("GET", "/customers", params={"guide": "g1"})
    [wmc1] = body["customers"]
    assert wmc1["name"] == "陈女士"
    [relation] = wmc1["relations"]
    assert (relation["guide_userid"], relation["store_id"], relation["channel"]) == (
        "g1",
        12,
        "poster",
    )


async def test_customers_paginate_with_a_total(h):
    await seed(h)
    assert await customers(h, per_page=2) == (["wmc3", "wmc2"], 3)
    assert await customers(h, per_page=2, page=2) == (["wmc1"], 3)
    assert await customers(h, per_page=2, page=3) == ([], 3)
    _, body = await h.api("GET", "/customers", params={"per_page": 2, "page": 2})
    assert (body["page"], body["per_page"]) == (2, 2)


@pytest.mark.parametrize(
    ("params", "expected", "reason"),
    [
        ({"status": "gone"}, 400, "'status' must be one of active, lost, removed, transferred"),
        ({"page": "0"}, 400, "'page' must be between"),
        ({"per_page": "many"}, 400, "'per_page' must be an integer"),
        ({"per_page": "1000"}, 400, "'per_page' must be between"),
        # These fit the schema; nothing stored answers to them.
        ({"store": "99"}, 422, "unknown store '99'"),
        ({"guide": "nobody"}, 422, "unknown guide 'nobody'"),
    ],
)
async def test_bad_filters_answer_400_or_422_with_a_reason(h, params, expected, reason):
    status, body = await h.api("GET", "/customers", params=params)
    assert status == expected
    code = {400: "bad_request", 422: "unprocessable"}[expected]
    assert body["error"]["code"] == code and reason in body["error"]["reason"]


async def test_one_customer_has_profile_relations_and_timeline(h):
    await seed(h)
    h.advance(60)
    await h.add("g1", "wmc3")
    status, body = await h.api("GET", "/customers/wmc3")
    assert status == 200
    assert (body["customer"]["name"], body["customer"]["unionid"]) == ("赵女士", "u-wmc3")
    assert {(r["guide_userid"], r["status"]) for r in body["relations"]} == {
        ("g3", "lost"),
        ("g1", "active"),
    }
    assert [(e["guide_userid"], e["kind"], e["store_id"]) for e in body["timeline"]] == [
        ("g3", "added", 11),
        ("g3", "lost", 11),
        ("g1", "added", 11),
    ]


async def test_an_unknown_customer_is_a_404_with_a_reason(h):
    status, body = await h.api("GET", "/customers/wmnobody")
    assert status == 404
    assert body == {"error": {"code": "not_found", "reason": "no customer 'wmnobody'"}}


async def test_guides_show_their_current_store_and_stores_their_counts(h):
    await seed(h)
    await h.act("users", {"userid": "g3", "name": "张伟", "department": [12], "notify": True})
    await h.act("users/delete", {"userid": "g2", "notify": True})

    status, body = await h.api("GET", "/guides")
    assert status == 200
    by_id = {g["userid"]: g for g in body["guides"]}
    assert by_id["g1"]["store"] == {"id": 11, "code": "11", "name": "张江店"}
    assert by_id["g3"]["store"]["id"] == 12  # moved
    assert (by_id["g2"]["status"], by_id["g2"]["store"]) == ("left", None)
    assert (by_id["g1"]["active_customers"], by_id["g3"]["active_customers"]) == (1, 0)
    _, body = await h.api("GET", "/guides", params={"store": "12"})
    assert [g["userid"] for g in body["guides"]] == ["g3"]

    status, body = await h.api("GET", "/stores")
    assert status == 200
    assert [
        (s["id"], s["name"], s["region"]["name"], s["guides"], s["active_customers"])
        for s in body["stores"]
    ] == [(11, "张江店", "华东", 1, 0), (12, "徐汇店", "华东", 1, 2)]


async def test_a_store_takes_a_time_zone_and_a_code(h):
    status, body = await h.api(
        "PATCH", "/stores/11", json={"timezone": "Asia/Urumqi", "code": "ZJ01"}
    )
    assert status == 200, body
    assert (body["code"], body["timezone"]) == ("ZJ01", "Asia/Urumqi")
    await h.add("g1", "wmc1")
    assert await customers(h, store="ZJ01") == (["wmc1"], 1)
    async with h.sessions() as session:
        zhangjiang, xuhui = await session.get(Department, 11), await session.get(Department, 12)
    assert store_zone(zhangjiang, "Asia/Shanghai").key == "Asia/Urumqi"
    assert store_zone(xuhui, "Asia/Shanghai").key == "Asia/Shanghai"  # no override

    status, body = await h.api("PATCH", "/stores/ZJ01", json={"timezone": "Mars/Olympus"})
    assert status == 400 and "not an IANA time zone" in body["error"]["reason"]
    status, body = await h.api("PATCH", "/stores/12", json={"code": "ZJ01"})
    assert status == 409
    status, body = await h.api("PATCH", "/stores/ZJ01", json={"timezone": None})
    assert (status, body["timezone"]) == (200, None)
    status, body = await h.api("PATCH", "/stores/10", json={"code": "X"})  # a region
    assert status == 404


ROUTES = [
    ("GET", "/customers"),
    ("GET", "/customers/wmc1"),
    ("GET", "/guides"),
    ("GET", "/stores"),
    ("PATCH", "/stores/11"),
    ("GET", "/contact-ways"),
    ("POST", "/contact-ways"),
    ("GET", "/transfers"),
    ("POST", "/transfers"),
]


async def test_every_route_wants_the_admin_token_and_is_in_the_openapi_document(h):
    for method, path in ROUTES:
        status, body = await h.api(method, path, auth=False, json={})
        assert status == 401, (method, path)
        assert body["error"]["code"] == "unauthorized"

    response = await h.client.get("/api/v1/openapi.json")
    document = await response.json()
    paths = document["paths"]
    for method, path in ROUTES:
        template = path.replace("wmc1", "{external_userid}").replace("/11", "/{store}")
        operation = paths[f"/api/v1{template}"][method.lower()]
        # The HQ bearer token, or a session (cookie); calls that change state carry its CSRF token.
        assert operation["security"][0] == {"bearer": []} and operation["summary"]
        sessions = [scheme for scheme in operation["security"] if "bearer" not in scheme]
        assert sessions and all(("csrf" in s) == (method != "GET") for s in sessions), operation
    customer_params = {p["name"] for p in paths["/api/v1/customers"]["get"]["parameters"]}
    assert customer_params == {"guide", "store", "status", "channel", "tag", "page", "per_page"}
