"""Callback delivery exactly as WeCom does it: encrypted, signed, 5 s timeout, 3 tries."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterable
from typing import Any

import aiohttp

from guidebot.wecom.crypto import CallbackCrypto, CryptoError, read_envelope

from .state import SimState

URL_VERIFY_TIMEOUT = 1.0  # WeCom wants the echostr back within one second

# Timeouts are cut with asyncio.timeout, not aiohttp.ClientTimeout: aiohttp rounds a timeout of
# 5 s or more up to the loop's next whole second, so "total=5" would fire at 5.0-6.0 s, and
# WeCom "在五秒内收不到响应会断掉连接" (doc 90238).


def cdata(value: str) -> str:
    # "]]>" cannot appear inside CDATA; split it across two sections as XML requires.
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def event_xml(
    corp_id: str,
    create_time: int,
    event: str,
    fields: Iterable[tuple[str, str | int | None]],
    *,
    plain: Iterable[str] = (),
) -> str:
    """An event plaintext in WeCom's layout: one element a line, absent fields omitted.

    `plain` names fields WeCom writes without CDATA (e.g. change_contact's ChangeType).
    """
    plain = set(plain)
    lines = [
        f"<xml><ToUserName>{cdata(corp_id)}</ToUserName>",
        f"<FromUserName>{cdata('sys')}</FromUserName>",
        f"<CreateTime>{create_time}</CreateTime>",
        f"<MsgType>{cdata('event')}</MsgType>",
        f"<Event>{cdata(event)}</Event>",
    ]
    for name, value in fields:
        if value is None:
            continue
        if isinstance(value, int) or name in plain:
            lines.append(f"<{name}>{value}</{name}>")
        else:
            lines.append(f"<{name}>{cdata(value)}</{name}>")
    lines.append("</xml>")
    return "\n".join(lines)


def contact_event_xml(
    corp_id: str,
    create_time: int,
    change_type: str,
    userid: str,
    external_userid: str,
    **extra: str | None,
) -> str:
    """change_external_contact; `extra` in WeCom's order: State, WelcomeCode, Source, FailReason."""
    fields: list[tuple[str, str | int | None]] = [("ChangeType", change_type)]
    if change_type == "transfer_fail":
        fields.append(("FailReason", extra.get("FailReason")))
    fields += [("UserID", userid), ("ExternalUserID", external_userid)]
    fields += [(name, extra.get(name)) for name in ("State", "WelcomeCode", "Source")]
    return event_xml(corp_id, create_time, "change_external_contact", fields)


def text_message_xml(
    corp_id: str, userid: str, create_time: int, content: str, msg_id: int, agent_id: int
) -> str:
    return "\n".join(
        [
            f"<xml><ToUserName>{cdata(corp_id)}</ToUserName>",
            f"<FromUserName>{cdata(userid)}</FromUserName>",
            f"<CreateTime>{create_time}</CreateTime>",
            f"<MsgType>{cdata('text')}</MsgType>",
            f"<Content>{cdata(content)}</Content>",
            f"<MsgId>{msg_id}</MsgId>",
            f"<AgentID>{agent_id}</AgentID>",
            "</xml>",
        ]
    )


class CallbackDeliverer:
    """POSTs encrypted callbacks to the configured URL and reads back passive replies."""

    def __init__(self, state: SimState, session: aiohttp.ClientSession) -> None:
        self._state = state
        self._session = session

    def _crypto(self) -> CallbackCrypto:
        identity = self._state.config.identity
        return CallbackCrypto(identity.token, identity.aes_key, identity.corp_id)

    async def deliver(self, plaintext: str) -> dict[str, Any]:
        """Deliver one plaintext; every retry re-encrypts the same plaintext afresh."""
        config = self._state.config
        result: dict[str, Any] = {"delivered": False, "attempts": [], "reply": None}
        if not config.callback_url:
            result["error"] = "no callback_url configured"
            self._record(plaintext, result)
            return result
        crypto = self._crypto()
        identity = config.identity
        for _ in range(config.callback_tries):
            timestamp = str(int(config.clock()))
            nonce = str(secrets.randbelow(10**10))
            message = crypto.encrypt(plaintext, timestamp=timestamp, nonce=nonce)
            body = (
                f"<xml><ToUserName>{cdata(identity.corp_id)}</ToUserName>"
                f"<Encrypt>{cdata(message.encrypt)}</Encrypt>"
                f"<AgentID>{cdata(str(identity.agent_id))}</AgentID></xml>"
            )
            params = {"msg_signature": message.signature, "timestamp": timestamp, "nonce": nonce}
            started = time.perf_counter()
            try:
                async with (
                    asyncio.timeout(config.callback_timeout),
                    self._session.post(
                        config.callback_url,
                        params=params,
                        data=body.encode(),
                        headers={"Content-Type": "text/xml; charset=utf-8"},
                    ) as response,
                ):
                    status = response.status
                    reply_body = await response.read()
            except (TimeoutError, aiohttp.ClientError) as exc:
                result["attempts"].append(
                    {"status": None, "error": _describe(exc), "elapsed_ms": _ms(started)}
                )
                continue
            ok = status == 200  # WeCom judges by the status alone, whatever the body
            result["attempts"].append(
                {
                    "status": status,
                    "error": None if ok else f"HTTP {status}",
                    "elapsed_ms": _ms(started),
                }
            )
            if ok:
                result["delivered"] = True
                self._open_reply(crypto, reply_body, result)
                break
        self._record(plaintext, result)
        return result

    def _open_reply(self, crypto: CallbackCrypto, body: bytes, result: dict[str, Any]) -> None:
        if not body.strip():
            return
        try:
            try:
                envelope = read_envelope(body)
            except CryptoError as exc:
                raise CryptoError(f"reply is not an encrypted envelope ({exc.reason})") from exc
            missing = [
                k for k in ("Encrypt", "MsgSignature", "TimeStamp", "Nonce") if not envelope.get(k)
            ]
            if missing:
                raise CryptoError(f"reply is not an encrypted envelope (no {', '.join(missing)})")
            result["reply"] = crypto.decrypt(
                envelope["MsgSignature"],
                envelope["TimeStamp"],
                envelope["Nonce"],
                envelope["Encrypt"],
            )
        except CryptoError as exc:
            result["reply_error"] = exc.reason
            result["reply_body"] = body[:2000].decode("utf-8", "replace")

    def _record(self, plaintext: str, result: dict[str, Any]) -> None:
        self._state.deliveries.append(
            {"time": self._state.now(), "plaintext": plaintext, "result": result}
        )

    async def verify_url(self) -> dict[str, Any]:
        """WeCom's GET verification: the server must echo the decrypted echostr, exactly."""
        config = self._state.config
        if not config.callback_url:
            return {"ok": False, "error": "no callback_url configured"}
        expected = str(secrets.randbelow(9 * 10**18) + 10**18)
        timestamp = str(int(config.clock()))
        nonce = str(secrets.randbelow(10**10))
        message = self._crypto().encrypt(expected, timestamp=timestamp, nonce=nonce)
        params = {
            "msg_signature": message.signature,
            "timestamp": timestamp,
            "nonce": nonce,
            "echostr": message.encrypt,
        }
        started = time.perf_counter()
        try:
            async with (
                asyncio.timeout(URL_VERIFY_TIMEOUT),
                self._session.get(config.callback_url, params=params) as response,
            ):
                status = response.status
                raw = await response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            return {
                "ok": False,
                "status": None,
                "error": _describe(exc),
                "expected": expected,
                "elapsed_ms": _ms(started),
            }
        body = raw.decode("utf-8", "replace")
        return {
            "ok": status == 200 and raw == expected.encode(),
            "status": status,
            "body": body[:2000],
            "expected": expected,
            "elapsed_ms": _ms(started),
        }


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
