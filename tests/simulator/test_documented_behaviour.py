"""Where the simulator once drifted from WeCom's documents; each test names the page it follows.

Pages are developer.work.weixin.qq.com/document/path/<id> (the self-built-app copies; the
代开发 copies under other ids carry the same text).
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

import pytest
from aiohttp import web

from guidebot.clock import FakeClock
from guidebot.wecom.simulator import ApiError, SimState, SimulatorConfig

from .conftest import CN, IDENTITY, cn_time

# ---- callback delivery ---------------------------------------------------------------------


async def test_a_callback_is_cut_at_exactly_five_seconds(aiohttp_server, make_sim):
    """doc 90238 接收消息与事件: "企业微信服务器在五秒内收不到响应会断掉连接".

    Measured on the real clock, once: a receiver answering at 4.7 s is delivered, one answering
    at 5.3 s is not. aiohttp's own ClientTimeout rounds 5 s up to the loop's next whole second
    (5.0-6.0 s), so the start is put just after a whole second, where that rounding would wait
    almost 6 s and let the 5.3 s answer through.
    """

    async def answer_after(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.match_info["delay"]))
        return web.Response()

    app = web.Application()
    app.router.add_post("/after/{delay}", answer_after)
    server = await aiohttp_server(app)
    slow = await make_sim(callback_url=str(server.make_url("/after/5.3")), callback_tries=1)
    fast = await make_sim(callback_url=str(server.make_url("/after/4.7")), callback_tries=1)

    loop = asyncio.get_running_loop()
    await asyncio.sleep(1.02 - loop.time() % 1)  # just past a whole second of the loop clock
    event = {"xml": "<xml><MsgType>event</MsgType><Event>enter_agent</Event></xml>"}
    late, in_time = await asyncio.gather(
        slow.control("callbacks", event), fast.control("callbacks", event)
    )

    assert in_time["delivered"] is True
    assert [a["status"] for a in in_time["attempts"]] == [200]
    assert late["delivered"] is False
    [attempt] = late["attempts"]
    assert (attempt["status"], attempt["error"]) == (None, "timeout")
    assert attempt["elapsed_ms"] >= 4990  # never cut early either


# ---- frequency limits ----------------------------------------------------------------------


async def codes(sim, api: str, token: str, n: int = 1) -> list[int]:
    return [(await sim.api(api, token=token))["errcode"] for _ in range(n)]


async def test_the_minute_limit_slides_across_the_clock_minute(make_sim, clock):
    """doc 90454 访问频率限制: "每企业调用单个cgi/api不可超过1万次/分" counts any 60 s, so
    five calls at 12:00:50 leave no room at 12:01:10 although a new clock minute began."""
    clock.set(cn_time(2026, 3, 10, 12, 0, 50))
    sim = await make_sim(api_limit_per_minute=5)
    token = await sim.token()
    assert await codes(sim, "department/list", token, 5) == [0] * 5
    clock.set(cn_time(2026, 3, 10, 12, 1, 10))
    assert await codes(sim, "department/list", token) == [45009]


async def test_the_minute_limit_bans_the_api_for_60_s_from_the_refused_call(make_sim, clock):
    """doc 90454 访问频率限制: "按分钟拦截则被屏蔽60秒". The ban outlasts the calls that
    filled the window, and holds for that API only."""
    sim = await make_sim(api_limit_per_minute=5)
    token = await sim.token()
    start = clock.time()
    assert await codes(sim, "department/list", token, 5) == [0] * 5
    clock.set(start + 59)
    assert await codes(sim, "department/list", token) == [45009]  # banned until start + 119
    clock.set(start + 60)  # the five calls have left the window; the ban has not ended
    assert await codes(sim, "department/list", token) == [45009]
    assert await codes(sim, "externalcontact/get_follow_user_list", token) == [0]
    clock.set(start + 118.9)
    assert await codes(sim, "department/list", token) == [45009]
    clock.set(start + 119)
    assert await codes(sim, "department/list", token, 5) == [0] * 5


async def test_the_hour_limit_bans_the_api_for_an_hour(make_sim, clock):
    """doc 90454 访问频率限制: "15万次/小时" per API, "按小时拦截则被屏蔽60分钟" (here with the
    hour's limit set to 5; the next test runs the documented numbers)."""
    sim = await make_sim(api_limit_per_hour=5)
    token = await sim.token()
    start = clock.time()
    for minute in range(5):
        clock.set(start + minute * 60)
        assert await codes(sim, "department/list", token) == [0]
    clock.set(start + 30 * 60)
    assert await codes(sim, "department/list", token) == [45009]  # banned until start + 90 min
    clock.set(start + 70 * 60)  # the hour's calls have all left the window
    assert await codes(sim, "department/list", token) == [45009]
    clock.set(start + 90 * 60)
    assert await codes(sim, "department/list", token) == [0]


def test_each_api_takes_10000_calls_a_minute_and_150000_an_hour():
    """doc 90454 访问频率限制: "每企业调用单个cgi/api不可超过1万次/分，15万次/小时"."""
    clock = FakeClock(datetime(2026, 3, 10, 12, 0, tzinfo=CN))
    state = SimState(SimulatorConfig(identity=IDENTITY, clock=clock.time))
    for _ in range(10_000):
        state.check_rate("externalcontact/list")
    with pytest.raises(ApiError) as minute:
        state.check_rate("externalcontact/list")
    assert minute.value.errcode == 45009

    for _ in range(15):
        for _ in range(10_000):
            state.check_rate("user/get")
        clock.advance(60)
    with pytest.raises(ApiError) as hour:  # a fresh minute, a full hour
        state.check_rate("user/get")
    assert hour.value.errcode == 45009
    state.check_rate("department/list")
    clock.advance(3599.5)
    with pytest.raises(ApiError):
        state.check_rate("user/get")
    clock.advance(0.5)
    state.check_rate("user/get")


def test_a_member_gets_at_most_1000_app_messages_an_hour():
    """doc 90454 访问频率限制, 发送应用消息频率: "每应用对同一个成员不可超过30次/分钟，
    1000次/小时，超过部分会被丢弃不下发"."""
    clock = FakeClock(datetime(2026, 3, 10, 12, 0, tzinfo=CN))
    state = SimState(SimulatorConfig(identity=IDENTITY, clock=clock.time))
    start = clock.time()
    outcomes = []
    for minute in range(34):  # 30 a minute: the minute limit never bites
        clock.set(start + minute * 60)
        outcomes += [state.deliver_app_message("alice", "text", {"n": i}, None) for i in range(30)]
    assert outcomes.count("sent") == 1000
    assert outcomes[1000:] == ["dropped"] * 20
    assert state.deliver_app_message("bob", "text", {}, None) == "sent"
    # Nothing is banned: the first minute's 30 leave the hour and 30 more get through.
    clock.set(start + 3600)
    assert [state.deliver_app_message("alice", "text", {}, None) for _ in range(31)] == [
        "sent"
    ] * 30 + ["dropped"]


async def test_get_jsapi_ticket_takes_100_fetches_an_hour_from_one_app(sim):
    """doc 96909 JS-SDK 签名算法, 获取企业 jsapi_ticket: "一小时内，一个企业最多可获取 400 次，
    且单个应用不能超过 100 次" (also doc 90454). The simulated corp has one app."""
    answers = [await sim.api("get_jsapi_ticket") for _ in range(101)]
    assert [a["errcode"] for a in answers] == [0] * 100 + [45009]
    # The app's agent_config ticket has its own 100.
    assert (await sim.api("ticket/get", type="agent_config"))["errcode"] == 0
    sim.clock.advance(3599)
    assert (await sim.api("get_jsapi_ticket"))["errcode"] == 45009
    sim.clock.advance(1)
    assert (await sim.api("get_jsapi_ticket"))["errcode"] == 0


# ---- request parameters --------------------------------------------------------------------


async def post_raw(sim, api: str, data: bytes) -> dict:
    token = await sim.token()
    response = await sim.client.post(f"/cgi-bin/{api}", params={"access_token": token}, data=data)
    assert response.status == 200
    return await response.json()


async def test_a_body_that_is_not_a_json_object_is_read_as_no_parameters(sim):
    """doc 90313 全局错误码: "如果请求的参数不符合json规范…可能会导致企业微信解析到的参数不完整，
    此时接口在返回的errmsg里会有 'Warning: wrong json format.'". 47001 is not in WeCom's
    table (it is WeChat's "data format error"): the API answers for what it could read."""
    await sim.add("alice", "wmC1")
    garbage = await post_raw(sim, "externalcontact/mark_tag", b"{not json")
    assert garbage["errcode"] == 41009  # mark_tag without a userid
    assert "Warning: wrong json format." in garbage["errmsg"]
    a_list = await post_raw(sim, "externalcontact/remark", json.dumps(["alice"]).encode())
    assert a_list["errcode"] == 41009
    assert "Warning: wrong json format." in a_list["errmsg"]
    # An API that needs no parameters still answers, with the warning.
    tags = await post_raw(sim, "externalcontact/get_corp_tag_list", b"<xml/>")
    assert tags["errcode"] == 0 and tags["tag_group"] == []
    assert "Warning: wrong json format." in tags["errmsg"]
    assert "Warning" not in (await sim.api("externalcontact/get_corp_tag_list", {}))["errmsg"]
    calls = (await sim.control("calls?api=externalcontact/mark_tag", method="GET"))["calls"]
    assert calls[-1]["body"] == {"_raw": "{not json"}
    # An unreadable upload is no upload: media/upload's own "empty media" answer.
    token = await sim.token()
    broken = await sim.client.post(
        "/cgi-bin/media/upload",
        params={"access_token": token, "type": "image"},
        data=b"--x\r\nnot a part",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert (await broken.json())["errcode"] == 44001


async def test_a_page_size_over_the_maximum_is_not_refused(sim):
    """Each page size as its document says: doc 92994 批量获取客户详情 "limit 最大值100，默认值50，
    超过最大值时取最大值"; doc 93338 获取群发记录列表 (get_groupmsg_task / send_result)
    "最大值1000，默认值500，超过最大值时取默认值"; doc 92228 「联系我」列表 "最多支持1000条"."""
    for n in range(501):
        sim.state.add_contact("alice", f"wm{n:03}")
    batch = await sim.api(
        "externalcontact/batch/get_by_user", {"userid_list": ["alice"], "limit": 101}
    )
    assert batch["errcode"] == 0 and len(batch["external_contact_list"]) == 100

    msgid = (
        await sim.api(
            "externalcontact/add_msg_template", {"sender": "alice", "text": {"content": "新品"}}
        )
    )["msgid"]
    for limit, rows in ((1001, 500), (501, 501), (0, 500)):
        result = await sim.api(
            "externalcontact/get_groupmsg_send_result",
            {"msgid": msgid, "userid": "alice", "limit": limit},
        )
        assert result["errcode"] == 0 and len(result["send_list"]) == rows, limit
    task = await sim.api("externalcontact/get_groupmsg_task", {"msgid": msgid, "limit": 5000})
    assert task["errcode"] == 0 and len(task["task_list"]) == 1

    way = await sim.api(
        "externalcontact/add_contact_way", {"type": 1, "scene": 2, "user": ["alice"]}
    )
    listed = await sim.api("externalcontact/list_contact_way", {"limit": 1001})
    assert listed["errcode"] == 0
    assert listed["contact_way"] == [{"config_id": way["config_id"]}]


async def test_list_v2_over_100_takes_the_default_50(sim):
    """doc 93338 获取群发记录列表 get_groupmsg_list_v2: "limit 最大值100，默认值50，超过最大值时取
    默认值"."""
    await sim.add("alice", "wmC1")
    for _ in range(51):
        await sim.api(
            "externalcontact/add_msg_template",
            {"sender": "alice", "external_userid": ["wmC1"], "text": {"content": "新品"}},
        )
    now = int(sim.clock.time())
    window = {"chat_type": "single", "start_time": now - 60, "end_time": now + 60}
    over = await sim.api("externalcontact/get_groupmsg_list_v2", {**window, "limit": 101})
    assert over["errcode"] == 0 and len(over["group_msg_list"]) == 50 and over["next_cursor"]
    full = await sim.api("externalcontact/get_groupmsg_list_v2", {**window, "limit": 100})
    assert len(full["group_msg_list"]) == 51


async def test_the_3001st_corp_tag_is_40126_and_changes_nothing(sim):
    """doc 92117 管理企业标签: a corp has at most 3000 tags; errcode 40126 "企业标签个数达到上限，
    最多为3000个" (doc 90313 全局错误码)."""
    bulk = {"group_name": "批量", "tags": [f"t{i}" for i in range(3000)]}
    await sim.control("tags", bulk)
    full = await sim.api(
        "externalcontact/add_corp_tag", {"group_name": "新组", "tag": [{"name": "多一个"}]}
    )
    assert full["errcode"] == 40126
    groups = (await sim.api("externalcontact/get_corp_tag_list", {}))["tag_group"]
    assert [g["group_name"] for g in groups] == ["批量"]  # no empty "新组" left behind

    first = groups[0]["tag"][0]["id"]
    assert (await sim.api("externalcontact/del_corp_tag", {"tag_id": [first]}))["errcode"] == 0
    room = await sim.api(
        "externalcontact/add_corp_tag", {"group_name": "新组", "tag": [{"name": "多一个"}]}
    )
    assert room["errcode"] == 0


async def test_a_refused_add_corp_tag_adds_none_of_its_tags(sim):
    """doc 92117 管理企业标签: names are 1-30 characters (40072) and unique in a group (40071);
    one bad tag refuses the request, so none of it is added."""
    for bad in ("x" * 31, "好"):
        answer = await sim.api(
            "externalcontact/add_corp_tag",
            {"group_name": "兴趣", "tag": [{"name": "好"}, {"name": bad}]},
        )
        assert answer["errcode"] == (40072 if len(bad) > 30 else 40071)
        assert (await sim.api("externalcontact/get_corp_tag_list", {}))["tag_group"] == []


async def test_contact_way_styles_outside_the_appendix_are_41042(sim):
    """doc 92228 配置客户联系「联系我」方式: "style 在小程序中联系时使用的控件样式，详见附表";
    the appendix offers styles 1-3 for a single-member way and 1-2 for a multi-member one, and
    41042 is "无效的「联系我」style参数" (doc 90313 全局错误码)."""
    single = {"type": 1, "scene": 1, "user": ["alice"]}
    multi = {"type": 2, "scene": 1, "user": ["alice", "bob"]}
    assert (await sim.api("externalcontact/add_contact_way", {**single, "style": 3}))[
        "errcode"
    ] == 0
    for body in ({**single, "style": 9}, {**single, "style": 0}, {**multi, "style": 3}):
        assert (await sim.api("externalcontact/add_contact_way", body))["errcode"] == 41042
    way = await sim.api("externalcontact/add_contact_way", {**multi, "style": 2})
    update = {"config_id": way["config_id"], "style": 3, "remark": "改"}
    assert (await sim.api("externalcontact/update_contact_way", update))["errcode"] == 41042
    got = await sim.api("externalcontact/get_contact_way", {"config_id": way["config_id"]})
    assert (got["contact_way"]["style"], got["contact_way"]["remark"]) == (2, "")


async def test_member_reads_carry_no_mobile_gender_email_or_avatar(sim):
    """doc 90196 读取成员 and doc 90337 获取部门成员详情: "从2022年6月20号20点开始…新创建的
    自建应用…不再返回以下字段：头像、性别、手机、邮箱、企业邮箱、员工个人二维码、地址"."""
    await sim.control(
        "users",
        {
            "userid": "carol",
            "name": "Carol",
            "department": [2],
            "mobile": "13800000000",
            "email": "carol@example.com",
            "gender": "2",
        },
    )
    hidden = {"avatar", "thumb_avatar", "gender", "mobile", "email", "biz_mail", "qr_code"}
    hidden.add("address")
    user = await sim.api("user/get", userid="carol")
    assert user["errcode"] == 0 and (user["name"], user["main_department"]) == ("Carol", 2)
    assert hidden.isdisjoint(user)
    listed = (await sim.api("user/list", department_id=2))["userlist"]
    assert [u["userid"] for u in listed] == ["alice", "bob", "carol"]
    assert all(hidden.isdisjoint(u) for u in listed)
