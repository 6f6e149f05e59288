"""How big a body may be, and how long it may take to arrive (guidebot.web.limits).

Each API route takes the body its declaration says: JSON routes a small one, the content routes
WeCom's largest media in base64. Over the limit is a 413 with the API's JSON error, answered
before the body is read when it is announced. A body trickled in (one byte at a time, as slowly
as the client likes) gets a 408 when GUIDEBOT_BODY_TIMEOUT_SECONDS is up, and its connection is
closed: on every route, API, pages and WeCom's callback alike. Runs on SQLite and, when
configured, PostgreSQL (the metrics harness: store 11 with g1 and g3).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import time

import pytest

from guidebot.web.api.common import JSON_BODY_BYTES
from guidebot.web.api.content import MEDIA_BODY_BYTES
from tests.harness import ADMIN
from tests.metrics.conftest import make_harness

PNG = b"\x89PNG\r\n\x1a\n"
DEADLINE = 1  # seconds: the test harness's GUIDEBOT_BODY_TIMEOUT_SECONDS
PATIENCE = 15.0  # how long the test waits for the server's answer (a loaded box is slow)


async def _json_error(response, status: int, code: str) -> str:
    assert response.status == status, (response.status, await response.text())
    assert response.content_type == "application/json"
    error = (await response.json())["error"]
    assert error["code"] == code and error["reason"], error
    return error["reason"]


async def test_an_image_of_megabytes_goes_through_the_content_api(h):
    # 3 MiB: well under WeCom's 10 MB image limit, far over the old app-wide 256 KiB.
    image = PNG + os.urandom(3 * 1024 * 1024)
    body = {
        "kind": "image",
        "title": "海报",
        "media": {
            "filename": "poster.png",
            "content_type": "image/png",
            "data_base64": base64.b64encode(image).decode(),
        },
    }
    response = await h.client.post(
        "/api/v1/content",
        data=io.BytesIO(json.dumps(body).encode()),
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    made = await response.json()
    assert response.status == 201, made
    assert made["media"]["filename"] == "poster.png"
    # A file of WeCom's largest size fits the route's limit, in base64 and JSON around it.
    assert MEDIA_BODY_BYTES > 4 * (20 * 1024 * 1024) // 3 + 1000


async def test_json_routes_take_small_bodies_and_answer_413_in_json(h):
    big = {"order_id": "o-1", "external_userid": "c01", "amount": "1", "paid_at": "x" * 70_000}
    response = await h.client.post("/api/v1/orders", data=json.dumps(big), headers=ADMIN)
    reason = await _json_error(response, 413, "too_large")
    assert str(JSON_BODY_BYTES) in reason
    assert (await h.api("GET", "/orders/o-1"))[0] == 404


async def test_a_body_announced_too_large_is_refused_before_it_is_read(h):
    host, port = h.client.server.host, h.client.server.port
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            b"POST /api/v1/content HTTP/1.1\r\nHost: guidebot\r\n"
            b"Authorization: Bearer admin-token-for-tests\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {MEDIA_BODY_BYTES + 1}\r\n\r\n".encode()
        )
        await writer.drain()
        # Not a byte of the body is sent: the answer comes anyway, and the connection closes.
        answer = await asyncio.wait_for(reader.read(), PATIENCE)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert json.loads(body)["error"]["code"] == "too_large"


@pytest.fixture
async def quick(aiohttp_client, database_url, clock, sop_dir):
    """The harness with a one-second body deadline."""
    return await make_harness(
        aiohttp_client, database_url, clock, sop_dir, body_timeout_seconds=DEADLINE
    )


async def _trickle(harness, head: bytes, length: int = 200) -> tuple[bytes, float]:
    """Send `head` announcing a body of `length` bytes, then the body one byte every 0.2 s;
    return what the server answered and how long until it closed the connection."""
    reader, writer = await asyncio.open_connection(
        harness.client.server.host, harness.client.server.port
    )

    answered = asyncio.Event()

    async def drip() -> None:
        writer.write(head + f"Content-Length: {length}\r\n\r\n".encode())
        for _ in range(length):
            await asyncio.sleep(0.2)
            if answered.is_set():
                return
            writer.write(b"1")
            await writer.drain()

    async def collect() -> bytes:
        # Chunk by chunk, as it arrives: a byte of ours that reaches the closed socket makes
        # the server's kernel answer with a reset, and a reset discards what asyncio holds
        # unread. What came before the reset is the answer.
        chunks: list[bytes] = []
        while True:
            try:
                chunk = await reader.read(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            answered.set()
        return b"".join(chunks)

    started = time.monotonic()
    sender = asyncio.create_task(drip())
    try:
        answer = await asyncio.wait_for(collect(), PATIENCE)
        return answer, time.monotonic() - started
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()


TRICKLED = [
    (b"POST /api/v1/orders HTTP/1.1\r\nAuthorization: Bearer admin-token-for-tests\r\n", True),
    (b"POST /admin/login HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n", False),
    (b"POST /wecom/callback?msg_signature=a&timestamp=1&nonce=2 HTTP/1.1\r\n", False),
]


@pytest.mark.parametrize(("head", "api"), TRICKLED, ids=["api", "page", "callback"])
async def test_a_trickled_body_is_a_408_and_a_closed_connection(quick, head, api):
    answer, took = await _trickle(quick, head + b"Host: guidebot\r\n")
    # 200 bytes at 0.2 s would take 40 s; the server stops waiting after DEADLINE.
    assert took < PATIENCE, took
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), answer[:200]
    if api:
        body = rest.partition(b"\r\n\r\n")[2]
        assert json.loads(body)["error"]["code"] == "timeout"


async def test_a_body_nobody_reads_still_ends_at_the_deadline(quick):
    # /healthz answers without reading the body; the connection does not stay open for it.
    answer, took = await _trickle(quick, b"GET /healthz HTTP/1.1\r\nHost: guidebot\r\n")
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    # The deadline (1 s), not aiohttp's 10 s of reading on after an answer, ends it.
    assert took < 8, took
