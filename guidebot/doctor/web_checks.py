"""The checks through guidebot's public URL, as WeCom reaches it: the callback URL's echostr
round trip (doc 90930 回调配置: verify the signature, decrypt, answer the plaintext bare within
one second) and the WW_verify_*.txt files of the app's 可信域名, served at the domain's root."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from guidebot.doctor.checks import Context, Outcome, passed
from guidebot.doctor.texts import say
from guidebot.wecom.crypto import CallbackCrypto

__all__ = ["callback", "verify_file"]

# WeCom waits one second for the echostr; the doctor waits a little longer to tell "slow" from
# "no answer".
ECHO_DEADLINE = 1.0
WAIT = 10.0
VERIFY_NAME = re.compile(r"WW_verify_[A-Za-z0-9]{1,64}\.txt")

CALLBACK_FIX = say(
    "管理后台 → 应用管理 → 应用 → 自建 → 本应用 → 接收消息 → 设置API接收：URL 填 {url}，"
    "Token 与 EncodingAESKey 填 GUIDEBOT_TOKEN 与 GUIDEBOT_AES_KEY 的值；这个地址须能从公网以 "
    "HTTPS 访问（DNS、防火墙、反向代理转发到 guidebot）",
    "Admin console → App Management → Apps → Self-built → this app → Receive Messages → Set "
    "API receiving: URL {url}, Token and EncodingAESKey the values of GUIDEBOT_TOKEN and "
    "GUIDEBOT_AES_KEY; the URL must be reachable from the internet (DNS, firewall, a reverse "
    "proxy forwarding to guidebot)",
)


def callback_url(ctx: Context) -> str:
    return f"{ctx.settings.public_url.rstrip('/')}/wecom/callback"


async def callback(ctx: Context) -> Outcome:
    """GET the callback URL as WeCom does when the admin saves it, and read the echo back."""
    settings, url = ctx.settings, callback_url(ctx)
    crypto = CallbackCrypto(settings.token, settings.aes_key, settings.corp_id)
    expected = str(secrets.randbelow(10**18) + 10**18)  # WeCom's echostr is a number
    timestamp, nonce = str(int(time.time())), str(secrets.randbelow(10**9))
    message = crypto.encrypt(expected, timestamp=timestamp, nonce=nonce)
    query = {
        "msg_signature": message.signature,
        "timestamp": timestamp,
        "nonce": nonce,
        "echostr": message.encrypt,
    }
    fix = say(CALLBACK_FIX.zh.format(url=url), CALLBACK_FIX.en.format(url=url))
    started = time.monotonic()
    try:
        async with ctx.http.get(
            url, params=query, timeout=aiohttp.ClientTimeout(total=WAIT), allow_redirects=False
        ) as response:
            body = await response.text()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        cause = say(f"{url} 无法访问：{reason}", f"{url} could not be reached: {reason}")
        return Outcome(False, cause, fix)
    took = time.monotonic() - started
    if status != 200 or body != expected:
        shown = body[:80].strip() or "（空）"
        cause = say(
            f"{url} 答复 HTTP {status}「{shown}」，不是解密后的 echostr：Token、EncodingAESKey "
            "或企业ID与管理后台不一致，或地址没有转发到 guidebot",
            f"{url} answered HTTP {status} '{shown}', not the decrypted echostr: the Token, "
            "EncodingAESKey or corp ID differ from the console's, or the URL does not reach "
            "guidebot",
        )
        return Outcome(False, cause, fix)
    if took > ECHO_DEADLINE:
        cause = say(
            f"{url} 用了 {took:.1f} 秒才答复，企业微信只等 1 秒",
            f"{url} took {took:.1f} s to answer; WeCom waits 1 s",
        )
        return Outcome(False, cause, fix)
    return passed(f"{url} 正确答复了 echostr", f"{url} echoed the echostr back")


async def verify_file(ctx: Context) -> Outcome:
    """Each WW_verify_*.txt in GUIDEBOT_WECOM_VERIFY_DIR is served, unchanged, at the root of
    GUIDEBOT_PUBLIC_URL's domain (where WeCom fetches it)."""
    folder = ctx.settings.wecom_verify_dir
    files = await asyncio.to_thread(_verify_files, folder)
    if not files:
        cause = say(
            f"GUIDEBOT_WECOM_VERIFY_DIR（{folder or '未设置'}）里没有 WW_verify_*.txt",
            f"no WW_verify_*.txt in GUIDEBOT_WECOM_VERIFY_DIR ({folder or 'not set'})",
        )
        return Outcome(False, cause, _verify_fix(ctx))
    parts = urlsplit(ctx.settings.public_url)
    for path, content in files:
        url = f"{parts.scheme}://{parts.netloc}/{path.name}"
        try:
            async with ctx.http.get(
                url, timeout=aiohttp.ClientTimeout(total=WAIT), allow_redirects=False
            ) as response:
                served = await response.read() if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            served, reason = None, str(exc) or type(exc).__name__
        else:
            reason = f"HTTP {response.status}"
        if served != content:
            if served is not None:
                reason = "内容与文件不同 / the content differs from the file"
            cause = say(f"{url} 没有提供校验文件：{reason}", f"{url} does not serve it: {reason}")
            return Outcome(False, cause, _verify_fix(ctx))
    names = ", ".join(p.name for p, _ in files)
    return passed(f"{names} 已在域名根目录提供", f"{names} served at the domain's root")


def _verify_files(folder: str) -> list[tuple[Path, bytes]]:
    if not folder or not Path(folder).is_dir():
        return []
    return [
        (path, path.read_bytes())
        for path in sorted(Path(folder).iterdir())
        if VERIFY_NAME.fullmatch(path.name) and path.is_file() and path.stat().st_size <= 4096
    ]


def _verify_fix(ctx: Context):
    host = urlsplit(ctx.settings.public_url).netloc
    return say(
        "在可信域名的设置页（应用管理 → 本应用 → 开发者接口 → 网页授权及JS-SDK）下载 "
        "WW_verify_….txt，放进一个文件夹，设 GUIDEBOT_WECOM_VERIFY_DIR 为它并重启 guidebot；"
        f"guidebot 会在 {host} 的根目录提供它。若有反向代理，把 /WW_verify_*.txt 也转发给 guidebot",
        "download WW_verify_….txt where the trusted domain is set (App Management → this app → "
        "Developer API → Web authorization and JS-SDK), put it in a folder, set "
        "GUIDEBOT_WECOM_VERIFY_DIR to it and restart guidebot; guidebot serves it at the root of "
        f"{host}. Behind a reverse proxy, forward /WW_verify_*.txt to guidebot too",
    )
