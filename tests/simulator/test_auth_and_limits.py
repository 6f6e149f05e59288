"""gettoken, token expiry, unknown APIs, the per-API minute limit, and injected faults."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from guidebot.config import ConfigError
from guidebot.wecom.simulator import SimulatorConfig, run_simulator

from .conftest import IDENTITY


async def test_token_expires_after_ttl_and_a_fresh_one_works(make_sim):
    sim = await make_sim(token_ttl=7200)
    token = await sim.token()
    assert (await sim.api("department/list", token=token))["errcode"] == 0

    sim.clock.advance(7199)
    assert (await sim.api("department/list", token=token))["errcode"] == 0
    sim.clock.advance(1)
    expired = await sim.api("department/list", token=token)
    assert expired["errcode"] == 42001
    assert "expired" in expired["errmsg"]

    answer = await sim.api(
        "gettoken", token=None, corpid=IDENTITY.corp_id, corpsecret=IDENTITY.secret
    )
    assert answer["expires_in"] == 7200
    assert (await sim.api("department/list", token=answer["access_token"]))["errcode"] == 0


async def test_wrong_secret_wrong_corpid_and_missing_parameters(make_sim):
    sim = await make_sim()
    wrong_secret = await sim.api(
        "gettoken", token=None, corpid=IDENTITY.corp_id, corpsecret="not-the-secret"
    )
    assert wrong_secret["errcode"] == 40001
    assert "access_token" not in wrong_secret
    wrong_corp = await sim.api(
        "gettoken", token=None, corpid="wwsomeoneelse", corpsecret=IDENTITY.secret
    )
    assert wrong_corp["errcode"] == 40013
    assert (await sim.api("gettoken", token=None, corpid=IDENTITY.corp_id))["errcode"] == 41004


async def test_forged_missing_and_revoked_tokens(make_sim):
    sim = await make_sim()
    assert (await sim.api("user/get", token="forged-token", userid="x"))["errcode"] == 40014
    assert (await sim.api("user/get", token=None, userid="x"))["errcode"] == 41001
    token = await sim.token()
    assert (await sim.api("department/list", token=token))["errcode"] == 0
    assert (await sim.control("tokens/revoke"))["revoked"] == 1
    assert (await sim.api("department/list", token=token))["errcode"] == 40014


async def test_unknown_api_is_forbidden_with_http_200(make_sim):
    sim = await make_sim()
    answer = await sim.api("externalcontact/no_such_api", {"x": 1})
    assert answer["errcode"] == 48001


async def test_api_limit_per_minute_answers_45009_then_recovers(make_sim):
    sim = await make_sim(api_limit_per_minute=5)
    token = await sim.token()
    answers = [(await sim.api("department/list", token=token))["errcode"] for _ in range(6)]
    assert answers == [0, 0, 0, 0, 0, 45009]
    # The limit is per API: another path is unaffected.
    assert (await sim.api("externalcontact/get_follow_user_list", token=token))["errcode"] == 0
    sim.clock.advance(60)
    assert (await sim.api("department/list", token=token))["errcode"] == 0


async def test_fault_applies_n_times_then_the_real_answer_returns(make_sim):
    sim = await make_sim()
    token = await sim.token()
    await sim.control("faults", {"api": "/cgi-bin/department/list", "errcode": -1, "times": 2})
    answers = [(await sim.api("department/list", token=token))["errcode"] for _ in range(3)]
    assert answers == [-1, -1, 0]
    assert (await sim.control("faults", method="GET"))["faults"] == []


async def test_delete_faults_clears_pending_ones(make_sim):
    sim = await make_sim()
    token = await sim.token()
    await sim.control("faults", {"api": "*", "errcode": 45033, "times": 10})
    assert (await sim.api("user/list", token=token, department_id=1))["errcode"] == 45033
    assert (await sim.control("faults", method="DELETE"))["cleared"] == 1
    assert (await sim.api("user/list", token=token, department_id=1))["errcode"] == 0


async def test_http_status_and_latency_faults(make_sim):
    sim = await make_sim()
    token = await sim.token()
    await sim.control("faults", {"api": "department/list", "http_status": 502})
    response = await sim.client.get("/cgi-bin/department/list", params={"access_token": token})
    assert response.status == 502

    await sim.control("faults", {"api": "department/list", "latency": 0.2})
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await sim.api("department/list", token=token))["errcode"] == 0
    assert loop.time() - started >= 0.2


async def test_timeout_fault_hangs_past_the_client_timeout(make_sim):
    sim = await make_sim()
    token = await sim.token()
    await sim.control("faults", {"api": "department/list", "timeout": True})
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await sim.client.get("/cgi-bin/department/list", params={"access_token": token})
    # Only once: the next call answers normally.
    assert (await sim.api("department/list", token=token))["errcode"] == 0


async def test_call_log_redacts_secrets_and_records_answers(make_sim):
    sim = await make_sim()
    await sim.token()
    await sim.api("user/get", userid="nobody")
    calls = (await sim.control("calls", method="GET"))["calls"]
    assert [c["api"] for c in calls] == ["gettoken", "user/get"]
    assert calls[0]["query"]["corpsecret"] == "***"
    assert calls[1]["query"] == {"userid": "nobody", "access_token": "***"}
    assert calls[1]["answer"]["errcode"] == 60111
    only = await sim.client.get("/_sim/calls", params={"api": "user/get"})
    assert [c["api"] for c in (await only.json())["calls"]] == ["user/get"]


def test_config_from_env_reads_the_server_identity():
    env = {
        "GUIDEBOT_CORP_ID": IDENTITY.corp_id,
        "GUIDEBOT_AGENT_ID": "1000002",
        "GUIDEBOT_SECRET": IDENTITY.secret,
        "GUIDEBOT_TOKEN": IDENTITY.token,
        "GUIDEBOT_AES_KEY": IDENTITY.aes_key,
    }
    config = SimulatorConfig.from_env(env, callback_url="http://127.0.0.1:8080/wecom/callback")
    assert config.identity == IDENTITY
    assert config.callback_tries == 3 and config.callback_timeout == 5.0
    with pytest.raises(ConfigError, match="GUIDEBOT_AES_KEY"):
        SimulatorConfig.from_env({**env, "GUIDEBOT_AES_KEY": "short"})
    with pytest.raises(ValueError, match="callback_url"):
        SimulatorConfig(identity=IDENTITY, callback_url="ftp://nowhere")


async def test_two_simulators_in_one_process_share_nothing(make_sim):
    first, second = await make_sim(), await make_sim()
    await first.control("customers", {"external_userid": "wm1", "name": "Only in first"})
    assert "wm1" in first.state.customers
    assert "wm1" not in second.state.customers
    token = await first.token()
    assert (await second.api("department/list", token=token))["errcode"] == 40014


async def test_run_simulator_serves_until_cancelled(unused_tcp_port):
    port = unused_tcp_port
    task = asyncio.create_task(run_simulator(SimulatorConfig(identity=IDENTITY), "127.0.0.1", port))
    url = f"http://127.0.0.1:{port}/cgi-bin/gettoken"
    params = {"corpid": IDENTITY.corp_id, "corpsecret": IDENTITY.secret}
    async with aiohttp.ClientSession() as session:
        for _ in range(100):  # wait for the socket to open
            try:
                async with session.get(url, params=params) as response:
                    answer = await response.json()
                break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.02)
    assert answer["errcode"] == 0 and answer["expires_in"] == 7200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
