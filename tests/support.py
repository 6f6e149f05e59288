"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

from guidebot.config import Settings, WeComIdentity

TEST_IDENTITY = WeComIdentity(
    corp_id="wwguidebottest0001",
    agent_id=1000002,
    secret="test-app-secret",
    token="QDG6eK",
    aes_key="jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
)


def make_settings(database_url: str, **overrides) -> Settings:
    values = dict(
        corp_id=TEST_IDENTITY.corp_id,
        agent_id=TEST_IDENTITY.agent_id,
        secret=TEST_IDENTITY.secret,
        token=TEST_IDENTITY.token,
        aes_key=TEST_IDENTITY.aes_key,
        admin_token="admin-token-for-tests",
        secret_key="k" * 40,
        database_url=database_url,
    )
    values.update(overrides)
    return Settings(**values)


def signed_post(crypto, plaintext: str, *, timestamp: str = "1700000000", nonce: str = "4242"):
    """(query, body) of a callback POST as WeCom sends it, for `crypto`'s corp."""
    from guidebot.wecom.crypto import CallbackCrypto

    assert isinstance(crypto, CallbackCrypto)
    message = crypto.encrypt(plaintext, timestamp=timestamp, nonce=nonce)
    query = {"msg_signature": message.signature, "timestamp": timestamp, "nonce": nonce}
    body = (
        f"<xml><ToUserName><![CDATA[{crypto.receive_id}]]></ToUserName>"
        f"<Encrypt><![CDATA[{message.encrypt}]]></Encrypt>"
        "<AgentID><![CDATA[1000002]]></AgentID></xml>"
    )
    return query, body


def event_xml(
    change_type: str, userid: str, external_userid: str, create_time: int, **extra
) -> str:
    """A change_external_contact plaintext as WeCom sends it."""
    fields = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in extra.items())
    return (
        "<xml><ToUserName><![CDATA[wwguidebottest0001]]></ToUserName>"
        "<FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{create_time}</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_contact]]></Event>"
        f"<ChangeType><![CDATA[{change_type}]]></ChangeType>"
        f"<UserID><![CDATA[{userid}]]></UserID>"
        f"<ExternalUserID><![CDATA[{external_userid}]]></ExternalUserID>"
        f"{fields}</xml>"
    )


async def fts5_vocabularies(session, tables, detail: str) -> None:
    """SQLite: a temp.v_<table> fts5vocab view of each FTS5 table (`detail`: row, col or
    instance), for tests that read what an index holds term by term."""
    from sqlalchemy import text

    for name in tables:
        await session.execute(
            text(
                f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.v_{name} "
                f"USING fts5vocab(main, {name}, {detail})"
            )
        )


async def gram_entries(session) -> set[tuple]:
    """SQLite: every (table, piece, key) in the indexes of pieces, keyed by external_userid or
    relation id (customer_words' keys change when rebuilt)."""
    from sqlalchemy import text

    from guidebot.contacts import word_index

    entries: set[tuple] = set()
    await fts5_vocabularies(session, word_index.GRAM_TABLES, "instance")
    for term, key in await session.execute(
        text(
            "SELECT term, w.external_userid FROM temp.v_customer_words_grams v "
            "JOIN customer_words w ON w.id = v.doc"
        )
    ):
        entries.add(("customer", term, key))
    for term, doc in await session.execute(
        text("SELECT term, doc FROM temp.v_relation_remarks_grams")
    ):
        entries.add(("remark", term, doc))
    return entries
