"""Authorization on every API route: no principal is 401; a guide or a manager asking for what is
outside their scope gets 404 (a route not open to their role: 403), never the data.

The table below names an out-of-scope request for EVERY registered endpoint: a new route without
an entry fails `test_every_route_is_in_the_table`. Guide g1 (store 11) asks for g2's customer
and numbers; the manager of store 11 asks for store 12 and its guide g2.
"""

from __future__ import annotations

import json

from guidebot.app import api_groups
from tests.metrics.conftest import at
from tests.web.conftest import admin_cookie, guide_cookie

# (method, path template) -> (concrete out-of-scope path, query) for a guide of store 11 (g1)
# and a manager of store 11. Hq-only routes answer 403 to both whatever the path names.
OUTSIDE: dict[tuple[str, str], tuple[str, dict[str, str]]] = {
    ("GET", "/customers"): ("/customers", {"guide": "g2", "store": "12"}),
    ("GET", "/customers/{external_userid}"): ("/customers/wmc02", {}),
    ("GET", "/guides"): ("/guides", {"store": "12"}),
    ("GET", "/stores"): ("/stores", {}),
    ("PATCH", "/stores/{store}"): ("/stores/12", {}),
    ("GET", "/contact-ways"): ("/contact-ways", {"store": "12"}),
    ("POST", "/contact-ways"): ("/contact-ways", {}),
    ("GET", "/transfers"): ("/transfers", {"guide": "g2"}),
    ("POST", "/transfers"): ("/transfers", {}),
    ("GET", "/playbooks"): ("/playbooks", {}),
    ("POST", "/playbooks/reload"): ("/playbooks/reload", {}),
    ("POST", "/playbooks/validate"): ("/playbooks/validate", {}),
    ("POST", "/playbooks/preview"): ("/playbooks/preview", {}),
    ("PUT", "/playbooks/{id}"): ("/playbooks/week_sop", {}),
    ("GET", "/enrollments"): ("/enrollments", {"guide": "g2"}),
    ("GET", "/tasks"): ("/tasks", {"guide": "g2"}),
    # Task 3 is g2's (week_sop has two steps; g1's customer was added first).
    ("GET", "/tasks/{id}"): ("/tasks/3", {}),
    ("POST", "/tasks/{id}/done"): ("/tasks/3/done", {}),
    ("POST", "/tasks/{id}/skip"): ("/tasks/3/skip", {}),
    ("POST", "/tasks/{id}/snooze"): ("/tasks/3/snooze", {}),
    ("POST", "/replies"): ("/replies", {}),
    ("GET", "/content"): ("/content", {}),
    ("POST", "/content"): ("/content", {}),
    ("GET", "/content/{id}"): ("/content/1", {}),
    ("PATCH", "/content/{id}"): ("/content/1", {}),
    ("DELETE", "/content/{id}"): ("/content/1", {}),
    ("POST", "/mass-sends"): ("/mass-sends", {}),
    ("GET", "/mass-sends"): ("/mass-sends", {"guide": "g2"}),
    ("GET", "/mass-sends/{id}"): ("/mass-sends/1", {}),
    ("GET", "/guides/{userid}/metrics"): ("/guides/g2/metrics", {}),
    ("GET", "/stores/{store}/metrics"): ("/stores/12/metrics", {}),
    ("GET", "/metrics"): ("/metrics", {}),
    ("GET", "/cohorts"): ("/cohorts", {"by": "store"}),
    ("GET", "/stages"): ("/stages", {"by": "store"}),
    ("GET", "/kpis"): ("/kpis", {}),
    ("GET", "/leaderboard"): ("/leaderboard", {"store": "12"}),
    ("GET", "/guides/{userid}/wecom-comparison"): ("/guides/g2/wecom-comparison", {}),
    ("POST", "/orders"): ("/orders", {}),
    ("GET", "/orders/{order_id}"): ("/orders/o-1", {}),
    ("POST", "/orders/{order_id}/refund"): ("/orders/o-1/refund", {}),
    ("GET", "/groups"): ("/groups", {"store": "12"}),
    ("GET", "/groups/{chat_id}"): ("/groups/wrNOSUCH", {}),
    ("PUT", "/groups/{chat_id}/labels/{label}"): ("/groups/wrNOSUCH/labels/VIP", {}),
    ("DELETE", "/groups/{chat_id}/labels/{label}"): ("/groups/wrNOSUCH/labels/VIP", {}),
    ("GET", "/group-chat-stats"): ("/group-chat-stats", {"store": "12"}),
    ("GET", "/group-join-ways"): ("/group-join-ways", {"store": "12"}),
    ("POST", "/group-join-ways"): ("/group-join-ways", {}),
    ("DELETE", "/group-join-ways/{config_id}"): ("/group-join-ways/nosuchway", {}),
    ("GET", "/stores/{store}/group-welcome"): ("/stores/12/group-welcome", {}),
    ("PUT", "/stores/{store}/group-welcome"): ("/stores/12/group-welcome", {}),
    ("DELETE", "/stores/{store}/group-welcome"): ("/stores/12/group-welcome", {}),
    ("GET", "/privacy/customers/{external_userid}"): ("/privacy/customers/wmc01", {}),
    ("POST", "/privacy/customers/{external_userid}/erase"): ("/privacy/customers/wmc01/erase", {}),
    ("GET", "/audit"): ("/audit", {}),
}


