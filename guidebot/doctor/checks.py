"""The checks against WeCom's API: credentials, 企业可信IP, the app, 客户联系, the address book,
the contact ways and the JS-SDK tickets. Each takes the doctor's context and returns an
Outcome; a WeComError it meets becomes the cause and fix `texts.refusal` gives for it."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from guidebot.config import Settings
from guidebot.doctor.texts import CREDENTIAL_FIXES, VISIBLE_FIX, Say, refusal, say
from guidebot.wecom.client import WeComClient, WeComError

__all__ = ["Context", "Outcome", "passed", "wecom_check"]


@dataclass(slots=True)
class Outcome:
    ok: bool
    cause: Say
    fix: Say | None = None
    errcode: int | None = None


@dataclass(slots=True)
class Context:
    """What every check reads: the settings, a WeCom client of the configured app on a fresh
    token cache, an HTTP session for the public URL, and what earlier checks learned."""

    settings: Settings
    wecom: WeComClient
    http: aiohttp.ClientSession
    agent: dict[str, Any] = field(default_factory=dict)

    def refused(self, check: str, exc: WeComError) -> Outcome:
        cause, fix = refusal(
            check,
            exc.errcode,
            exc.errmsg,
            agent_id=self.settings.agent_id,
            base=self.settings.wecom_api_base,
        )
        return Outcome(False, cause, fix, exc.errcode)


def passed(zh: str, en: str) -> Outcome:
    return Outcome(True, say(zh, en))


def wecom_check(name: str) -> Callable:
    """A check whose WeComError becomes its refusal."""

    def wrap(run: Callable[[Context], Awaitable[Outcome]]) -> Callable:
        async def check(ctx: Context) -> Outcome:
            try:
                return await run(ctx)
            except WeComError as exc:
                return ctx.refused(name, exc)

        check.__name__ = run.__name__
        return check

    return wrap


async def credentials(ctx: Context) -> Outcome:
    """gettoken with GUIDEBOT_CORP_ID and GUIDEBOT_SECRET (40013 and 40001 told apart)."""
    try:
        await ctx.wecom.get_access_token()
    except WeComError as exc:
        if exc.errcode in CREDENTIAL_FIXES:
            cause, fix = CREDENTIAL_FIXES[exc.errcode]
            return Outcome(False, cause, fix, exc.errcode)
        return ctx.refused("credentials", exc)
    return passed("取得 access_token", "got an access token")


async def trusted_ip(ctx: Context) -> Outcome:
    """The app itself (agent/get): 60020 when this server's address is not a trusted IP."""
    try:
        ctx.agent = await ctx.wecom.agent_get()
    except WeComError as exc:
        if exc.errcode in (60020, -1, 40014, 42001):
            return ctx.refused("trusted_ip", exc)
        # WeCom let the call through from here; what else it said is the app check's.
        ctx.agent = {"error": exc}
    return passed("本服务器的地址可以调用接口", "calls from this server's address are accepted")


async def app(ctx: Context) -> Outcome:
    """The Secret is the AgentId's app (agent/get answers for it)."""
    error = ctx.agent.get("error")
    if isinstance(error, WeComError):
        return ctx.refused("app", error)
    name = ctx.agent.get("name") or "?"
    agent_id = ctx.settings.agent_id
    return passed(f"应用「{name}」（AgentId {agent_id}）", f"app '{name}' (AgentId {agent_id})")


@wecom_check("customer_contact")
async def customer_contact(ctx: Context) -> Outcome:
    """get_follow_user_list: 48002 when the app is not among 客户联系's callable apps; none
    listed when no member may use 客户联系."""
    followers = await ctx.wecom.get_follow_user_list()
    if not followers:
        return Outcome(
            False,
            say("没有成员开通客户联系", "no member is enabled for customer contact"),
            say(
                "管理后台 → 客户与上下游 → 客户联系 → 权限配置 → 使用范围，加入导购；"
                "导购也须在本应用的可见范围内",
                "Admin console → Customers & Partners → Customer Contact → Permissions → "
                "Scope of use, add the guides; they must be in this app's visible range too",
            ),
        )
    count = len(followers)
    return passed(f"{count} 位成员可联系客户", f"{count} member(s) enabled for customer contact")


