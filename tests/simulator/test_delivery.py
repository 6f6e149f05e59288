"""Callbacks: encrypted as WeCom does, retried as WeCom does, passive replies read back."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException

from guidebot.wecom.crypto import signature

from .conftest import IDENTITY


def fields(xml: str) -> dict[str, str]:
    return {child.tag: child.text or "" for child in ET.fromstring(xml)}


async def test_add_event_is_encrypted_for_wechatpy_with_the_corp_id(sim, receiver):
    answer = await sim.add("alice", "wmCustomer1", state="store2-qr", welcome_code=True)
    assert answer["delivered"] is True
    assert [a["status"] for a in answer["attempts"]] == [200]

    [post] = receiver.posts
    envelope = fields(post["body"])
    assert envelope["ToUserName"] == IDENTITY.corp_id
    assert envelope["AgentID"] == str(IDENTITY.agent_id)
    # The receiver decrypted it with wechatpy; check the signature covers Encrypt as WeCom's.
    q = post["query"]
    assert q["msg_signature"] == signature(
        IDENTITY.token, q["timestamp"], q["nonce"], envelope["Encrypt"]
    )
    assert q["timestamp"] == str(int(sim.clock.time()))
    event = fields(post["plaintext"])
    assert event == {
        "ToUserName": IDENTITY.corp_id,
        "FromUserName": "sys",
        "CreateTime": str(int(sim.clock.time())),
        "MsgType": "event",
        "Event": "change_external_contact",
        "ChangeType": "add_external_contact",
        "UserID": "alice",
        "ExternalUserID": "wmCustomer1",
        "State": "store2-qr",
        "WelcomeCode": answer["welcome_code"],
    }


async def test_a_stranger_crypto_cannot_read_it(sim, receiver):
    await sim.add("alice", "wmCustomer1")
    post = receiver.posts[0]
    other = WeChatCrypto(IDENTITY.token, IDENTITY.aes_key, "wwanothercorp")
    q = post["query"]
    with pytest.raises(InvalidCorpIdException):
        other.decrypt_message(post["body"], q["msg_signature"], q["timestamp"], q["nonce"])


async def test_state_and_welcome_code_are_omitted_when_absent(sim, receiver):
    answer = await sim.add("alice", "wmCustomer1")
    assert answer["welcome_code"] is None
    event = fields(receiver.plaintexts[0])
    assert "State" not in event and "WelcomeCode" not in event


async def test_two_500s_then_200_is_delivered_on_the_third_try(sim, receiver):
    receiver.script = [500, 500, 200]
    answer = await sim.add("alice", "wmCustomer1")
    assert answer["delivered"] is True
    assert [a["status"] for a in answer["attempts"]] == [500, 500, 200]
    assert [a["error"] for a in answer["attempts"]] == ["HTTP 500", "HTTP 500", None]
    # Retries carry the same plaintext under a fresh nonce and ciphertext.
    assert len(set(receiver.plaintexts)) == 1
    assert len({p["query"]["nonce"] for p in receiver.posts}) == 3
    assert len({fields(p["body"])["Encrypt"] for p in receiver.posts}) == 3


async def test_three_failures_are_not_delivered(sim, receiver):
    receiver.script = [503, 503, 503, 200]
    answer = await sim.add("alice", "wmCustomer1")
    assert answer["delivered"] is False
    assert len(receiver.posts) == 3


async def test_a_slow_receiver_times_out_three_times(make_sim, receiver):
    sim = await make_sim(callback_url=receiver.url, callback_timeout=0.2)
    await sim.seed_guides("alice")
    receiver.script = [("sleep", 0.5)] * 3
    answer = await sim.add("alice", "wmCustomer1")
    assert answer["delivered"] is False
    assert [(a["status"], a["error"]) for a in answer["attempts"]] == [(None, "timeout")] * 3
    assert all(150 <= a["elapsed_ms"] < 450 for a in answer["attempts"])
    assert len(receiver.posts) == 3


async def test_guide_message_gets_the_decrypted_passive_reply(sim, receiver):
    def reply(plaintext: str, crypto: WeChatCrypto) -> str:
        incoming = fields(plaintext)
        inner = (
            f"<xml><ToUserName><![CDATA[{incoming['FromUserName']}]]></ToUserName>"
            f"<FromUserName><![CDATA[{IDENTITY.corp_id}]]></FromUserName>"
            "<CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[echo: {incoming['Content']}]]></Content></xml>"
        )
        return crypto.encrypt_message(inner, "12345", "1700000000")

    receiver.script = [("reply", reply)]
    answer = await sim.control("messages", {"userid": "alice", "text": "任务"})
    assert answer["delivered"] is True
    assert fields(answer["reply"])["Content"] == "echo: 任务"
    sent = fields(receiver.plaintexts[0])
    assert sent["MsgType"] == "text"
    assert sent["FromUserName"] == "alice"
    assert sent["MsgId"] == str(answer["msg_id"])
    assert sent["AgentID"] == str(IDENTITY.agent_id)


async def test_message_ids_are_unique(sim, receiver):
    ids = {
        (await sim.control("messages", {"userid": "bob", "text": "hi"}))["msg_id"] for _ in range(5)
    }
    assert len(ids) == 5


async def test_a_reply_with_a_bad_signature_is_reported(sim, receiver):
    def reply(plaintext: str, crypto: WeChatCrypto) -> str:
        envelope = crypto.encrypt_message("<xml><Content>x</Content></xml>", "1", "1700000000")
        return envelope.replace("<MsgSignature><![CDATA[", "<MsgSignature><![CDATA[0")

    receiver.script = [("reply", reply)]
    answer = await sim.control("messages", {"userid": "alice", "text": "hi"})
    assert answer["delivered"] is True
    assert answer["reply"] is None
    assert "signature" in answer["reply_error"]


async def test_a_plain_reply_is_reported_as_not_an_envelope(sim, receiver):
    receiver.script = [("reply", lambda plaintext, crypto: "success")]
    answer = await sim.control("messages", {"userid": "alice", "text": "hi"})
    assert answer["delivered"] is True  # WeCom judges delivery by the status alone
    assert answer["reply"] is None
    assert "not an encrypted envelope" in answer["reply_error"]
    assert answer["reply_body"] == "success"


async def test_an_empty_200_is_no_reply(sim, receiver):
    answer = await sim.control("messages", {"userid": "alice", "text": "hi"})
    assert answer["reply"] is None
    assert "reply_error" not in answer


async def test_any_plaintext_can_be_delivered(sim, receiver):
    xml = "<xml><MsgType>event</MsgType><Event>enter_agent</Event></xml>"
    answer = await sim.control("callbacks", {"xml": xml})
    assert answer["delivered"] is True
    assert receiver.plaintexts == [xml]
    log = (await sim.control("deliveries", method="GET"))["deliveries"]
    assert log[-1]["plaintext"] == xml


async def test_url_verification_wants_the_exact_plaintext(sim, receiver):
    answer = await sim.control("verify_url")
    assert answer["ok"] is True and answer["body"] == answer["expected"]

    receiver.script = [lambda echo: echo + "\n"]
    answer = await sim.control("verify_url")
    assert answer["ok"] is False
    receiver.script = [lambda echo: f'"{echo}"']
    assert (await sim.control("verify_url"))["ok"] is False


async def test_without_a_callback_url_nothing_is_delivered(make_sim):
    sim = await make_sim()
    await sim.seed_guides("alice")
    answer = await sim.add("alice", "wmCustomer1")
    assert answer["delivered"] is False
    assert answer["error"] == "no callback_url configured"
    # The state change happened all the same.
    assert sim.state.relations[("alice", "wmCustomer1")].status == "active"


async def test_callback_url_can_change_at_runtime(make_sim, receiver):
    sim = await make_sim()
    await sim.seed_guides("alice")
    await sim.control("config", {"callback_url": receiver.url})
    assert (await sim.add("alice", "wmCustomer1"))["delivered"] is True
    assert len(receiver.posts) == 1


async def test_member_created_with_notify_sends_change_contact(sim, receiver):
    await sim.control(
        "users", {"userid": "carol", "name": "Carol", "department": [2], "notify": True}
    )
    event = fields(receiver.plaintexts[-1])
    assert event["Event"] == "change_contact"
    assert event["ChangeType"] == "create_user"
    assert event["UserID"] == "carol"
    assert event["Department"] == "2"
    assert "Name" not in event  # since 2022-08-15 only ids are sent
