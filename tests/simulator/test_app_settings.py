"""The app as the admin console sets it up: 客户联系's 可调用接口的应用 (48002), 企业可信IP
(60020) and agent/get with the app's 可信域名. Each test names the WeCom page it follows
(developer.work.weixin.qq.com/document/path/<id>); the switches are the control API's config,
so a test (or `guidebot doctor`'s) turns each fault on as an admin would leave it."""

from __future__ import annotations

import pytest

from guidebot.wecom.simulator import SimulatorConfig

from .conftest import IDENTITY


async def test_an_app_outside_customer_contacts_callable_apps_gets_48002(make_sim):
    """doc 92109 客户联系概述 ("配置到「可调用应用」列表中的自建应用secret所获取的accesstoken")
    and doc 90313 全局错误码 48002 "API接口无权限调用": the token is fine, the address book
    answers, every externalcontact/* API refuses."""
    sim = await make_sim()
    await sim.seed_guides("alice")
    assert (await sim.api("externalcontact/get_follow_user_list"))["errcode"] == 0
    config = await sim.control("config", {"customer_contact": False})
    assert config["customer_contact"] is False
    refused = await sim.api("externalcontact/get_follow_user_list")
    assert refused["errcode"] == 48002 and "api forbidden" in refused["errmsg"]
    listed = await sim.api("externalcontact/list_contact_way", {})
    assert listed["errcode"] == 48002
    assert (await sim.api("department/list"))["errcode"] == 0
    assert (await sim.api("get_jsapi_ticket"))["errcode"] == 0
    await sim.control("config", {"customer_contact": True})
    assert (await sim.api("externalcontact/get_follow_user_list"))["errcode"] == 0


async def test_a_caller_outside_the_apps_trusted_ips_gets_60020_naming_its_address(make_sim):
    """doc 90313 全局错误码 60020 "不安全的访问IP", and the admin console's notice (reference
    §4): "2022年6月20日起，新创建的应用，企业可信IP为本企业服务器的IP地址，仅所配IP可通过接口
    获取企业数据". gettoken still answers; the data APIs do not, and say which address called."""
    sim = await make_sim()
    token = await sim.token()
    await sim.control("config", {"trusted_ips": ["203.0.113.7"]})
    refused = await sim.api("department/list", token=token)
    assert refused["errcode"] == 60020
    assert "not allow to access from your ip, hint: [" in refused["errmsg"]
    assert "from ip: 127.0.0.1" in refused["errmsg"]
    assert (await sim.api("get_jsapi_ticket", token=token))["errcode"] == 60020
    fresh = await sim.api(
        "gettoken", token=None, corpid=IDENTITY.corp_id, corpsecret=IDENTITY.secret
    )
    assert fresh["errcode"] == 0
    await sim.control("config", {"trusted_ips": ["203.0.113.7", "127.0.0.1"]})
    assert (await sim.api("department/list", token=token))["errcode"] == 0
    await sim.control("config", {"trusted_ips": None})  # unrestricted again
    assert (await sim.api("department/list", token=token))["errcode"] == 0
    bad = await sim.control("config", {"trusted_ips": ["not-an-ip"]}, status=400)
    assert "not an IP address" in bad["error"]


async def test_agent_get_reads_the_app_itself_with_its_trusted_domain(make_sim):
    """doc 90227 获取指定的应用详情: redirect_domain is 企业应用可信域名; a self-built app's
    token reads its own app only ("not allow operate another agent with this accesstoken",
    301002); no agentid is 41011, a malformed one 40056."""
    sim = await make_sim(trusted_domain="guide.example.com")
    app = await sim.api("agent/get", agentid=IDENTITY.agent_id)
    assert app["errcode"] == 0
    assert app["agentid"] == IDENTITY.agent_id
    assert app["redirect_domain"] == "guide.example.com"
    assert app["allow_partys"] == {"partyid": [1]}
    assert (await sim.api("agent/get", agentid=IDENTITY.agent_id + 1))["errcode"] == 301002
    assert (await sim.api("agent/get"))["errcode"] == 41011
    assert (await sim.api("agent/get", agentid="abc"))["errcode"] == 40056
    await sim.control("config", {"trusted_domain": ""})
    assert (await sim.api("agent/get", agentid=IDENTITY.agent_id))["redirect_domain"] == ""


def test_the_app_switches_are_checked():
    with pytest.raises(ValueError, match="customer_contact"):
        SimulatorConfig(identity=IDENTITY, customer_contact="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not an IP address"):
        SimulatorConfig(identity=IDENTITY, trusted_ips=("10.0.0.300",))
    config = SimulatorConfig(identity=IDENTITY, trusted_ips=["10.0.0.1"])  # type: ignore[arg-type]
    assert config.trusted_ips == ("10.0.0.1",)
