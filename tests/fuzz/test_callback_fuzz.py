"""Hostile callbacks, generated: only 4xx answers, nothing stored, the server keeps serving.

Then signed, well-formed events with drawn ids, times and kinds: each is a 200 (stored) exactly
when the parser accepts it and a 400 (nothing stored) otherwise, on SQLite and on PostgreSQL
alike; never a 503 because a value does not fit a column.
"""

from __future__ import annotations

import base64
from xml.sax.saxutils import escape

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from guidebot.app import create_app
from guidebot.db.engine import create_engine
from guidebot.intake.inbox import InboxEntry
from guidebot.intake.models import InboxEvent
from guidebot.wecom.crypto import CallbackCrypto, signature
from guidebot.wecom.events import EventParseError, parse_event
from tests.fuzzing import examples
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


async def test_hostile_callbacks_only_get_4xx_and_store_nothing(
    aiohttp_client, migrated_sqlite_url
):
    app_settings = make_settings(migrated_sqlite_url, wecom_api_base="http://127.0.0.1:9")
    client = await aiohttp_client(create_app(app_settings, run_workers=False))
    requests: list[tuple[dict, str]] = []

    # Hypothesis draws the hostile requests; the server then gets every one of them.
    @settings(
        max_examples=examples(10_000),
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
    engine = create_engine(migrated_sqlite_url)
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(InboxEvent)) == 0
    await engine.dispose()
    assert (await client.get("/healthz")).status == 200


# Values near and across WeCom's shapes (userid 1-64 of [A-Za-z0-9_@.-], external_userid wm/wo,
# department id int32, kind names) and across the columns' widths (64, 80).
def _runs(prefixes: list[str], fills: str, longest: int) -> st.SearchStrategy[str]:
    """A prefix and a run of one character, of every length up to `longest`."""
    return st.builds(
        lambda prefix, fill, n: prefix + fill * n,
        st.sampled_from(prefixes),
        st.sampled_from(fills),
        st.integers(0, longest),
    )


IDS = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=100),
    _runs(["wm", "wo", "g", "_", ""], "a9_-@.张 <", 100),
)
NAMES = _runs(["event_", "x"], "a_", 60)
TIMES = st.one_of(
    st.integers(-(10**12), 10**13),
    st.sampled_from([0, 253_370_764_799, 253_370_764_800, 253_402_300_799]),
)
NUMBERS = st.one_of(st.integers(-(2**63), 2**64), st.sampled_from([0, 1, 2**31 - 1, 2**31]))


def _event(**fields: object) -> str:
    body = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in fields.items())
    return f"<xml><ToUserName>{TEST_IDENTITY.corp_id}</ToUserName>{body}</xml>"


signed_events = st.one_of(
    st.builds(
        lambda who, customer, at, change: _event(
            FromUserName="sys", CreateTime=at, MsgType="event", Event="change_external_contact",
            ChangeType=change, UserID=who, ExternalUserID=customer,
        ),
        IDS, IDS, TIMES, st.sampled_from(["add_external_contact", "del_follow_user", "x_y"]),
    ),
    st.builds(
        lambda who, new, dept, at: _event(
            FromUserName="sys", CreateTime=at, MsgType="event", Event="change_contact",
            ChangeType="update_user", UserID=who, NewUserID=new, Department=dept,
        ),
        IDS, IDS, NUMBERS, TIMES,
    ),
    st.builds(
        lambda dept, parent: _event(
            FromUserName="sys", CreateTime=1_700_000_000, MsgType="event", Event="change_contact",
            ChangeType="create_party", Id=dept, ParentId=parent,
        ),
        NUMBERS, NUMBERS,
    ),
    st.builds(
        lambda event, change, sender: _event(
            FromUserName=sender, CreateTime=1_700_000_000, MsgType="event", Event=event,
            ChangeType=change,
        ),
        NAMES, NAMES, IDS,
    ),
)  # fmt: skip


async def test_signed_events_are_stored_exactly_when_they_parse(aiohttp_client, database_url):
    client = await aiohttp_client(
        create_app(
            make_settings(database_url, wecom_api_base="http://127.0.0.1:9"), run_workers=False
        )
    )
    plaintexts: list[str] = []

    @settings(
        max_examples=300,  # cheap; fewer might not reach both sides
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(signed_events)
    def draw(plaintext: str) -> None:
        plaintexts.append(plaintext)

    draw()
    accepted: set[str] = set()
    for plaintext in plaintexts:
        try:
            expected, key = 200, InboxEntry.of(parse_event(plaintext), plaintext).dedupe_key
        except EventParseError:
            expected, key = 400, None
        query, body = signed_post(CRYPTO, plaintext)
        response = await client.post("/wecom/callback", params=query, data=body.encode())
        assert response.status == expected, (await response.text(), plaintext[:300])
        if key is not None:
            accepted.add(key)

    assert 0 < len(accepted) < len(plaintexts)  # the draws reach both sides
    engine = create_engine(database_url)
    async with engine.connect() as conn:
        assert set(await conn.scalars(select(InboxEvent.dedupe_key))) == accepted
    await engine.dispose()
