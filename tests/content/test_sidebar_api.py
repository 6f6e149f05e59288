"""The sidebar's server side without a browser: sign-in, JS-SDK signatures, the data the page
shows, preparing a message and recording the forward."""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from guidebot.app import create_app
from guidebot.config import Settings
from guidebot.content import links
from guidebot.web.auth import mint_session, read_session
from guidebot.web.keys import SETTINGS
from guidebot.web.sidebar.signin import SIDEBAR, SidebarState, is_simulated
from tests.content.harness import PNG
from tests.support import make_settings


async def login(h, userid: str = "g1") -> None:
    response = await h.client.get(f"/sidebar/login?userid={userid}", allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/sidebar"


async def post(h, path: str, payload: dict, **headers: str):
    response = await h.client.post(path, json=payload, headers=headers)
    return response.status, await response.json()


async def test_sign_in_while_simulated(h):
    response = await h.client.get("/sidebar", allow_redirects=False)
    assert response.status == 200 and "Choose a guide" in await response.text()
    denied = await h.client.get("/sidebar/login?userid=nobody", allow_redirects=False)
    assert denied.status == 403
    await login(h)
    page = await h.client.get("/sidebar?customer=wmc1")
    html = await page.text()
    assert page.status == 200 and "王芳" in html and "张江店" in html
    assert "/sidebar/static/ww-shim.js" in html and "wwcdn" not in html
    config = json.loads(
        re.search(r'id="gb-config" type="application/json">(.*?)</script>', html)[1]
    )
    assert config["customer"] == "wmc1" and config["simulated"] is True
    assert (await h.client.get("/sidebar/static/ww-shim.js")).status == 200
    assert (await h.client.get("/sidebar/static/../harness.py")).status == 404


async def test_open_redirect_is_refused(h):
    response = await h.client.get(
        "/sidebar/login?userid=g1&next=https://evil.example.com/", allow_redirects=False
    )
    assert response.headers["Location"] == "/sidebar"


def test_sessions_are_signed_and_expire():
    key = "k" * 40
    from tests.content.harness import START

    value = mint_session(key, "g1", START)
    assert read_session(key, value, START) == "g1"
    assert read_session(key, value, START + timedelta(hours=13)) is None
    assert read_session("z" * 40, value, START) is None
    _payload, sig = value.split(".")
    forged = links.b64e(json.dumps(["g2", 4102444800]).encode())
    assert read_session(key, f"{forged}.{sig}", START) is None
    # A tracked-link signature is no session (keys are derived per purpose).
    token, _ = links.mint(key, item_id=1, guide="g1", now=START)
    assert read_session(key, token, START) is None


async def test_never_simulated_against_weixin_hosts():
    app = web.Application()
    app[SETTINGS] = make_settings(
        "sqlite+aiosqlite://", wecom_api_base="https://qyapi.weixin.qq.com"
    )
    app[SIDEBAR] = SidebarState(simulator_confirmed=True)  # even if something claimed it
    assert await is_simulated(app) is False


async def test_against_something_that_is_not_the_simulator(
    aiohttp_client, migrated_sqlite_url, tmp_path
):
    """A WeCom base that does not answer as our simulator (a proxy to real WeCom, say) gets the
    real sign-in: no dev login, no shim, OAuth through WeCom."""
    proxy = await aiohttp_client(web.Application())  # 404 for everything
    settings: Settings = make_settings(
        migrated_sqlite_url,
        wecom_api_base=str(proxy.make_url("/")).rstrip("/"),
        public_url="https://guide.example.com",
        sop_dir=str(tmp_path),
    )
    client = await aiohttp_client(create_app(settings, run_workers=False))
    assert (await client.get("/sidebar/login?userid=g1", allow_redirects=False)).status == 404
    assert (await client.get("/sidebar/static/ww-shim.js")).status == 404
    assert (await client.get("/sidebar/static/sidebar.js")).status == 200
    response = await client.get("/sidebar?customer=wm1", allow_redirects=False)
    assert response.status == 302
    location = response.headers["Location"]
    assert location.startswith("https://open.weixin.qq.com/connect/oauth2/authorize?")
    assert location.endswith("#wechat_redirect")
    query = parse_qs(urlsplit(location).query)
    assert query["appid"] == [settings.corp_id] and query["agentid"] == [str(settings.agent_id)]
    assert query["scope"] == ["snsapi_base"]
    assert query["redirect_uri"][0].startswith("https://guide.example.com/sidebar/oauth?next=")
    # Coming back without the state cookie (a forged sign-in) is refused.
    back = await client.get("/sidebar/oauth?code=x&state=y", allow_redirects=False)
    assert back.status == 403


async def test_jsapi_config_signs_for_our_pages_with_live_tickets(h):
    page_url = str(h.client.make_url("/sidebar?customer=wmc1"))
    response = await h.client.get("/sidebar/jsapi-config", params={"url": page_url})
    assert response.status == 401
    await login(h)
    response = await h.client.get("/sidebar/jsapi-config", params={"url": page_url + "#x"})
    config = await response.json()
    assert config["url"] == page_url
    assert (config["corpId"], config["agentId"]) == (h.settings.corp_id, h.settings.agent_id)
    for name, kind in (("config", "jsapi"), ("agentConfig", "agent_config")):
        signed = config[name]
        verdict = await h.control(
            "jsapi/verify",
            {
                "type": kind,
                "url": page_url,
                "timestamp": signed["timestamp"],
                "noncestr": signed["nonceStr"],
                "signature": signed["signature"],
            },
        )
        assert verdict["valid"] is True, name
    # Tickets are cached (in the database): a second page load fetches none.
    await h.client.get("/sidebar/jsapi-config", params={"url": page_url})
    assert len(await h.calls("get_jsapi_ticket")) == 1
    assert len(await h.calls("ticket/get")) == 1
    other = await h.client.get(
        "/sidebar/jsapi-config", params={"url": "https://evil.example.com/sidebar"}
    )
    assert other.status == 400


async def test_customer_card_and_content_list(h):
    await h.add("g1", "wmc1")
    await h.add("g2", "wmc2")
    task = await h.task("g1", "wmc1", content="spring")
    await h.item(
        key="spring", kind="link", title="春季新品", url="https://example.com/s", tags=["新品"]
    )
    await h.item(kind="text", title="徐汇店专属", body="x", stores=["12"])
    await login(h)
    response = await h.client.get("/sidebar/api/customer", params={"external_userid": "wmc1"})
    card = await response.json()
    assert card["customer"]["name"] == "陈女士"
    assert card["relation"]["store"]["name"] == "张江店"
    assert card["relation"]["since"].startswith("2026-03-10")
    assert card["relation"]["since_day"] == "2026-03-10"
    assert [t["id"] for t in card["tasks"]] == [task]
    assert card["tasks"][0]["content_key"] == "spring"
    assert [e["name"] for e in card["enrollments"]] == ["7 天回访"]
    # Another guide's customer is not shown.
    response = await h.client.get("/sidebar/api/customer", params={"external_userid": "wmc2"})
    assert response.status == 404
    listing = await (await h.client.get("/sidebar/api/content")).json()
    assert [i["title"] for i in listing["items"]] == ["春季新品"]  # not 徐汇店's
    found = await (await h.client.get("/sidebar/api/content", params={"q": "春季"})).json()
    assert found["total"] == 1
    customers = await (await h.client.get("/sidebar/api/customers")).json()
    assert [c["external_userid"] for c in customers["customers"]] == ["wmc1"]


async def test_prepare_then_record_the_forward_once_and_complete_the_task(h):
    await h.add("g1", "wmc1")
    task = await h.task("g1", "wmc1")
    item = await h.item(
        key="spring",
        kind="link",
        title="春季新品",
        url="https://example.com/s",
        summary="十款新色",
        cover_url="https://cdn.example.com/s.jpg",
    )
    await login(h)
    status, prepared = await post(
        h,
        "/sidebar/api/prepare",
        {"item_id": item["id"], "external_userid": "wmc1", "task_id": task},
    )
    assert status == 200, prepared
    message = prepared["message"]
    assert message["msgtype"] == "news"
    assert message["news"]["title"] == "春季新品" and message["news"]["desc"] == "十款新色"
    assert message["news"]["imgUrl"] == "https://cdn.example.com/s.jpg"
    assert message["news"]["link"] == prepared["url"]
    assert prepared["url"].startswith("http://guidebot.test/r/")
    claims = links.verify(h.settings.secret_key, prepared["ref"])
    assert (claims.guide, claims.customer, claims.task_id, claims.step) == (
        "g1",
        "wmc1",
        task,
        "day3",
    )
    assert await h.forwards() == []  # nothing is recorded before sendChatMessage:ok

    status, first = await post(h, "/sidebar/api/forwards", {"ref": prepared["ref"]})
    assert status == 201 and first == {"recorded": True, "task_completed": True}
    status, again = await post(h, "/sidebar/api/forwards", {"ref": prepared["ref"]})
    assert status == 200 and again == {"recorded": False, "task_completed": False}
    [forward] = await h.forwards()
    assert (forward.guide_userid, forward.external_userid, forward.item_id) == (
        "g1",
        "wmc1",
        item["id"],
    )
    assert (forward.task_id, forward.via, forward.store_id) == (task, "sidebar", 11)
    done = await h.get_task(task)
    assert (done.status, done.completed_by) == ("done", "sidebar")


async def test_prepare_refuses_what_is_not_the_guides(h):
    await h.add("g1", "wmc1")
    await h.add("g2", "wmc2")
    mine = await h.item(kind="text", title="t", body="b")
    xuhui = await h.item(kind="text", title="x", body="b", stores=["12"])
    others_task = await h.task("g2", "wmc2")
    await login(h)
    status, _ = await post(
        h, "/sidebar/api/prepare", {"item_id": mine["id"], "external_userid": "wmc2"}
    )
    assert status == 403
    status, _ = await post(
        h, "/sidebar/api/prepare", {"item_id": xuhui["id"], "external_userid": "wmc1"}
    )
    assert status == 404
    status, _ = await post(
        h,
        "/sidebar/api/prepare",
        {"item_id": mine["id"], "external_userid": "wmc1", "task_id": others_task},
    )
    assert status == 400
    status, _ = await post(
        h,
        "/sidebar/api/prepare",
        {"item_id": mine["id"], "external_userid": "wmc1"},
        Origin="https://evil.example.com",
    )
    assert status == 403


async def test_behind_a_proxy_that_rewrites_host_the_public_origin_is_still_ours(h):
    await h.add("g1", "wmc1")
    item = await h.item(kind="text", title="t", body="b")
    await login(h, "g1")
    body = {"item_id": item["id"], "external_userid": "wmc1"}
    upstream = {"Host": "guidebot-1:8080"}  # what nginx's bare proxy_pass sends
    status, _ = await post(
        h, "/sidebar/api/prepare", body, Origin="http://guidebot.test", **upstream
    )
    assert status == 200  # the page was served from GUIDEBOT_PUBLIC_URL
    status, _ = await post(h, "/sidebar/api/prepare", body, Origin="http://other.test", **upstream)
    assert status == 403


async def test_a_reference_is_only_good_for_its_guide(h):
    await h.add("g1", "wmc1")
    item = await h.item(kind="text", title="t", body="b")
    await login(h, "g1")
    status, prepared = await post(
        h, "/sidebar/api/prepare", {"item_id": item["id"], "external_userid": "wmc1"}
    )
    assert prepared["message"] == {"msgtype": "text", "text": {"content": "b"}}
    await login(h, "g3")
    status, refused = await post(h, "/sidebar/api/forwards", {"ref": prepared["ref"]})
    assert status == 403
    # The guide reads why in Chinese first (the group chat's forwards say the same).
    assert refused["error"]["reason"].startswith("这是为其他导购准备的 · "), refused
    status, refused = await post(h, "/sidebar/api/forwards", {"ref": prepared["ref"][:-3]})
    assert status == 400
    assert refused["error"]["reason"].startswith("不是本系统准备的消息 · "), refused
    assert await h.forwards() == []


async def test_images_and_files_are_sent_by_media_id(h):
    await h.add("g1", "wmc1")
    image = await h.item(
        kind="image",
        title="搭配图",
        media={"filename": "a.png", "data_base64": base64.b64encode(PNG).decode()},
    )
    await login(h)
    _status, prepared = await post(
        h, "/sidebar/api/prepare", {"item_id": image["id"], "external_userid": "wmc1"}
    )
    media_id = prepared["message"]["image"]["mediaid"]
    h.sim_state.live_media(media_id, "image")


async def test_a_task_link_names_its_customer(h):
    await h.add("g1", "wmc1")
    task = await h.task("g1", "wmc1")
    await login(h)
    html = await (await h.client.get(f"/sidebar?task={task}")).text()
    config = json.loads(
        re.search(r'id="gb-config" type="application/json">(.*?)</script>', html)[1]
    )
    assert (config["customer"], config["task"]) == ("wmc1", task)
    await login(h, "g3")  # not g3's task: ignored
    html = await (await h.client.get(f"/sidebar?task={task}")).text()
    config = json.loads(
        re.search(r'id="gb-config" type="application/json">(.*?)</script>', html)[1]
    )
    assert (config["customer"], config["task"]) == (None, None)


async def test_the_relations_day_is_on_its_stores_calendar(h):
    """g1 adds wmc1 in 张江店 (Shanghai) at 12:00 on 03-10, then moves to 徐汇店, which keeps Los
    Angeles time (still 03-09 there): the sidebar says the relation began on 03-10."""
    await h.add("g1", "wmc1")
    status, _ = await h.api("PATCH", "/stores/12", json={"timezone": "America/Los_Angeles"})
    assert status == 200
    await h.act("users", {"userid": "g1", "name": "王芳", "department": [12], "notify": True})
    await login(h)
    response = await h.client.get("/sidebar/api/customer", params={"external_userid": "wmc1"})
    card = await response.json()
    assert card["relation"]["store"]["name"] == "张江店"
    assert card["relation"]["since_day"] == "2026-03-10"
