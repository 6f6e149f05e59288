"""The callback URL through real HTTP: official vectors, durable ack, dedupe, bad input."""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy import func, select, text

from guidebot.app import create_app
from guidebot.db.engine import create_engine, create_session_factory
from guidebot.intake.models import InboxEvent
from guidebot.wecom.crypto import CallbackCrypto
from tests.support import TEST_IDENTITY, event_xml, make_settings, signed_post
from tests.unit.test_crypto import (
    AES_KEY,
    CORP_ID,
    ECHO_NONCE,
    ECHO_SIGNATURE,
    ECHO_TIMESTAMP,
    ECHOSTR,
    POST_BODY,
    POST_NONCE,
    POST_SIGNATURE,
    POST_TIMESTAMP,
    TOKEN,
)


async def inbox_rows(url: str) -> list[InboxEvent]:
    engine = create_engine(url)
    try:
        async with create_session_factory(engine)() as session:
            return list(await session.scalars(select(InboxEvent).order_by(InboxEvent.id)))
    finally:
        await engine.dispose()


@pytest.fixture
async def official_client(aiohttp_client, database_url):
    """A server configured with the corp, token and key of Tencent's official vectors."""
    settings = make_settings(database_url, corp_id=CORP_ID, token=TOKEN, aes_key=AES_KEY)
    return await aiohttp_client(create_app(settings, run_workers=False))


@pytest.fixture
async def client(aiohttp_client, database_url):
    return await aiohttp_client(create_app(make_settings(database_url), run_workers=False))


@pytest.fixture
def crypto() -> CallbackCrypto:
    return CallbackCrypto(TEST_IDENTITY.token, TEST_IDENTITY.aes_key, TEST_IDENTITY.corp_id)


async def test_url_verification_answers_the_bare_official_plaintext(official_client):
    response = await official_client.get(
        "/wecom/callback",
        params={
            "msg_signature": ECHO_SIGNATURE,
            "timestamp": ECHO_TIMESTAMP,
            "nonce": ECHO_NONCE,
            "echostr": ECHOSTR,
        },
    )
    assert response.status == 200
    assert await response.read() == b"1616140317555161061"


async def test_url_verification_from_the_raw_wire_encoding(official_client):
    wire = (
        "/wecom/callback?msg_signature=5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3"
        "&timestamp=1409659589&nonce=263014780&echostr=P9nAzCzyDtyTWESHep1vC5X9xho%2FqYX3Zpb4y"
        "Ka9SKld1DsH3Iyt3tP3zNdtp%2B4RPcs8TgAE7OaBO%2BFZXvnaqQ%3D%3D"
    )
    response = await official_client.get(wire)
    assert await response.text() == "1616140317555161061"


async def test_official_post_is_stored_then_acknowledged_empty(official_client, database_url):
    params = {"msg_signature": POST_SIGNATURE, "timestamp": POST_TIMESTAMP, "nonce": POST_NONCE}
    response = await official_client.post("/wecom/callback", params=params, data=POST_BODY)
    assert response.status == 200
    assert await response.read() == b""
    [row] = await inbox_rows(database_url)
    assert row.kind == "text"
    assert row.dedupe_key == "msg:4561255354251345929"
    assert "<Content><![CDATA[hello]]></Content>" in row.payload
    assert row.status == "pending"


async def test_a_retried_event_is_stored_once(client, crypto, database_url):
    plaintext = event_xml("add_external_contact", "g1", "wmc1", 1700000000, State="s1")
    for nonce in ("1", "2", "3"):  # WeCom's retries: same plaintext, new nonce and ciphertext
        query, body = signed_post(crypto, plaintext, nonce=nonce)
        response = await client.post("/wecom/callback", params=query, data=body)
        assert response.status == 200
    assert len(await inbox_rows(database_url)) == 1


async def test_two_events_from_sys_in_the_same_second_both_land(client, crypto, database_url):
    for customer in ("wmc1", "wmc2"):
        query, body = signed_post(
            crypto, event_xml("add_external_contact", "g1", customer, 1700000000)
        )
        assert (await client.post("/wecom/callback", params=query, data=body)).status == 200
    rows = await inbox_rows(database_url)
    assert [row.customer_key for row in rows] == ["wmc1", "wmc2"]


