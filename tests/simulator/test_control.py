"""The control API refuses bad input with a 4xx and a reason, and changes nothing."""

from __future__ import annotations

import pytest


async def test_bad_json_is_400_with_a_reason(sim):
    response = await sim.client.post("/_sim/contact/add", data=b"{oops")
    assert response.status == 400
    assert "not valid JSON" in (await response.json())["error"]
    response = await sim.client.post("/_sim/users", json=["not", "an", "object"])
    assert response.status == 400
    assert "JSON object" in (await response.json())["error"]


@pytest.mark.parametrize(
    ("path", "payload", "reason"),
    [
        ("contact/add", {"external_userid": "wmC1"}, "'userid' is required"),
        ("contact/add", {"userid": "ghost", "external_userid": "wmC1"}, "unknown userid"),
        ("users", {"userid": "u", "name": "U", "department": [42]}, "unknown department"),
        ("users", {"userid": "u", "name": "U", "department": "2"}, "list of department"),
        ("departments", {"id": "x", "name": "N"}, "'id' must be an integer"),
        ("faults", {"api": "user/get"}, "needs errcode, http_status, latency or timeout"),
        ("faults", {"api": "user/get", "errcode": -1, "times": 0}, "at least 1"),
        ("config", {"api_limit_per_minute": 0}, "positive integer"),
        ("config", {"api_limit_per_hour": 1.5}, "positive integer"),
        ("config", {"member_messages_per_hour": -1}, "positive integer"),
        ("config", {"callback_url": "not a url"}, "http(s) URL"),
        ("contact/delete_by_customer", {"userid": "alice", "external_userid": "wm"}, "no relation"),
        ("groupmsg/confirm", {"msgid": "msgNope", "userid": "alice"}, "unknown msgid"),
        (
            "contact/transfer",
            {"handover_userid": "alice", "takeover_userid": "bob", "external_userid": "wm"},
            "no pending transfer",
        ),
    ],
)
async def test_bad_input_is_refused_with_a_reason(sim, receiver, path, payload, reason):
    before = len(sim.state.relations), len(sim.state.members), len(sim.state.faults)
    answer = await sim.control(path, payload, status=400)
    assert reason in answer["error"]
    assert (len(sim.state.relations), len(sim.state.members), len(sim.state.faults)) == before
    assert receiver.posts == []


async def test_adding_an_existing_friend_again_is_409(sim, receiver):
    await sim.add("alice", "wmC1")
    answer = await sim.control(
        "contact/add", {"userid": "alice", "external_userid": "wmC1"}, status=409
    )
    assert "already a customer" in answer["error"]
    assert len(receiver.posts) == 1


async def test_unknown_endpoint_is_404_json(sim):
    answer = await sim.control("no/such/thing", {}, status=404)
    assert "no control endpoint" in answer["error"]


async def test_config_changes_apply_at_runtime(sim):
    view = await sim.control("config", {"api_limit_per_minute": 2, "welcome_code_ttl": 5})
    assert view["api_limit_per_minute"] == 2 and view["monthly_cap"] is None
    token = await sim.token()
    codes = [(await sim.api("department/list", token=token))["errcode"] for _ in range(3)]
    assert codes == [0, 0, 45009]
    assert (await sim.control("config", method="GET"))["welcome_code_ttl"] == 5