@wecom_check("contact_ways")
async def contact_ways(ctx: Context) -> Outcome:
    """list_contact_way: the 「联系我」 codes of the last 90 days are readable."""
    page = await ctx.wecom.list_contact_way(limit=100)
    count = len(page.items)
    more = "+" if page.next_cursor else ""
    return passed(
        f"近 90 天的「联系我」{count}{more} 个", f"{count}{more} contact way(s) in 90 days"
    )


@wecom_check("address_book")
async def address_book(ctx: Context) -> Outcome:
    """department/list, then the members of the first department the app sees."""
    departments = await ctx.wecom.department_list()
    if not departments:
        return Outcome(
            False,
            say("应用的可见范围里没有部门", "the app's visible range holds no department"),
            VISIBLE_FIX,
        )
    first = departments[0]
    members = await ctx.wecom.user_list(int(first["id"]))
    name = first.get("name") or first["id"]
    return passed(
        f"{len(departments)} 个部门；部门「{name}」的成员可读（{len(members)} 人）",
        f"{len(departments)} department(s); members of '{name}' readable ({len(members)})",
    )


@wecom_check("jssdk")
async def jssdk(ctx: Context) -> Outcome:
    """Both tickets the sidebar signs with: get_jsapi_ticket and ticket/get?type=agent_config."""
    await ctx.wecom.get_jsapi_ticket()
    await ctx.wecom.get_agent_ticket()
    return passed("企业与应用的 jsapi_ticket 都已取得", "got the corp's and the app's jsapi_ticket")


async def trusted_domain(ctx: Context) -> Outcome:
    """The sidebar's host (GUIDEBOT_PUBLIC_URL's) is the app's 可信域名 (agent/get)."""
    host = urlsplit(ctx.settings.public_url).hostname or ""
    netloc = urlsplit(ctx.settings.public_url).netloc
    domain = str(ctx.agent.get("redirect_domain") or "").strip().lower()
    if domain in (host.lower(), netloc.lower()) and domain:
        return passed(f"可信域名 {domain}", f"trusted domain {domain}")
    if _local(host):
        cause = say(
            f"GUIDEBOT_PUBLIC_URL 还是本机地址 {ctx.settings.public_url}，企业微信和顾客都访问不到",
            f"GUIDEBOT_PUBLIC_URL is still a local address, {ctx.settings.public_url}: neither "
            "WeCom nor customers can reach it",
        )
        fix = say(
            "把 GUIDEBOT_PUBLIC_URL 设为公网可达的 HTTPS 地址（如 https://guide.example.com），"
            "再把该域名设为应用的可信域名",
            "set GUIDEBOT_PUBLIC_URL to the public HTTPS address (e.g. https://guide.example.com), "
            "then make that domain the app's trusted domain",
        )
        return Outcome(False, cause, fix)
    fix = say(
        f"管理后台 → 应用管理 → 应用 → 自建 → 本应用 → 开发者接口 → 网页授权及JS-SDK → "
        f"设置可信域名：填 {host}，下载页面给出的 WW_verify_….txt 放进 GUIDEBOT_WECOM_VERIFY_DIR "
        "指定的文件夹，再点「验证」",
        f"Admin console → App Management → Apps → Self-built → this app → Developer API → Web "
        f"authorization and JS-SDK → Set trusted domain: enter {host}, download the "
        "WW_verify_….txt it offers into the folder GUIDEBOT_WECOM_VERIFY_DIR names, then 'Verify'",
    )
    if not domain:
        cause = say("应用没有设置可信域名", "the app has no trusted domain")
    else:
        cause = say(
            f"可信域名是 {domain}，但侧边栏在 {host}（GUIDEBOT_PUBLIC_URL）",
            f"the trusted domain is {domain} but the sidebar is at {host} (GUIDEBOT_PUBLIC_URL)",
        )
    return Outcome(False, cause, fix)


def _local(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