def _tamper(query: dict, body: str, what: str) -> tuple[dict, str]:
    if what == "signature":
        return {**query, "msg_signature": "0" * 40}, body
    if what == "missing-nonce":
        return {k: v for k, v in query.items() if k != "nonce"}, body
    raise AssertionError(what)


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("signature", 403, "signature mismatch"),
        ("missing-nonce", 400, "missing query parameter nonce"),
        ("wrong-corp", 400, "receive id does not match"),
        ("bad-xml", 400, "malformed XML"),
        ("entity", 400, "DTDs and entity declarations are not allowed"),
        ("oversize", 413, "body over"),
        ("bad-padding", 400, "bad padding"),
        ("bad-base64", 400, "not valid base64"),
        ("bad-inner-xml", 400, "bad event"),
        ("inner-entity", 400, "bad event"),
    ],
)
async def test_malformed_callbacks_get_4xx_one_log_line_and_store_nothing(
    client, crypto, database_url, caplog, case, status, reason
):
    plaintext = event_xml("add_external_contact", "g1", "wmc1", 1700000000)
    query, body = signed_post(crypto, plaintext)
    if case in ("signature", "missing-nonce"):
        query, body = _tamper(query, body, case)
    elif case == "wrong-corp":
        query, body = signed_post(CallbackCrypto(crypto.token, AES_KEY, "wwother"), plaintext)
    elif case == "bad-xml":
        body = "<xml><Encrypt>abc"
    elif case == "entity":
        body = '<!DOCTYPE x [<!ENTITY e "y">]><xml><Encrypt>&e;</Encrypt></xml>'
    elif case == "oversize":
        body = "<xml><Encrypt>" + "A" * (300 * 1024) + "</Encrypt></xml>"
    elif case in ("bad-padding", "bad-base64"):
        import base64

        from guidebot.wecom.crypto import signature

        encrypted = (
            base64.b64encode(crypto._prp.cipher.encrypt(b"\x00" * 64)).decode()
            if case == "bad-padding"
            else "@@notbase64@@"
        )
        query = {**query, "msg_signature": signature(crypto.token, "1700000000", "4242", encrypted)}
        body = f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    elif case == "bad-inner-xml":
        query, body = signed_post(crypto, "<xml><MsgType>event")
    elif case == "inner-entity":
        query, body = signed_post(
            crypto, '<!DOCTYPE x [<!ENTITY a "aaaa">]><xml><MsgType>&a;</MsgType></xml>'
        )
    caplog.set_level(logging.WARNING, logger="guidebot.web.callback")
    response = await client.post("/wecom/callback", params=query, data=body)
    assert response.status == status
    assert reason in await response.text()
    rejections = [r for r in caplog.records if r.name == "guidebot.web.callback"]
    assert len(rejections) == 1 and reason in rejections[0].getMessage()
    assert await inbox_rows(database_url) == []
    assert (await client.get("/healthz")).status == 200  # and the server keeps serving


async def test_commit_failure_answers_503_and_the_retry_lands(client, crypto, database_url):
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE inbox_events RENAME TO inbox_events_away"))
    query, body = signed_post(crypto, event_xml("del_follow_user", "g1", "wmc9", 1700000100))
    response = await client.post("/wecom/callback", params=query, data=body)
    assert response.status == 503
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE inbox_events_away RENAME TO inbox_events"))
        assert await conn.scalar(select(func.count()).select_from(InboxEvent)) == 0
    await engine.dispose()
    response = await client.post("/wecom/callback", params=query, data=body)  # WeCom's retry
    assert response.status == 200
    [row] = await inbox_rows(database_url)
    assert row.kind == "del_follow_user"


def _change_contact(change_type: str, **fields: str) -> str:
    body = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items())
    return (
        "<xml><ToUserName><![CDATA[wwguidebottest0001]]></ToUserName>"
        "<FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1700000000</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_contact]]></Event>"
        f"<ChangeType>{change_type}</ChangeType>{body}</xml>"
    )


