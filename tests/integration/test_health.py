"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp
import pytest

from guidebot.app import create_app
from guidebot.clock import FakeClock
from guidebot.web.keys import WECOM
from guidebot.wecom.client import WeComError
from guidebot.wecom.crypto import CallbackCrypto
from guidebot.wecom.simulator import SimulatorConfig, create_simulator_app
from tests.support import TEST_IDENTITY, event_xml, make_settings, signed_post


async def test_health_ready_and_metrics(aiohttp_client, database_url):
    client = await aiohttp_client(
        create_app(
            make_settings(database_url, wecom_api_base="http://127.0.0.1:9"), run_workers=False
        )
    )
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["database"] == "ok"

    crypto = CallbackCrypto(TEST_IDENTITY.token, TEST_IDENTITY.aes_key, TEST_IDENTITY.corp_id)
    query, body = signed_post(crypto, event_xml("del_follow_user", "g1", "wmc1", 1700000000))
    assert (await client.post("/wecom/callback", params=query, data=body)).status == 200
    assert (await client.post("/wecom/callback", params=query, data="junk")).status == 400
    metrics = await (await client.get("/metrics")).text()
    assert 'guidebot_callbacks_total{outcome="accepted"} 1.0' in metrics
    assert 'guidebot_callbacks_total{outcome="rejected"} 1.0' in metrics
    assert "guidebot_callback_ack_seconds_count 1.0" in metrics


async def test_readyz_answers_503_when_the_database_is_unreachable(aiohttp_client, tmp_path):
    missing = tmp_path / "no-such-dir" / "guidebot.db"  # SQLite cannot create it here
    client = await aiohttp_client(
        create_app(make_settings(f"sqlite+aiosqlite:///{missing}"), run_workers=False)
    )
    assert (await client.get("/healthz")).status == 200
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["database"] == "unreachable"


async def test_metrics_show_the_inbox_backlog_and_wecom_errors_by_code(
    aiohttp_client, aiohttp_server, database_url
):
    sim = await aiohttp_server(create_simulator_app(SimulatorConfig(identity=TEST_IDENTITY)))
    sim_url = str(sim.make_url("")).rstrip("/")
    clock = FakeClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    client = await aiohttp_client(
        create_app(
            make_settings(database_url, wecom_api_base=sim_url), clock=clock, run_workers=False
        )
    )
    metrics = await (await client.get("/metrics")).text()
    assert "guidebot_inbox_pending_events 0.0" in metrics
    assert "guidebot_inbox_lag_seconds 0.0" in metrics
    assert "guidebot_sop_task_lag_seconds 0.0" in metrics

    # A stored event nobody processes (no workers here) ages with the clock.
    crypto = CallbackCrypto(TEST_IDENTITY.token, TEST_IDENTITY.aes_key, TEST_IDENTITY.corp_id)
    query, body = signed_post(crypto, event_xml("del_follow_user", "g1", "wmc1", 1700000000))
    assert (await client.post("/wecom/callback", params=query, data=body)).status == 200
    clock.advance(30)
    metrics = await (await client.get("/metrics")).text()
    assert "guidebot_inbox_pending_events 1.0" in metrics
    assert "guidebot_inbox_failed_events 0.0" in metrics
    assert "guidebot_inbox_lag_seconds 30.0" in metrics

    # A fault injected at the simulator, met through the app's own WeCom client, is counted.
    async with aiohttp.ClientSession() as http:
        fault = {"api": "externalcontact/get", "errcode": 84061, "times": 1}
        async with http.post(f"{sim_url}/_sim/faults", json=fault) as answer:
            assert answer.status == 200
    with pytest.raises(WeComError) as refused:
        await client.app[WECOM].call("GET", "externalcontact/get", params={"external_userid": "c1"})
    assert refused.value.errcode == 84061
    metrics = await (await client.get("/metrics")).text()
    assert (
        'guidebot_wecom_api_errors_total{api="externalcontact/get",errcode="84061"} 1.0' in metrics
    )
    assert 'api="gettoken"' not in metrics  # the token itself was fetched fine
