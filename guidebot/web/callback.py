"""The WeCom callback URL: verify, decrypt, parse, store in the inbox, then acknowledge.

Every malformed request gets a 4xx and one log line naming the reason; nothing is stored.
A well-formed one is answered 200 with an empty body only after its inbox row is committed.
"""

from __future__ import annotations

import logging
import random
import re
import time

from aiohttp import web

from guidebot.intake.inbox import InboxEntry, InboxRefused, InboxUnavailable
from guidebot.logs import log_context
from guidebot.web.keys import CRYPTO, INBOX, TELEMETRY
from guidebot.web.passive_reply import passive_reply
from guidebot.wecom.crypto import MAX_BODY_BYTES, CryptoError, SignatureError, encrypted_field
from guidebot.wecom.events import EventParseError, TextMessage, parse_event

log = logging.getLogger(__name__)

MAX_CALLBACK_BYTES = MAX_BODY_BYTES
_SIGNED_PARAMS = ("msg_signature", "timestamp", "nonce")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class CallbackRejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _signed_params(request: web.Request) -> tuple[str, str, str]:
    missing = [name for name in _SIGNED_PARAMS if not request.query.get(name)]
    if missing:
        raise CallbackRejected(400, f"missing query parameter {', '.join(missing)}")
    return tuple(request.query[name] for name in _SIGNED_PARAMS)  # type: ignore[return-value]


def _reject(request: web.Request, exc: CallbackRejected | CryptoError) -> web.Response:
    if isinstance(exc, CallbackRejected):
        status = exc.status
    else:
        status = 403 if isinstance(exc, SignatureError) else 400
    log.warning("callback rejected (%s %s): %s", request.method, status, exc.reason)
    request.app[TELEMETRY].callback_outcome["rejected"].inc()
    return web.Response(status=status, text=exc.reason)


async def verify_url(request: web.Request) -> web.Response:
    """WeCom's URL check: answer the decrypted echostr, bare, or nothing at all."""
    try:
        signature, timestamp, nonce = _signed_params(request)
        echostr = request.query.get("echostr", "").replace(" ", "+")  # a raw '+' arrives as ' '
        if not echostr:
            raise CallbackRejected(400, "missing query parameter echostr")
        plaintext = request.app[CRYPTO].decrypt(signature, timestamp, nonce, echostr)
    except (CallbackRejected, CryptoError) as exc:
        return _reject(request, exc)
    return web.Response(text=plaintext)


async def receive(request: web.Request) -> web.Response:
    with log_context(request_id=_request_id(request)):
        return await _receive(request)


def _request_id(request: web.Request) -> str:
    """The load balancer's X-Request-Id when it looks like one, else a fresh id.

    It only ties a request's log lines together, so it need not be unguessable: the fast
    generator, not the OS's (a getrandom call per callback was 2.6% of the server's samples
    in a burst of adds)."""
    given = request.headers.get("X-Request-Id", "")
    return given if _REQUEST_ID.fullmatch(given) else f"{random.getrandbits(64):016x}"


async def _receive(request: web.Request) -> web.Response:
    started = time.perf_counter()  # real time: the telemetry measures the real handling
    try:
        signature, timestamp, nonce = _signed_params(request)
        body = await request.read()
        plaintext = request.app[CRYPTO].decrypt(signature, timestamp, nonce, encrypted_field(body))
        event = parse_event(plaintext)
    except web.HTTPRequestEntityTooLarge:
        return _reject(request, CallbackRejected(413, f"body over {MAX_CALLBACK_BYTES} bytes"))
    except (CallbackRejected, CryptoError) as exc:
        return _reject(request, exc)
    except EventParseError as exc:
        return _reject(request, CallbackRejected(400, f"bad event: {exc}"))
    try:
        await request.app[INBOX].store(InboxEntry.of(event, plaintext))
    except InboxRefused as exc:
        # This entry alone: the callbacks committed with it are acknowledged as usual.
        return _reject(request, CallbackRejected(400, f"event cannot be stored: {exc}"))
    except InboxUnavailable as exc:
        # Not stored means not acknowledged: WeCom retries a 503.
        log.error("callback not stored, answering 503: %s", exc)
        request.app[TELEMETRY].callback_outcome["unavailable"].inc()
        return web.Response(status=503, text="inbox unavailable")
    request.app[TELEMETRY].callback_outcome["accepted"].inc()
    reply = None
    if isinstance(event, TextMessage):
        # A guide wrote to the app: the bot may answer in this response (a passive reply,
        # within a time budget); otherwise it answers later by message/send.
        reply = await passive_reply(request, event)
    request.app[TELEMETRY].callback_seconds.observe(time.perf_counter() - started)
    if reply is not None:
        return web.Response(status=200, text=reply, content_type="text/xml")
    return web.Response(status=200)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/wecom/callback", verify_url)
    app.router.add_post("/wecom/callback", receive)
