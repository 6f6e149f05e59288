"""Mass send: a guide's customers picked by tag get one item as a WeCom mass-send task; the
results are followed and every delivery is a forward; an unanswered call is never resent."""

from __future__ import annotations

from sqlalchemy import select

from guidebot.content import links
from guidebot.content.jobs import poll_mass_sends
from guidebot.content.masssend import Filter, message_for
from guidebot.content.models import ContentItem, MassSend
from guidebot.db.parking import ParkedRow
from guidebot.web.keys import CLOCK, SESSIONS, WECOM


async def _tagged(h) -> None:
    answer = await h.control("tags", {"group_name": "客户等级", "tags": ["VIP", "普通"]})
    ids = {t["name"]: t["id"] for t in answer["tag_group"]["tag"]}
    for ext in ("wmc1", "wmc2", "wmc3"):
        await h.add("g1", ext)
    await h.act(
        "contact/edit", {"userid": "g1", "external_userid": "wmc1", "add_tag": [ids["VIP"]]}
    )
    await h.act(
        "contact/edit", {"userid": "g1", "external_userid": "wmc3", "add_tag": [ids["VIP"]]}
    )


async def _poll(h):
    app = h.app
    return await poll_mass_sends(app[SESSIONS], app[WECOM], app[CLOCK])


async def test_tagged_customers_get_the_task_and_deliveries_become_forwards(h):
    await _tagged(h)
    item = await h.item(kind="link", title="会员日", url="https://example.com/day", summary="满减")
    status, created = await h.api(
        "POST",
        "/mass-sends",
        json={"guide": "g1", "item": item["id"], "filter": {"tags": ["VIP"], "status": "active"}},
    )
    assert status == 201, created
    assert created["status"] == "created" and created["msgid"]
    assert created["recipients"] == ["wmc1", "wmc3"]
    [call] = await h.calls("externalcontact/add_msg_template")
    body = call["body"]
    assert body["sender"] == "g1" and body["external_userid"] == ["wmc1", "wmc3"]
    [attachment] = body["attachments"]
    link = attachment["link"]
    assert link["title"] == "会员日" and link["desc"] == "满减"
    claims = links.verify(h.settings.secret_key, link["url"].rsplit("/r/", 1)[1])
    assert (claims.guide, claims.item_id, claims.mass_send_id) == ("g1", item["id"], created["id"])
    assert claims.customer is None  # one message for everyone

    report = await _poll(h)  # the guide has not confirmed yet
    assert (report.checked, report.delivered) == (1, 0)
    assert await h.forwards() == []

    await h.control("groupmsg/confirm", {"msgid": created["msgid"], "userid": "g1"})
    report = await _poll(h)
    assert (report.delivered, report.done) == (2, 1)
    forwards = await h.forwards()
    assert sorted((f.external_userid, f.via, f.mass_send_id) for f in forwards) == [
        ("wmc1", "mass_send", created["id"]),
        ("wmc3", "mass_send", created["id"]),
    ]
    status, detail = await h.api("GET", f"/mass-sends/{created['id']}")
    assert detail["status"] == "done"
    assert [r["status"] for r in detail["results"]] == [1, 1]
    assert (await _poll(h)).checked == 0  # done: no longer polled
    assert len(await h.forwards()) == 2


async def test_nobody_matching_is_a_422_a_bad_filter_a_400_and_nothing_is_sent(h):
    await h.add("g1", "wmc1")
    item = await h.item(kind="text", title="t", body="b")
    status, body = await h.api(
        "POST", "/mass-sends", json={"guide": "g1", "item": item["id"], "filter": {"tags": ["VIP"]}}
    )
    assert status == 422 and "matches" in body["error"]["reason"]
    status, body = await h.api(
        "POST",
        "/mass-sends",
        json={"guide": "g1", "item": item["id"], "filter": {"status": "lost"}},
    )
    assert status == 400
    assert await h.calls("externalcontact/add_msg_template") == []


async def test_an_unanswered_call_is_unknown_then_adopted_never_resent(h):
    await h.add("g1", "wmc1")
    item = await h.item(kind="link", title="会员日", url="https://example.com/day")
    await h.control("faults", {"api": "externalcontact/add_msg_template", "http_status": 502})
    status, created = await h.api("POST", "/mass-sends", json={"guide": "g1", "item": item["id"]})
    assert (status, created["status"]) == (202, "unknown")
    assert len(await h.calls("externalcontact/add_msg_template")) == 1

    # Nothing in WeCom's list yet: it stays unknown, and nothing is sent again.
    await _poll(h)
    _, detail = await h.api("GET", f"/mass-sends/{created['id']}")
    assert detail["status"] == "unknown"
    assert len(await h.calls("externalcontact/add_msg_template")) == 1

    # Suppose WeCom did create it (the answer was lost): reconciliation finds it by the link.
    async with h.sessions() as session:
        row = await session.get(MassSend, created["id"])
        content = await session.get(ContentItem, item["id"])
    token = links.sign(
        h.settings.secret_key,
        links.LinkClaims(item["id"], "g1", None, None, None, row.id, h.clock.now(), row.link_nonce),
    )
    text, attachments = message_for(content, links.link_url(h.settings.public_url, token), None)
    made = await h.app[WECOM].add_msg_template(
        external_userids=["wmc1"], sender="g1", text=text, attachments=attachments
    )
    report = await _poll(h)
    assert report.reconciled == 1
    _status, detail = await h.api("GET", f"/mass-sends/{created['id']}")
    assert (detail["status"], detail["msgid"]) == ("created", made.msgid)