# Bodies for routes open to guides, so the request is refused for its scope, not its shape.
BODIES = {
    ("POST", "/tasks/{id}/skip"): {"reason": "客户出差"},
    ("POST", "/tasks/{id}/snooze"): {"delay": "2h"},
}

# Lists that cannot name another scope: they answer 200 with the caller's own rows only.
# Answered in scope (200) with nothing of another store's; /kpis is the same for everyone.
FILTERED = {("GET", "/stores"), ("GET", "/kpis")}
OTHER_SCOPE = ("徐汇店", '"g2"', '"wmc02"', '"id": 12')


def endpoints():
    return [e for group in api_groups() for e in group.endpoints]


def test_every_route_is_in_the_table():
    registered = {(e.method, e.path) for e in endpoints() if not e.public}
    assert registered == set(OUTSIDE), (
        "every API route needs an authorization rule and an entry in OUTSIDE: "
        f"missing {sorted(registered - set(OUTSIDE))}, stale {sorted(set(OUTSIDE) - registered)}"
    )


async def _setup(h, sessions):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await h.add("g2", "wmc02")
    await h.add("g3", "wmc03")
    await h.settle()
    manager = await sessions.account("m11", "manager", ["11"])
    return manager, sessions.guide("g1")


async def test_no_principal_is_401_and_out_of_scope_is_404_on_every_route(h, sessions):
    manager, guide = await _setup(h, sessions)
    bad_guide = sessions.guide("g1")[:-3] + "AAA"
    for endpoint in endpoints():
        if endpoint.public:
            continue
        path, params = OUTSIDE[(endpoint.method, endpoint.path)]
        url = f"/api/v1{path}"
        for headers in ({}, {"Authorization": "Bearer wrong"}, guide_cookie(bad_guide)):
            response = await h.client.request(endpoint.method, url, params=params, headers=headers)
            assert response.status == 401, (endpoint.method, path, headers)
            assert (await response.json())["error"]["code"] == "unauthorized"

        for role, cookie in (("guide", guide_cookie(guide)), ("manager", admin_cookie(manager))):
            headers = dict(cookie)
            if endpoint.method != "GET":
                headers["X-CSRF-Token"] = sessions.csrf(cookie["Cookie"].split("=", 1)[1])
            body = BODIES.get((endpoint.method, endpoint.path))
            response = await h.client.request(
                endpoint.method, url, params=params, headers=headers, json=body
            )
            body = await response.json()
            if role not in endpoint.roles:
                assert (response.status, body["error"]["code"]) == (403, "forbidden"), path
            elif (endpoint.method, endpoint.path) in FILTERED:
                assert response.status == 200, (role, path, body)
                text = json.dumps(body, ensure_ascii=False)
                assert not any(word in text for word in OTHER_SCOPE), (role, path, text)
            else:
                assert (response.status, body["error"]["code"]) == (404, "not_found"), (
                    role,
                    endpoint.method,
                    path,
                    body,
                )


