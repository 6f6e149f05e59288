"""Sign-in under real concurrency: the limit holds when many attempts arrive at once, on one
instance or two, and a flood of sign-ins never delays the acknowledgement of a callback."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import Counter

import aiohttp
import pytest

from guidebot.wecom.crypto import CallbackCrypto
from tests.support import TEST_IDENTITY, event_xml, signed_post
from tests.web.conftest import PASSWORD

# Sign-ins that hold their slots as long as real ones do.
pytestmark = pytest.mark.real_password_cost

FORM_TOKEN = "concurrency-test-form-token"  # the login form's double-submit value


async def _answer(http: aiohttp.ClientSession, client, username: str, password: str, via=None):
    """One POST /admin/login, as a browser that loaded the form sends it: the status, the
    Retry-After header and the page."""
    headers = {"Cookie": f"gb_login={FORM_TOKEN}"}
    if via:
        headers["X-Forwarded-For"] = via
    form = {"username": username, "password": password, "csrf": FORM_TOKEN}
    async with http.post(
        client.make_url("/admin/login"), data=form, headers=headers, allow_redirects=False
    ) as response:
        return response.status, response.headers.get("Retry-After"), await response.text()


async def _attempt(http: aiohttp.ClientSession, client, username: str, password: str, via=None):
    return (await _answer(http, client, username, password, via))[0]


async def _many(attempts):
    """Every (client, username, password, via) at once; the count of each status."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(), connector=connector
    ) as http:
        statuses = await asyncio.gather(*(_attempt(http, *attempt) for attempt in attempts))
    return Counter(statuses)


async def test_sixty_concurrent_wrong_passwords_for_one_name_are_checked_five_times(h, sessions):
    await sessions.account("boss", "hq", [])
    counts = await _many([(h.client, "boss", f"guess{i}", None) for i in range(60)])
    assert counts == {401: 5, 429: 55}
    # The name is locked now, right password or not.
    assert await _many([(h.client, "boss", PASSWORD, None)]) == {429: 1}


async def test_150_concurrent_unknown_names_from_one_address_are_checked_twenty_times(h):
    counts = await _many([(h.client, f"name{i}", "guess", None) for i in range(150)])
    assert counts == {401: 20, 429: 130}


async def test_two_instances_on_one_database_share_the_limit_under_concurrency(
    h, sessions, clock, aiohttp_client
):
    from guidebot.app import create_app

    await sessions.account("boss", "hq", [])
    other = await aiohttp_client(create_app(h.settings, clock=clock, run_workers=False))
    attempts = [(other if i % 2 else h.client, "boss", f"guess{i}", None) for i in range(60)]
    counts = await _many(attempts)
    assert counts == {401: 5, 429: 55}
    assert await _many([(other, "boss", PASSWORD, None), (h.client, "boss", PASSWORD, None)]) == {
        429: 2
    }


async def test_a_good_sign_in_is_counted_while_it_runs_but_not_after(h, sessions):
    await sessions.account("boss", "hq", [])
    assert await _many([(h.client, f"name{i}", "guess", None) for i in range(19)]) == {401: 19}
    # The 20th attempt from this address is let through; being right, it is not a failure...
    assert await _many([(h.client, "boss", PASSWORD, None)]) == {303: 1}
    # ...so there is room for one more, and only one.
    assert await _many([(h.client, "someone", "guess", None)]) == {401: 1}
    assert await _many([(h.client, "boss", PASSWORD, None)]) == {429: 1}


async def test_beyond_the_waiting_room_sign_ins_get_503_at_once(h):
    from guidebot.web.keys import SIGN_IN_GATE

    h.app[SIGN_IN_GATE].max_waiting = 3  # a small waiting room for the test
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(), connector=aiohttp.TCPConnector(limit=0)
    ) as http:
        answers = await asyncio.gather(
            *(_answer(http, h.client, f"name{i}", "guess") for i in range(20))
        )
    counts = Counter(status for status, _, _ in answers)
    assert counts[503] > 0 and counts[401] + counts[503] == 20, counts
    for status, retry_after, text in answers:
        if status == 503:
            assert retry_after == "5" and "登录繁忙" in text


async def test_scrypt_runs_in_threads_two_at_a_time_never_on_the_event_loop(
    h, sessions, monkeypatch
):
    loop_thread = threading.get_ident()
    real_scrypt = hashlib.scrypt
    lock = threading.Lock()
    seen = {"calls": 0, "on_loop": 0, "running": 0, "peak": 0}

    def watched_scrypt(*args, **kwargs):
        with lock:
            seen["calls"] += 1
            seen["on_loop"] += threading.get_ident() == loop_thread
            seen["running"] += 1
            seen["peak"] = max(seen["peak"], seen["running"])
        try:
            return real_scrypt(*args, **kwargs)
        finally:
            with lock:
                seen["running"] -= 1

    monkeypatch.setattr(hashlib, "scrypt", watched_scrypt)
    await sessions.account("boss", "hq", [])  # saving an account hashes its password
    attempts = [(h.client, "boss", PASSWORD, None)]
    attempts += [(h.client, "boss" if i < 4 else f"name{i}", "guess", None) for i in range(19)]
    assert await _many(attempts) == {303: 1, 401: 19}
    assert seen["calls"] == 21  # unknown names cost a hash too: no timing oracle
    assert seen["on_loop"] == 0
    assert seen["peak"] <= 2


@pytest.mark.serial  # holds an ack to a real-time bound
async def test_a_sign_in_flood_never_delays_a_callback_ack_past_one_second(
    aiohttp_client, database_url, clock, sop_dir
):
    """150 sign-ins at once from 150 addresses (so every one of them runs scrypt), while
    WeCom delivers a callback every 50 ms: each callback is acknowledged within 1 s."""
    from tests.metrics.conftest import make_harness

    # The test client is the balancer: each attempt comes from its own forwarded address.
    h = await make_harness(
        aiohttp_client, database_url, clock, sop_dir, trusted_proxies=("127.0.0.0/8",)
    )
    crypto = CallbackCrypto(TEST_IDENTITY.token, TEST_IDENTITY.aes_key, TEST_IDENTITY.corp_id)
    flood = asyncio.create_task(
        _many(
            [
                (h.client, f"name{i}", "guess", f"198.51.{i // 200}.{i % 200 + 1}")
                for i in range(150)
            ],
        )
    )
    acks: list[float] = []
    n = 0
    while not flood.done():
        n += 1
        plaintext = event_xml("add_external_contact", "g1", f"wmflood{n}", 1700000000 + n)
        query, body = signed_post(crypto, plaintext, nonce=str(n))
        started = time.perf_counter()
        response = await h.client.post("/wecom/callback", params=query, data=body)
        acks.append(time.perf_counter() - started)
        assert response.status == 200, await response.text()
        await asyncio.sleep(0.05)
    counts = await flood
    assert counts == {401: 150}, counts  # every attempt was really checked
    assert len(acks) >= 5, acks  # the callbacks arrived while the sign-ins ran
    assert max(acks) < 1.0, sorted(acks)[-5:]
