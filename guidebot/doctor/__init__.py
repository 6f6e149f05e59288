"""`guidebot doctor`: every precondition of going live, checked against the configured WeCom.

Each check says ✓ or ✗, the cause, and for a ✗ the admin-console step that fixes it, in
Chinese then English (guidebot.doctor.texts). The checks (guidebot.doctor.checks, web_checks):

    credentials       gettoken: 40013 (corp ID) and 40001 (secret) told apart
    trusted_ip        agent/get from this server: 60020 names the address to add
    app               agent/get answers for GUIDEBOT_AGENT_ID (the secret is that app's)
    customer_contact  get_follow_user_list: 48002 = not among 客户联系's callable apps
    contact_ways      list_contact_way
    address_book      department/list and user/list
    jssdk             get_jsapi_ticket and ticket/get?type=agent_config
    callback          GET {GUIDEBOT_PUBLIC_URL}/wecom/callback with an echostr, as WeCom does
    trusted_domain    agent/get's redirect_domain is GUIDEBOT_PUBLIC_URL's host
    verify_file       each WW_verify_*.txt of GUIDEBOT_WECOM_VERIFY_DIR served at the root

A check whose prerequisite failed is reported ✗ "not checked" rather than with a second,
misleading cause. The exit status is 1 when any check failed.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TextIO

import aiohttp

from guidebot.config import Settings
from guidebot.doctor import checks, web_checks
from guidebot.doctor.checks import Context, Outcome
from guidebot.doctor.texts import TITLES, Say, say
from guidebot.wecom.client import WeComClient
from guidebot.wecom.credentials import MemoryCredentialStore

__all__ = ["CHECKS", "Result", "doctor_command", "render_json", "render_text", "run_checks"]

Check = Callable[[Context], Awaitable[Outcome]]
WECOM = ("credentials", "trusted_ip")

# (name, the check, the checks it needs to have passed), in the order they run and print.
CHECKS: tuple[tuple[str, Check, tuple[str, ...]], ...] = (
    ("credentials", checks.credentials, ()),
    ("trusted_ip", checks.trusted_ip, ("credentials",)),
    ("app", checks.app, WECOM),
    ("customer_contact", checks.customer_contact, WECOM),
    ("contact_ways", checks.contact_ways, (*WECOM, "customer_contact")),
    ("address_book", checks.address_book, WECOM),
    ("jssdk", checks.jssdk, WECOM),
    ("callback", web_checks.callback, ()),
    ("trusted_domain", checks.trusted_domain, (*WECOM, "app")),
    ("verify_file", web_checks.verify_file, ()),
)


@dataclass(frozen=True, slots=True)
class Result:
    check: str
    outcome: Outcome
    skipped: bool = False

    @property
    def title(self) -> Say:
        return TITLES[self.check]


async def run_checks(settings: Settings, *, wait: float = 10.0) -> list[Result]:
    """Every check, in order, against the configured WeCom and public URL."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        wecom = WeComClient(
            http,
            corp_id=settings.corp_id,
            secret=settings.secret,
            agent_id=settings.agent_id,
            api_base=settings.wecom_api_base,
            credentials=MemoryCredentialStore(),  # a fresh token: what WeCom says now
            timeout=wait,
            max_retries=1,
        )
        ctx = Context(settings, wecom, http)
        results: dict[str, Result] = {}
        for name, check, needs in CHECKS:
            failed = [n for n in needs if not results[n].outcome.ok]
            if failed:
                first = TITLES[failed[0]]
                cause = say(f"未检查：先修好「{first.zh}」", f"not checked: fix '{first.en}' first")
                results[name] = Result(name, Outcome(False, cause), skipped=True)
                continue
            results[name] = Result(name, await check(ctx))
        return list(results.values())


def render_text(settings: Settings, results: list[Result]) -> str:
    lines = [
        f"guidebot doctor · 企业 {settings.corp_id} · 应用 {settings.agent_id} · "
        f"{settings.public_url}"
    ]
    for result in results:
        outcome, title = result.outcome, result.title
        mark = "✓" if outcome.ok else "✗"
        lines.append(f"{mark} {title.zh} / {title.en}: {outcome.cause.zh} / {outcome.cause.en}")
        if outcome.fix is not None:
            lines.append(f"    修复：{outcome.fix.zh}")
            lines.append(f"    Fix: {outcome.fix.en}")
    failed = sum(not r.outcome.ok for r in results)
    if failed:
        lines.append(
            f"{len(results)} 项检查中 {failed} 项未通过 / {failed} of {len(results)} failed"
        )
    else:
        lines.append(f"{len(results)} 项检查全部通过 / all {len(results)} checks passed")
    return "\n".join(lines)


def render_json(settings: Settings, results: list[Result]) -> str:
    document = {
        "ok": all(r.outcome.ok for r in results),
        "corp_id": settings.corp_id,
        "agent_id": settings.agent_id,
        "public_url": settings.public_url,
        "checks": [
            {
                "check": r.check,
                "title": r.title.as_json(),
                "ok": r.outcome.ok,
                "skipped": r.skipped,
                "errcode": r.outcome.errcode,
                "cause": r.outcome.cause.as_json(),
                "fix": r.outcome.fix.as_json() if r.outcome.fix else None,
            }
            for r in results
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=2)


async def doctor_command(settings: Settings, fmt: str, out: TextIO) -> int:
    """Run the checks and print them; 0 when every check passed, else 1."""
    results = await run_checks(settings)
    render = render_json if fmt == "json" else render_text
    print(render(settings, results), file=out, flush=True)
    return 0 if all(r.outcome.ok for r in results) else 1