async def test_in_scope_reads_see_only_their_own(h, sessions):
    manager, guide = await _setup(h, sessions)

    async def get(path, cookie, **params):
        response = await h.client.get(f"/api/v1{path}", params=params, headers=cookie)
        return response.status, await response.json()

    g, m = guide_cookie(guide), admin_cookie(manager)
    status, body = await get("/customers", g)
    assert status == 200
    assert [c["external_userid"] for c in body["customers"]] == ["wmc01"]
    assert (await get("/customers/wmc01", g))[0] == 200
    assert (await get("/customers/wmc03", g))[0] == 404  # a colleague's customer, same store
    status, body = await get("/guides/g1/metrics", g, **{"from": "2026-03-09", "to": "2026-03-09"})
    assert (status, body["metrics"]["new_customers"]) == (200, 1)
    assert (await get("/guides/g3/metrics", g))[0] == 404

    status, body = await get("/customers", m)
    assert sorted(c["external_userid"] for c in body["customers"]) == ["wmc01", "wmc03"]
    assert (await get("/customers/wmc03", m))[0] == 200
    status, body = await get("/stores", m)
    assert [s["id"] for s in body["stores"]] == [11]
    status, body = await get("/guides", m)
    assert sorted(v["userid"] for v in body["guides"]) == ["g1", "g3"]
    status, body = await get("/stores/11/metrics", m, **{"from": "2026-03-09", "to": "2026-03-09"})
    assert (status, body["metrics"]["new_customers"]) == (200, 2)
    status, body = await get("/leaderboard", m, **{"from": "2026-03-09", "to": "2026-03-09"})
    assert sorted(r["userid"] for r in body["guides"]) == ["g1", "g3"]
    assert (await get("/guides/g3/metrics", m))[0] == 200
    assert (await get("/metrics", m))[0] == 403  # HQ totals are HQ's


async def test_hq_account_session_is_hq_and_needs_csrf_for_changes(h, sessions):
    await _setup(h, sessions)
    hq = await sessions.account("boss", "hq", [])
    cookie = admin_cookie(hq)
    response = await h.client.get("/api/v1/customers/wmc02", headers=cookie)
    assert response.status == 200
    response = await h.client.post("/api/v1/playbooks/reload", headers=cookie)
    assert (response.status, (await response.json())["error"]["code"]) == (403, "csrf")
    response = await h.client.post(
        "/api/v1/playbooks/reload", headers={**cookie, "X-CSRF-Token": "nope"}
    )
    assert response.status == 403
    response = await h.client.post(
        "/api/v1/playbooks/reload", headers={**cookie, "X-CSRF-Token": sessions.csrf(hq)}
    )
    assert response.status == 200
    # The bearer token needs no CSRF token: a browser never sends that header by itself.
    response = await h.client.post(
        "/api/v1/playbooks/reload", headers={"Authorization": "Bearer admin-token-for-tests"}
    )
    assert response.status == 200


async def test_openapi_documents_each_routes_roles(h):
    response = await h.client.get("/api/v1/openapi.json")
    document = await response.json()
    op = document["paths"]["/api/v1/customers/{external_userid}"]["get"]
    assert op["x-roles"] == ["hq", "manager", "guide"]
    assert document["paths"]["/api/v1/orders"]["post"]["x-roles"] == ["hq"]


async def test_a_guide_signed_in_at_the_sidebar_reaches_the_api_with_that_cookie(h, sessions):
    await _setup(h, sessions)
    signed_in = await h.client.get("/sidebar/login", params={"userid": "g1"}, allow_redirects=False)
    assert signed_in.status in (302, 303)
    cookie = signed_in.cookies["gb_guide"]
    assert cookie["path"] == "/" and cookie["httponly"]
    # The client's cookie jar now sends the session wherever the browser would.
    mine = await h.client.get("/api/v1/customers")
    assert mine.status == 200
    assert [c["external_userid"] for c in (await mine.json())["customers"]] == ["wmc01"]
    assert (await h.client.get("/api/v1/guides/g2/metrics")).status == 404
