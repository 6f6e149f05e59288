"""App messages to guides (with WeCom's silent per-member limit), media and JS-SDK tickets."""

from __future__ import annotations

import aiohttp

from guidebot.wecom.simulator import jsapi_signature

from .conftest import IDENTITY

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


def text(touser: str, content: str = "今日任务", **extra) -> dict:
    return {
        "touser": touser,
        "msgtype": "text",
        "agentid": IDENTITY.agent_id,
        "text": {"content": content},
        **extra,
    }


async def test_a_member_gets_at_most_30_messages_a_minute(sim):
    answers = [await sim.api("message/send", text("alice", f"task {i}")) for i in range(31)]
    assert all(a["errcode"] == 0 for a in answers)  # the excess is dropped silently
    delivered = await sim.client.get("/_sim/app_messages", params={"userid": "alice"})
    contents = [m["text"]["content"] for m in (await delivered.json())["messages"]]
    assert contents == [f"task {i}" for i in range(30)]
    calls = (await sim.control("calls?api=message/send", method="GET"))["calls"]
    assert calls[-1]["dropped"] == ["alice"] and calls[-1]["delivered_to"] == []
    assert calls[-2]["dropped"] == []

    # bob is unaffected, and alice gets messages again a minute later.
    await sim.api("message/send", text("bob"))
    sim.clock.advance(60)
    await sim.api("message/send", text("alice", "next minute"))
    messages = (await sim.control("app_messages", method="GET"))["messages"]
    assert [m["userid"] for m in messages[-2:]] == ["bob", "alice"]


async def test_partly_and_wholly_invalid_recipients(sim):
    partly = await sim.api("message/send", text("alice|ghost"))
    assert partly["errcode"] == 0 and partly["invaliduser"] == "ghost"
    assert (await sim.api("message/send", text("ghost|phantom")))["errcode"] == 81013
    by_party = await sim.api("message/send", {**text(""), "toparty": "2"})
    assert by_party["errcode"] == 0
    messages = (await sim.control("app_messages", method="GET"))["messages"]
    assert [m["userid"] for m in messages] == ["alice", "alice", "bob"]


async def test_message_kinds_are_validated(sim):
    wrong_agent = {**text("alice"), "agentid": 1}
    assert (await sim.api("message/send", wrong_agent))["errcode"] == 40056
    empty = text("alice", "")
    assert (await sim.api("message/send", empty))["errcode"] == 44004
    too_long = text("alice", "字" * 700)  # 2100 bytes
    assert (await sim.api("message/send", too_long))["errcode"] == 45002
    card = {
        "touser": "alice",
        "msgtype": "textcard",
        "agentid": IDENTITY.agent_id,
        "textcard": {"title": "任务", "description": "跟进", "url": "https://x.test/t"},
    }
    assert (await sim.api("message/send", card))["errcode"] == 0
    no_url = {**card, "textcard": {"title": "任务", "description": "跟进"}}
    assert (await sim.api("message/send", no_url))["errcode"] == 41010
    news = {
        "touser": "alice",
        "msgtype": "news",
        "agentid": IDENTITY.agent_id,
        "news": {"articles": [{"title": f"a{i}", "url": "https://x.test"} for i in range(9)]},
    }
    assert (await sim.api("message/send", news))["errcode"] == 45008


async def test_duplicate_check_skips_the_repeat(sim):
    body = text("alice", enable_duplicate_check=1, duplicate_check_interval=600)
    await sim.api("message/send", body)
    await sim.api("message/send", body)
    sim.clock.advance(601)
    await sim.api("message/send", body)
    messages = (await sim.control("app_messages", method="GET"))["messages"]
    assert len(messages) == 2


async def upload(sim, data: bytes, kind: str = "image", filename: str = "a.png") -> dict:
    form = aiohttp.FormData()
    form.add_field("media", data, filename=filename, content_type="image/png")
    response = await sim.client.post(
        "/cgi-bin/media/upload", params={"access_token": await sim.token(), "type": kind}, data=form
    )
    return await response.json()


async def test_media_lives_three_days(sim):
    uploaded = await upload(sim, PNG)
    assert uploaded["errcode"] == 0 and uploaded["type"] == "image"
    assert uploaded["created_at"] == str(int(sim.clock.time()))
    response = await sim.client.get(
        "/cgi-bin/media/get",
        params={"access_token": await sim.token(), "media_id": uploaded["media_id"]},
    )
    assert await response.read() == PNG

    await sim.add("alice", "wmC1")
    image = [{"msgtype": "image", "image": {"media_id": uploaded["media_id"]}}]
    body = {"sender": "alice", "external_userid": ["wmC1"], "attachments": image}
    assert (await sim.api("externalcontact/add_msg_template", body))["errcode"] == 0
    sim.clock.advance(3 * 86400 + 1)
    assert (await sim.api("externalcontact/add_msg_template", body))["errcode"] == 40007


async def test_media_upload_rules(sim):
    assert (await upload(sim, b"not an image at all"))["errcode"] == 40004
    assert (await upload(sim, PNG, kind="sticker"))["errcode"] == 40005
    assert (await upload(sim, b"abc", kind="file"))["errcode"] == 40006


async def test_tickets_and_signature_check(sim):
    corp = await sim.api("get_jsapi_ticket")
    agent = await sim.api("ticket/get", type="agent_config")
    assert corp["expires_in"] == agent["expires_in"] == 7200
    assert corp["ticket"] != agent["ticket"]
    url = "https://guidebot.test/sidebar?x=1"
    signed = {
        "url": url,
        "noncestr": "Wm3WZYTPz0wzccnW",
        "timestamp": 1414587457,
        "signature": jsapi_signature(agent["ticket"], "Wm3WZYTPz0wzccnW", 1414587457, url),
    }
    assert (await sim.control("jsapi/verify", {**signed, "type": "agent_config"}))["valid"]
    # A corp-ticket signature is no good for agentConfig.
    assert not (await sim.control("jsapi/verify", {**signed, "type": "jsapi"}))["valid"]
    sim.clock.advance(7200)
    assert not (await sim.control("jsapi/verify", {**signed, "type": "agent_config"}))["valid"]


def test_jsapi_signature_matches_the_official_example():
    ticket = (
        "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg"
    )
    signature = jsapi_signature(
        ticket, "Wm3WZYTPz0wzccnW", 1414587457, "http://mp.weixin.qq.com?params=value"
    )
    assert signature == "0f9de62fce790f9a083d5c99e95740ceb90c27ed"


async def test_agent_ticket_is_limited_to_100_an_hour(sim):
    codes = [(await sim.api("ticket/get", type="agent_config"))["errcode"] for _ in range(101)]
    assert codes[:100] == [0] * 100 and codes[100] == 45009
    sim.clock.advance(3600)
    assert (await sim.api("ticket/get", type="agent_config"))["errcode"] == 0
