"""The metrics API's shape and its errors: exact key sets, 400s with reasons, 404s, 401s."""

from __future__ import annotations

from guidebot.metrics.kpis import KPI_NAMES
from tests.metrics.conftest import at

PERIOD = {"from": "2026-03-09", "to": "2026-03-15"}
ROUTES = [
    "/guides/g1/metrics",
    "/stores/11/metrics",
    "/metrics",
    "/leaderboard",
    "/guides/g1/wecom-comparison",
]


async def test_answers_have_exactly_the_documented_keys(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await h.settle()

    status, body = await h.api("GET", "/guides/g1/metrics", params=PERIOD)
    assert status == 200
    assert set(body) == {"guide", "from", "to", "metrics"}
    assert body["guide"] == {"userid": "g1", "name": "王芳"}
    assert (body["from"], body["to"]) == ("2026-03-09", "2026-03-15")
    assert list(body["metrics"]) == list(KPI_NAMES)
    # 31 from our log (7 of customer groups and their links, 8 of group steps), 5 of WeCom's
    assert len(KPI_NAMES) == 36

    status, body = await h.api("GET", "/guides/g1/metrics", params={**PERIOD, "by": "day"})
    assert set(body) == {"guide", "from", "to", "metrics", "days"}
    assert [d["day"] for d in body["days"]] == [f"2026-03-{d:02d}" for d in range(9, 16)]
    assert all(set(d) == {"day", "metrics"} for d in body["days"])
    assert all(list(d["metrics"]) == list(KPI_NAMES) for d in body["days"])
    assert body["days"][0]["metrics"]["new_customers"] == 1

    status, body = await h.api("GET", "/stores/张江店/metrics", params=PERIOD)
    assert status == 404  # stores are found by code or id, not by name
    status, body = await h.api("GET", "/stores/11/metrics", params=PERIOD)
    assert set(body) == {"store", "from", "to", "metrics"}
    assert body["store"] == {"id": 11, "code": "11", "name": "张江店"}
    status, body = await h.api("GET", "/metrics", params=PERIOD)
    assert set(body) == {"from", "to", "metrics"}
    assert body["metrics"]["new_customers"] == 1

    status, body = await h.api("GET", "/leaderboard", params={**PERIOD, "store": "11"})
    assert set(body) == {"from", "to", "metric", "store", "guides"}
    assert body["metric"] == "new_customers"
    assert [set(r) for r in body["guides"]] == [{"rank", "userid", "name", "value", "metrics"}] * 2
    assert [(r["userid"], r["value"]) for r in body["guides"]] == [("g1", 1), ("g3", 0)]

    # Without from/to: the 7 days up to today (GUIDEBOT_TIMEZONE).
    status, body = await h.api("GET", "/metrics")
    assert (status, body["from"], body["to"]) == (200, "2026-03-03", "2026-03-09")


async def test_bad_parameters_are_400_unknown_things_404_no_token_401(h):
    # 400: a parameter does not fit the schema; 422: the days do not make a period.
    bad = [
        ({"from": "2026-3-9", "to": "2026-03-15"}, 400, "'from' must be a date YYYY-MM-DD"),
        ({"from": "2026-02-30", "to": "2026-03-15"}, 400, "not a calendar date"),
        ({"from": "2026-03-16", "to": "2026-03-15"}, 422, "after"),
        ({"from": "2024-01-01", "to": "2026-03-15"}, 422, "more than 366 days"),
        ({**PERIOD, "by": "week"}, 400, "'by'"),
    ]
    for params, expected, reason in bad:
        for path in ROUTES[:3]:
            status, body = await h.api("GET", path, params=params)
            assert status == expected, (path, params, body)
            code = {400: "bad_request", 422: "unprocessable"}[expected]
            assert body["error"]["code"] == code
            assert reason in body["error"]["reason"], body
    status, body = await h.api("GET", "/leaderboard", params={**PERIOD, "metric": "vibes"})
    assert status == 400 and "new_customers" in body["error"]["reason"]
    status, body = await h.api("GET", "/leaderboard", params={**PERIOD, "limit": "0"})
    assert status == 400

    for path in ("/guides/nobody/metrics", "/guides/nobody/wecom-comparison"):
        status, body = await h.api("GET", path, params=PERIOD)
        assert (status, body["error"]["code"]) == (404, "not_found"), path
        assert "nobody" in body["error"]["reason"]
    for path, params in (
        ("/stores/99/metrics", PERIOD),
        ("/stores/10/metrics", PERIOD),  # a region, not a store
        ("/leaderboard", {**PERIOD, "store": "99"}),
    ):
        status, body = await h.api("GET", path, params=params)
        assert status == 404, (path, body)

    for path in ROUTES:
        status, body = await h.api("GET", path, params=PERIOD, auth=False)
        assert (status, body["error"]["code"]) == (401, "unauthorized"), path
    for path in ("/orders", "/orders/X/refund"):
        status, _ = await h.api("POST", path, json={}, auth=False)
        assert status == 401

    response = await h.client.get("/api/v1/openapi.json")
    paths = (await response.json())["paths"]
    for path in (*ROUTES, "/orders", "/orders/{order_id}", "/orders/{order_id}/refund"):
        path = path.replace("g1", "{userid}").replace("/11/", "/{store}/")
        assert f"/api/v1{path}" in paths, path