async def test_a_wecom_refusal_fails_the_mass_send(h):
    await h.add("g1", "wmc1")
    item = await h.item(kind="text", title="t", body="b")
    await h.control("faults", {"api": "externalcontact/add_msg_template", "errcode": 41048})
    status, created = await h.api("POST", "/mass-sends", json={"guide": "g1", "item": item["id"]})
    assert status == 502 and created["status"] == "failed" and "41048" in created["error"]
    async with h.sessions() as session:
        assert (await session.scalar(select(MassSend))).status == "failed"


def test_filter_matches_tag_ids_and_names():
    from guidebot.contacts.models import Relation

    relation = Relation(external_userid="x", tags=[{"id": "et1", "name": "VIP", "group": "g"}])
    assert Filter.parse({"tags": ["VIP"]}).accepts(relation)
    assert Filter.parse({"tags": ["et1", "new"]}).accepts(relation)
    assert not Filter.parse({"tags": ["et1", "new"], "match": "all"}).accepts(relation)
    assert not Filter.parse({"customers": ["y"]}).accepts(relation)


async def test_media_items_go_as_uploaded_attachments(h):
    import base64

    from tests.content.harness import PNG

    await h.add("g1", "wmc1")
    png = base64.b64encode(PNG).decode()
    image = await h.item(kind="image", title="图", media={"filename": "a.png", "data_base64": png})
    program = await h.item(
        kind="miniprogram",
        title="线上商城",
        cover_url="https://cdn.example.com/mall.png",
        miniprogram={"appid": "wx8bd80126147df384", "page": "/pages/index.html"},
        media={"filename": "c.png", "data_base64": png},
    )
    for item in (image, program):
        status, created = await h.api(
            "POST", "/mass-sends", json={"guide": "g1", "item": item["id"]}
        )
        assert status == 201, created
    first, second = await h.calls("externalcontact/add_msg_template")
    media_id = first["body"]["attachments"][0]["image"]["media_id"]
    h.sim_state.live_media(media_id, "image")
    mini = second["body"]["attachments"][0]["miniprogram"]
    assert (mini["appid"], mini["page"], mini["title"]) == (
        "wx8bd80126147df384",
        "/pages/index.html",
        "线上商城",
    )
    h.sim_state.live_media(mini["pic_media_id"], "image")


async def test_a_mass_send_it_cannot_follow_is_parked_and_the_others_are_followed(h):
    """WeCom answers g1's results with a send_time no instant holds (year 10000): that used to
    fail every run before the mass sends behind it were looked at."""
    await h.add("g1", "wmc1")
    await h.add("g2", "wmc2")
    item = await h.item(kind="text", title="会员日", body="满减")
    created = {}
    for guide, ext in (("g1", "wmc1"), ("g2", "wmc2")):
        status, created[guide] = await h.api(
            "POST",
            "/mass-sends",
            json={"guide": guide, "item": item["id"], "filter": {"customers": [ext]}},
        )
        assert status == 201, created[guide]
        await h.control("groupmsg/confirm", {"msgid": created[guide]["msgid"], "userid": guide})
    [result] = h.sim_state.tasks[created["g1"]["msgid"]].results
    result.send_time = 253402300800

    report = await _poll(h)
    assert (report.checked, report.delivered, report.done, report.parked) == (1, 1, 1, 1)
    assert [f.external_userid for f in await h.forwards()] == ["wmc2"]
    async with h.sessions() as session:
        [row] = list(await session.scalars(select(ParkedRow)))
    assert (row.job, row.table_name, row.row_key) == (
        "mass-sends",
        "mass_sends",
        str(created["g1"]["id"]),
    )
    assert row.reason == "ValueError: wmc1's send_time 253402300800 is no instant"
    assert row.detail == f"mass send {created['g1']['id']} by g1 (msgid {created['g1']['msgid']})"
    # Later runs skip it.
    report = await _poll(h)
    assert (report.checked, report.parked) == (0, 0)
