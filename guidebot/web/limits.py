"""How much of a request body the server takes, and for how long it waits for it.

Every route has a size: the app's default (the callback's 256 KiB) unless it declares its own
(an API route's `max_body`: small for JSON, large only where files travel). A body announced
larger than that is answered 413 before a byte of it is read; one that grows larger while
being read is cut off at the limit.

Every body has a deadline, GUIDEBOT_BODY_TIMEOUT_SECONDS from when its request's headers were
read: a client that trickles its body (one byte every ten seconds holds a connection for as long
as it likes otherwise) gets a 408 and the connection is closed. The deadline does not read the
body for the handler: it makes a read still waiting when time is up fail, and a body nobody
reads is dropped with its connection.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.streams import StreamReader

from guidebot.web.api.common import View
from guidebot.web.api.errors import is_api
from guidebot.web.keys import SETTINGS
from guidebot.web.responses import error_response

log = logging.getLogger(__name__)


class BodyTimeout(asyncio.TimeoutError):
    """The body did not arrive in time. A TimeoutError, so that aiohttp, reading what is left
    of a body after its response (its "lingering close"), stops and closes the connection."""


def _expire(payload: StreamReader, seconds: float) -> None:
    if not payload.is_eof():
        payload.set_exception(BodyTimeout(f"the body did not arrive within {seconds:g} s"))


def _drop(payload: StreamReader) -> None:
    """What is left of a refused body is not read: aiohttp closes the connection at once
    instead of reading on for its lingering time."""
    if not payload.is_eof():
        payload.set_exception(BodyTimeout("the body was refused"))


def too_large(request: web.Request, limit: int) -> web.StreamResponse:
    if is_api(request):
        response: web.StreamResponse = error_response(
            413, "too_large", f"the body is larger than this operation takes ({limit} bytes)"
        )
    else:
        response = web.Response(
            status=413, text=f"请求体过大（上限 {limit} 字节）/ request body over {limit} bytes"
        )
    response.force_close()
    _drop(request.content)
    return response


def timed_out(request: web.Request, seconds: float) -> web.StreamResponse:
    log.warning("%s %s: the body did not arrive within %g s", request.method, request.path, seconds)
    if is_api(request):
        response: web.StreamResponse = error_response(
            408, "timeout", f"the body did not arrive within {seconds:g} seconds"
        )
    else:
        response = web.Response(
            status=408, text=f"请求体未在 {seconds:g} 秒内送达 / body not received in time"
        )
    response.force_close()
    return response


@web.middleware
async def body_limits(request: web.Request, handler: View) -> web.StreamResponse:
    if not request.body_exists:
        return await handler(request)
    limit = getattr(request.match_info.handler, "body_limit", None)
    if limit is not None:
        if request.content_length is not None and request.content_length > limit:
            return too_large(request, limit)
        request = request.clone(client_max_size=limit)
    else:
        limit = request.client_max_size
    seconds = request.app[SETTINGS].body_timeout_seconds
    payload = request.content
    deadline = asyncio.get_running_loop().call_later(seconds, _expire, payload, seconds)
    try:
        return await handler(request)
    except BodyTimeout:
        return timed_out(request, seconds)
    except web.HTTPRequestEntityTooLarge:
        return too_large(request, limit)
    finally:
        # A body still arriving keeps its deadline, so a handler that never read it does not
        # leave aiohttp waiting for the rest.
        if payload.is_eof():
            deadline.cancel()