@pytest.mark.parametrize(
    ("plaintext", "reason"),
    [
        # Year 9999: a datetime, but a store's UTC offset overflows it and stops every rollup.
        (event_xml("add_external_contact", "g1", "wmc1", 253402300799), "CreateTime out of range"),
        (event_xml("add_external_contact", "g1", "wmc1", -1), "CreateTime out of range"),
        # WeCom's documented shapes (doc 90195 userid, doc 90205 department id, wm…/wo…).
        (event_xml("add_external_contact", "<![CDATA[g01", "wmc1", 1700000000), "UserID"),
        (event_xml("add_external_contact", "g" * 300, "wmc1", 1700000000), "UserID"),
        (event_xml("add_external_contact", "g1", "wm" + "x" * 79, 1700000000), "ExternalUserID"),
        (_change_contact("create_user", UserID="g9", Department="1234567890123456789"), "Depart"),
        (_change_contact("create_party", Id="1234567890123456789"), "Id out of range"),
    ],
    ids=["year-9999", "before-1970", "cdata-userid", "long-userid", "long-external-userid",
         "19-digit-department", "19-digit-party"],
)  # fmt: skip
async def test_signed_junk_is_a_400_and_nothing_is_stored(
    client, crypto, database_url, plaintext, reason
):
    query, body = signed_post(crypto, plaintext)
    response = await client.post("/wecom/callback", params=query, data=body)
    assert response.status == 400
    assert "bad event" in (text := await response.text()) and reason in text
    assert await inbox_rows(database_url) == []


async def test_a_bad_callback_in_a_burst_fails_alone(client, crypto, database_url):
    """30 callbacks at once, one of them with an over-long ExternalUserID: on PostgreSQL it
    used to fail the group commit of all of them (503s), on SQLite it was stored. Now it is a
    400 on both engines, and the others are stored and acknowledged."""
    plaintexts = [
        event_xml("add_external_contact", "g1", f"wmc{i:02d}", 1700000000) for i in range(30)
    ]
    plaintexts[17] = event_xml("add_external_contact", "g1", "wm" + "x" * 100, 1700000000)
    posts = [signed_post(crypto, p, nonce=str(i)) for i, p in enumerate(plaintexts)]
    responses = await asyncio.gather(
        *(client.post("/wecom/callback", params=q, data=b) for q, b in posts)
    )
    assert [r.status for r in responses] == [200] * 17 + [400] + [200] * 12
    rows = await inbox_rows(database_url)
    assert sorted(row.customer_key for row in rows) == [f"wmc{i:02d}" for i in range(30) if i != 17]


REFUSE_ONE = {
    # The database itself refuses one customer's rows (standing in for any value a column
    # will not hold): a CHECK on PostgreSQL, a trigger on SQLite.
    "postgresql": (
        "ALTER TABLE inbox_events ADD CONSTRAINT refuse_one "
        "CHECK (customer_key IS DISTINCT FROM 'wmrefused')",
        "ALTER TABLE inbox_events DROP CONSTRAINT refuse_one",
    ),
    "sqlite": (
        "CREATE TRIGGER refuse_one BEFORE INSERT ON inbox_events "
        "WHEN NEW.customer_key = 'wmrefused' BEGIN SELECT RAISE(ABORT, 'refused'); END",
        "DROP TRIGGER refuse_one",
    ),
}


async def test_an_entry_the_database_refuses_in_a_burst_fails_alone(client, crypto, database_url):
    engine = create_engine(database_url)
    add, drop = REFUSE_ONE[engine.dialect.name]
    async with engine.begin() as conn:
        await conn.exec_driver_sql(add)
    try:
        customers = [f"wmc{i:02d}" for i in range(29)]
        customers.insert(11, "wmrefused")
        posts = [
            signed_post(crypto, event_xml("del_follow_user", "g1", c, 1700000000), nonce=str(i))
            for i, c in enumerate(customers)
        ]
        responses = await asyncio.gather(
            *(client.post("/wecom/callback", params=q, data=b) for q, b in posts)
        )
        statuses = [r.status for r in responses]
        assert statuses == [200] * 11 + [400] + [200] * 18
        assert "event cannot be stored" in await responses[11].text()
        rows = await inbox_rows(database_url)
        assert sorted(row.customer_key for row in rows) == sorted(set(customers) - {"wmrefused"})
    finally:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(drop)
        await engine.dispose()
