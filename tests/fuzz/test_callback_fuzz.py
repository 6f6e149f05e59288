"""Hostile callbacks, generated: only 4xx answers, nothing stored, the server keeps serving."""

from __future__ import annotations

import base64

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from guidebot.app import create_app
from guidebot.db.engine import create_engine
from guidebot.intake.models import InboxEvent
from guidebot.wecom.crypto import CallbackCrypto, signature
from tests.support import TEST_IDENTITY, event_xml, make_settings, signed_post

CRYPTO = CallbackCrypto(TEST_IDENTITY.token, TEST_IDENTITY.aes_key, TEST_IDENTITY.corp_id)
VALID_QUERY, VALID_BODY = signed_post(
    CRYPTO, event_xml("add_external_contact", "g1", "wmfuzz", 1700000000)
)

text = st.text(max_size=60)
b64ish = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", max_size=120
)
entity_tricks = st.sampled_from(
    [
        '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        "<xml><Encrypt>&b;</Encrypt></xml>",
        '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><Encrypt>&e;</Encrypt></xml>',
        '<?xml version="1.0" encoding="UTF-7"?><xml><Encrypt>+ADw-</Encrypt></xml>',
        "<xml><Encrypt><![CDATA[" + "A" * 70_000 + "]]></Encrypt></xml>",
        "\ufeff<xml><Encrypt>abc</Encrypt></xml>",
        "<xml>" + "<a>" * 500 + "</a>" * 500 + "</xml>",
    ]
)


def _signed_garbage(inner: bytes) -> tuple[dict, str]:
    """Correctly signed, correctly encrypted-looking, but the content is junk."""
    encrypted = base64.b64encode(inner).decode()
    query = {
        "msg_signature": signature(TEST_IDENTITY.token, "1", "2", encrypted),
        "timestamp": "1",
        "nonce": "2",
    }
    return query, f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"


hostile = st.one_of(
    # the query string mangled, the body kept valid
    st.builds(
        lambda q: (q, VALID_BODY),
        st.dictionaries(st.sampled_from(["msg_signature", "timestamp", "nonce", "x"]), text),
    ),
    # a valid signature over random bodies and random "ciphertext"
    st.builds(lambda body: (VALID_QUERY, body), st.one_of(text, b64ish, entity_tricks)),
    st.builds(_signed_garbage, st.binary(max_size=200)),
    # encrypted properly, but the plaintext is hostile XML
    st.builds(
        lambda plain: signed_post(CRYPTO, plain),
        st.one_of(text, entity_tricks, st.just("<xml><MsgType>event</MsgType></xml>")),
    ),
)


async def test_hostile_callbacks_only_get_4xx_and_store_nothing(aiohttp_client, sqlite_url):
    from guidebot.db.migrate import upgrade

    await upgrade(sqlite_url)
    client = await aiohttp_client(
        create_app(
            make_settings(sqlite_url, wecom_api_base="http://127.0.0.1:9"), run_workers=False
        )
    )
    requests: list[tuple[dict, str]] = []

    # Hypothesis draws the hostile requests; the server then gets every one of them.
    @settings(
        max_examples=10_000,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(hostile)
    def draw(request: tuple[dict, str]) -> None:
        requests.append(request)

    draw()
    statuses: set[int] = set()
    for query, body in requests:
        response = await client.post("/wecom/callback", params=query, data=body.encode())
        statuses.add(response.status)
        assert 400 <= response.status < 500, (response.status, query, body[:200])

    assert statuses <= {400, 403, 413}
    engine = create_engine(sqlite_url)
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(InboxEvent)) == 0
    await engine.dispose()
    assert (await client.get("/healthz")).status == 200
