"""What `guidebot doctor` says: each check's name, and for each cause the admin-console step
that fixes it, in Chinese then English.

The console's menus are named as the WeCom admin console (work.weixin.qq.com/wework_admin)
shows them; the English in brackets is the international console's wording.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TITLES", "Say", "refusal", "say"]


@dataclass(frozen=True, slots=True)
class Say:
    """A cause or a fix in both languages."""

    zh: str
    en: str

    def as_json(self) -> dict[str, str]:
        return {"zh": self.zh, "en": self.en}


def say(zh: str, en: str) -> Say:
    return Say(zh, en)


TITLES: dict[str, Say] = {
    "credentials": say("企业ID与应用 Secret", "corp ID and the app's Secret"),
    "trusted_ip": say("企业可信IP", "trusted IP"),
    "app": say("应用与 AgentId", "the app and its AgentId"),
    "customer_contact": say("客户联系接口权限", "customer contact API permission"),
    "contact_ways": say("「联系我」可读", "contact ways readable"),
    "address_book": say("通讯录可读", "address book readable"),
    "jssdk": say("JS-SDK 票据", "JS-SDK tickets"),
    "callback": say("回调 URL 校验", "callback URL verification"),
    "trusted_domain": say("侧边栏域名是可信域名", "sidebar domain is the trusted domain"),
    "verify_file": say("域名校验文件", "domain verification file"),
}

APP = "应用管理 → 应用 → 自建 → 本应用"
APP_EN = "App Management → Apps → Self-built → this app"
CUSTOMER_CONTACT_FIX = say(
    "管理后台 → 客户与上下游 → 客户联系 → 客户 → 右上角「API」→「可调用接口的应用」→ 修改，"
    "勾选本应用（AgentId {agent_id}）",
    "Admin console → Customers & Partners → Customer Contact → Customers → 'API' (top right) "
    "→ 'Apps that can call the API' → Edit, and tick this app (AgentId {agent_id})",
)
TRUSTED_IP_FIX = say(
    f"管理后台 → {APP} → 开发者接口 → 企业可信IP → 配置，加入 {{ip}}（约一分钟后生效；"
    "须先设好可信域名或接收消息服务器）",
    f"Admin console → {APP_EN} → Developer API → Trusted corporate IP → Configure, add {{ip}} "
    "(takes about a minute; a trusted domain or message-receiving URL must be set first)",
)
TOKEN_FIX = say(
    "access_token 刚取得就被拒：确认 GUIDEBOT_WECOM_API_BASE 是 https://qyapi.weixin.qq.com"
    "（或只转发不改写的代理），服务器时钟准确；若管理员刚重置了 Secret，更新 GUIDEBOT_SECRET",
    "a fresh access_token was refused: make sure GUIDEBOT_WECOM_API_BASE is "
    "https://qyapi.weixin.qq.com (or a proxy that forwards unchanged) and the server's clock is "
    "right; if an admin just reset the Secret, update GUIDEBOT_SECRET",
)
AGENT_FIX = say(
    f"GUIDEBOT_AGENT_ID 与 GUIDEBOT_SECRET 须是同一个自建应用的：{APP} 页面上的 AgentId 与 "
    "Secret（不是「通讯录同步」或「客户联系」的 Secret）",
    f"GUIDEBOT_AGENT_ID and GUIDEBOT_SECRET must be the same self-built app's: the AgentId and "
    f"Secret on {APP_EN} (not the Contacts Sync or Customer Contact secret)",
)
VISIBLE_FIX = say(
    f"管理后台 → {APP} → 可见范围 → 编辑，加入各门店所在的部门",
    f"Admin console → {APP_EN} → Visible range → Edit, add the stores' departments",
)
UNREACHABLE_FIX = say(
    "确认本服务器能以 HTTPS 访问 {base}（出站防火墙、DNS、代理）；GUIDEBOT_WECOM_API_BASE "
    "通常是 https://qyapi.weixin.qq.com",
    "make sure this server reaches {base} over HTTPS (outbound firewall, DNS, proxy); "
    "GUIDEBOT_WECOM_API_BASE is normally https://qyapi.weixin.qq.com",
)
FREQUENCY_FIX = say(
    "稍后再试：企业微信按分钟、小时限频，反复用错 Secret 会封 IP 一小时",
    "try again later: WeCom limits calls per minute and hour, and blocks an IP for an hour "
    "after repeated wrong secrets",
)
CREDENTIAL_FIXES: dict[int, tuple[Say, Say]] = {
    40013: (
        say("40013 企业ID不对", "40013 invalid corp ID"),
        say(
            "管理后台 → 我的企业 → 企业信息 → 最下方「企业ID」，填入 GUIDEBOT_CORP_ID",
            "Admin console → My Company → Company Information → 'Company ID' at the bottom; "
            "put it in GUIDEBOT_CORP_ID",
        ),
    ),
    40001: (
        say(
            "40001 Secret 不对：不是本企业这个应用的，或已被重置",
            "40001 invalid secret: not this corp's app secret, or it was reset",
        ),
        say(
            f"管理后台 → {APP} → Secret「查看」（发到管理员的企业微信），填入 GUIDEBOT_SECRET；"
            "要本自建应用的 Secret，不是「通讯录同步」或「客户联系」的",
            f"Admin console → {APP_EN} → Secret 'View' (sent to the admin's WeCom), put it in "
            "GUIDEBOT_SECRET; use this self-built app's Secret, not Contacts Sync's or Customer "
            "Contact's",
        ),
    ),
}


def refusal(check: str, errcode: int, errmsg: str, *, agent_id: int, base: str) -> tuple[Say, Say]:
    """The cause and the fix for a WeCom error met by `check`."""
    if errcode == 60020:
        ip = _caller_ip(errmsg)
        cause = say(
            f"60020 本服务器的出口 IP {ip} 不在应用的企业可信IP中",
            f"60020 this server's address {ip} is not among the app's trusted IPs",
        )
        return cause, _format(TRUSTED_IP_FIX, ip=ip)
    if errcode == 48002 and check in ("customer_contact", "contact_ways"):
        cause = say(
            "48002 本应用不在客户联系的「可调用接口的应用」里（Secret 是对的）",
            "48002 this app is not among Customer Contact's apps that can call the API "
            "(the secret itself is right)",
        )
        return cause, _format(CUSTOMER_CONTACT_FIX, agent_id=agent_id)
    if errcode in (40014, 42001):
        return say(f"{errcode} access_token 无效", f"{errcode} access_token refused"), TOKEN_FIX
    if errcode in (301002, 40056):
        cause = say(
            f"{errcode} Secret 不是 AgentId {agent_id} 这个应用的",
            f"{errcode} the Secret is not app {agent_id}'s",
        )
        return cause, AGENT_FIX
    if errcode in CREDENTIAL_FIXES:
        return CREDENTIAL_FIXES[errcode]
    if errcode == 60011:
        cause = say("60011 部门或成员不在应用的可见范围", "60011 not in the app's visible range")
        return cause, VISIBLE_FIX
    if errcode == 45009:
        return say("45009 调用太频繁", "45009 called too often"), FREQUENCY_FIX
    if errcode == -1:
        cause = say(f"连不上企业微信：{errmsg}", f"WeCom could not be reached: {errmsg}")
        return cause, _format(UNREACHABLE_FIX, base=base)
    cause = say(f"企业微信答复 {errcode}：{errmsg}", f"WeCom answered {errcode}: {errmsg}")
    fix = say(
        f"查错误码说明 https://open.work.weixin.qq.com/devtool/query?e={errcode}",
        f"look the code up at https://open.work.weixin.qq.com/devtool/query?e={errcode}",
    )
    return cause, fix


def _caller_ip(errmsg: str) -> str:
    marker = "from ip:"
    if marker not in errmsg:
        return "?"
    return errmsg.split(marker, 1)[1].strip().split(",")[0].split()[0]


def _format(text: Say, **values: object) -> Say:
    return Say(text.zh.format(**values), text.en.format(**values))
