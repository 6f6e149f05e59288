"""The async WeCom server-API client: one aiohttp session, shared tokens, honest retries.

This is WeCom's protocol and nothing of guidebot's: it imports nothing from guidebot outside
``guidebot.wecom``. The credential store is passed in (guidebot.db.credentials implements it over
the database; :class:`~guidebot.wecom.credentials.MemoryCredentialStore` serves one process).

Construction::

    client = WeComClient(session, corp_id=..., secret=..., agent_id=..., credentials=store)

The client uses the aiohttp session it is given and never closes it. An optional
``on_error(api, errcode)`` callback hears of every error a call ends with (WeCom's errcode, or -1
for transport failures), once per call, e.g. to count them in metrics; cooldown and deadline
fast-fails, which never reach WeCom, are not reported.

Errors
------
Every failure is a :class:`WeComError` with ``api`` (the path after ``/cgi-bin/``, e.g.
``"externalcontact/get"``), ``errcode`` and ``errmsg``. Judge by ``errcode`` only.

* WeCom answered with a non-zero errcode: ``WeComError(api, errcode, errmsg)`` as WeCom sent it
  (e.g. 41051 welcome already sent, 84061 no relation, 40001 wrong secret).
* Transport failure (timeout, connection error, HTTP 5xx, unreadable answer) that persisted
  through every retry, or a non-200/non-5xx HTTP status: :class:`WeComTransportError`, a subclass
  with ``errcode == -1`` and an ``errmsg`` saying what happened. Nothing was done, or for safe
  (read / idempotent) APIs it does not matter; the caller may try again later.
* A non-idempotent call whose request may have reached WeCom without an answer:
  :class:`WeComUncertain`, a subclass with ``errcode == -1``. WeCom may or may not have acted;
  the caller must not resend blindly (mark the row ``unknown`` and reconcile). It is *not* a
  subclass of WeComTransportError, so ``except WeComTransportError: retry_later()`` cannot
  double-send by accident.
* 45009 (frequency limit): the API is put in a cooldown (``cooldown``, default 60 s on the
  injected clock); until it ends every call to that API below URGENT fails fast with
  ``WeComError(api, 45009, "... (not sent)")`` without reaching WeCom (see Scheduling).
* A call not made by its ``deadline``: :class:`WeComDeadlineExceeded`, errcode -1, "(not sent)".

Scheduling (guidebot.wecom.scheduler)
-------------------------------------
Every call has a :class:`~guidebot.wecom.scheduler.Priority`: URGENT for send_welcome_msg and
gettoken, BACKGROUND for what nobody waits on (:data:`BACKGROUND_APIS`: profile fetches, tags,
reminders on message/send, reconciliation, directory sync, polling), NORMAL otherwise; the
methods a caller may need to rank differently take ``priority=``. A call may carry a
``deadline`` (an instant on the injected clock, or a tz-aware datetime): it is not made past it,
and a retry whose backoff would end past it is not tried.

* Pacing: one token bucket per API (WeCom's budget is per corp and per API, doc 90454), so no
  60 s window holds more than ``calls_per_minute`` calls to one API and a profile fetch never
  spends a welcome's budget. Waiters are served by priority, then earliest deadline, then
  arrival; one whose deadline passes while it waits leaves without taking a turn.
* In flight: at most ``max_in_flight`` calls (default: the session's connection pool, at most
  100), the last quarter of them kept for URGENT calls, so a welcome never queues behind slow
  reads; waiters are served in the same order.
* After a 45009 on an API, calls below URGENT to it fail fast for the cooldown (and those
  queued for it leave at once); URGENT calls still try it, one at a time, and the first one
  WeCom accepts ends the cooldown (a welcome's 20 s code would not outlive 60 s of waiting).
* 45033 (too many concurrent calls to one API) is retried with backoff by the call that met it.

Retry rules
-----------
Retries use jittered exponential backoff (0.5 s doubling, capped at 8 s, times a random factor in
[0.5, 1)) through the injected ``sleep``, at most ``max_retries`` times after the first attempt.

Safe APIs (reads and idempotent writes such as mark_tag, remark, update_contact_way) retry on
errcode -1 and 45033, timeouts, connection errors, unreadable answers and HTTP 5xx.

Unsafe APIs are the ones where WeCom acts and a repeat could act twice: ``send_welcome_msg``,
``add_msg_template``, ``message/send``, ``transfer_customer``, ``resigned/transfer_customer``,
plus the creating calls ``add_contact_way`` and ``add_corp_tag``. They retry only when WeCom
certainly did not act:

* WeCom answered errcode -1 (busy) or 45033 (concurrency limit): it refused, so retry.
* The connection could not be established (``aiohttp.ClientConnectorError`` or a connect
  timeout): the request never left, so retry.
* 40014 / 42001 (token invalid or expired): WeCom refused, so refresh the token and retry once.

Anything after the request may have been sent (a read timeout, the server dropping the
connection, HTTP 5xx, an unreadable answer) raises :class:`WeComUncertain` at once, without a
retry. That includes a pooled keep-alive connection the server had already closed, which
aiohttp cannot tell apart from a drop after sending. ``send_app_message(..., at_least_once=True)``
opts a reminder out of this rule.

Access token and JS-SDK tickets
-------------------------------
They are cached in the credential store under ``access_token:{corp_id}:{agent_id}``,
``jsapi_ticket:{corp_id}:{agent_id}`` and ``agent_ticket:{corp_id}:{agent_id}``, so every
instance shares them. A stored credential's ``expires_at`` is the instant it stops being *used*:
WeCom's ``expires_in`` minus a 300 s margin (half the lifetime when that is shorter than 600 s).
One caller refreshes at a time: an asyncio.Lock inside the client, and the store's refresh lease
across clients and processes. A caller that loses the lease polls the store (50 ms, backing off
to 1 s) until the winner's value appears or the lease is free again, then tries again (and
gives up with WeComTransportError if a lease is not released within twice its length; the
holder renews it while its refresh goes on). On
40014/42001 the token is discarded compare-and-clear (``discard``), refreshed once and the call
retried once. A failed refresh (e.g. 40001 wrong secret, 40013 bad corp id) raises at once and
is remembered for 60 s (5 s for transport failures): callers in that window get the same error
without calling gettoken again, because WeCom blocks an IP that repeats a wrong secret.

The access token (and the secret) travel only in the query string; they are never put in a
body, an error message or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import re
import socket
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp

from guidebot.wecom.credentials import Credential, CredentialStore
from guidebot.wecom.scheduler import Admission, Gate, Lane, Priority, Rank, rank

__all__ = [
    "BACKGROUND_APIS",
    "DEFAULT_API_BASE",
    "UNSAFE_APIS",
    "URGENT_APIS",
    "AppMessageResult",
    "ContactWay",
    "Media",
    "MsgTemplateResult",
    "Page",
    "Priority",
    "WeComClient",
    "WeComDeadlineExceeded",
    "WeComError",
    "WeComTransportError",
    "WeComUncertain",
    "default_priority",
]

log = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://qyapi.weixin.qq.com"

# Calls where WeCom acts and a repeat could act twice (see the module docstring).
UNSAFE_APIS = frozenset(
    {
        "externalcontact/send_welcome_msg",
        "externalcontact/add_msg_template",
        "message/send",
        "externalcontact/transfer_customer",
        "externalcontact/resigned/transfer_customer",
        "externalcontact/add_contact_way",
        "externalcontact/add_corp_tag",
    }
)

# Who goes first when WeCom's budget is short (see guidebot.wecom.scheduler). URGENT: the
# welcome, whose code lives 20 s, and the token every call waits for. BACKGROUND: what nobody is
# waiting on (profile fetches, tags, reminders, reconciliation, directory sync, polling).
# Everything else (API-driven writes, tickets, uploads) is NORMAL.
URGENT_APIS = frozenset({"externalcontact/send_welcome_msg", "gettoken"})
BACKGROUND_APIS = frozenset(
    {
        "externalcontact/get",
        "externalcontact/list",
        "externalcontact/batch/get_by_user",
        "externalcontact/get_follow_user_list",
        "externalcontact/mark_tag",
        "externalcontact/get_corp_tag_list",
        "externalcontact/get_groupmsg_list_v2",
        "externalcontact/get_groupmsg_task",
        "externalcontact/get_groupmsg_send_result",
        "externalcontact/get_user_behavior_data",
        "externalcontact/transfer_result",
        "externalcontact/resigned/transfer_result",
        "message/send",
        "department/list",
        "user/list",
        "user/get",
    }
)

TOKEN_INVALID = frozenset({40014, 42001})
BUSY = frozenset({-1, 45033})
FREQUENCY_LIMIT = 45009

REFRESH_MARGIN = 300.0
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0
POLL_MIN = 0.05
POLL_MAX = 1.0
REFRESH_FAILURE_MEMO = 60.0
REFRESH_TRANSPORT_FAILURE_MEMO = 5.0

# Calls in flight per client unless the session's connection pool is smaller.
DEFAULT_MAX_IN_FLIGHT = 100
NO_TIME_TO_RETRY = "no time left to retry before its deadline"

USER_BEHAVIOR_MAX_USERS = 100
USER_BEHAVIOR_MAX_SPAN = 30 * 86_400

# A call's deadline: an instant on the client's clock (seconds) or a tz-aware datetime.
Deadline = float | datetime | None

_SECRET_QUERY = re.compile(r"(access_token|corpsecret)=[^&\s'\"]*", re.IGNORECASE)


def _redact(text: str) -> str:
    return _SECRET_QUERY.sub(r"\1=***", text)


# --------------------------------------------------------------------------------------- errors


class WeComError(Exception):
    """WeCom refused a call (errcode != 0), or the client gave up on it.

    Attributes: ``api`` (path after /cgi-bin/), ``errcode`` (int), ``errmsg`` (str).
    """

    def __init__(self, api: str, errcode: int, errmsg: str) -> None:
        super().__init__(api, errcode, errmsg)
        self.api = api
        self.errcode = errcode
        self.errmsg = errmsg

    def __str__(self) -> str:
        return f"WeCom {self.api}: errcode {self.errcode}: {self.errmsg}"


class WeComTransportError(WeComError):
    """No usable answer after every retry (timeout, connection error, HTTP status); errcode -1."""


class WeComUncertain(WeComError):
    """A non-idempotent call may have reached WeCom without an answer; errcode -1.

    WeCom may have acted. Do not resend blindly: record the outcome as unknown and reconcile.
    """


class WeComDeadlineExceeded(WeComError):
    """The call's deadline passed before it could be made; errcode -1. Nothing was sent."""


def default_priority(api: str) -> Priority:
    """The priority a call to ``api`` gets unless the caller names one."""
    if api in URGENT_APIS:
        return Priority.URGENT
    if api in BACKGROUND_APIS:
        return Priority.BACKGROUND
    return Priority.NORMAL


# ---------------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a cursor-paginated answer; ``next_cursor`` is "" on the last page."""

    items: list[dict[str, Any]]
    next_cursor: str


@dataclass(frozen=True, slots=True)
class MsgTemplateResult:
    msgid: str
    fail_list: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ContactWay:
    config_id: str
    qr_code: str | None


@dataclass(frozen=True, slots=True)
class AppMessageResult:
    msgid: str | None
    invaliduser: tuple[str, ...]
    invalidparty: tuple[str, ...]
    invalidtag: tuple[str, ...]
    unlicenseduser: tuple[str, ...]
    response_code: str | None


@dataclass(frozen=True, slots=True)
class Media:
    type: str
    media_id: str
    created_at: int


# ------------------------------------------------------------------------------- internals


class _Transient(Exception):
    """A transport failure of one attempt. ``sent``: the request may have reached WeCom."""

    def __init__(self, reason: str, *, sent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sent = sent


@dataclass(frozen=True, slots=True)
class _Failure:
    error: WeComError
    until: float


@dataclass(frozen=True, slots=True)
class _Multipart:
    field: str
    filename: str
    data: bytes
    content_type: str

    def form(self) -> aiohttp.FormData:
        form = aiohttp.FormData()
        form.add_field(
            self.field, self.data, filename=self.filename, content_type=self.content_type
        )
        return form


def _epoch(value: int | float | datetime) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass a tz-aware instant")
        return int(value.timestamp())
    return int(value)


def _instant_of(deadline: Deadline) -> float | None:
    if deadline is None or isinstance(deadline, int | float):
        return deadline
    if deadline.tzinfo is None:
        raise ValueError("naive datetime: pass a tz-aware deadline")
    return deadline.timestamp()


def _pipe(value: str | Iterable[str] | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return "|".join(value)


def _split(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    if isinstance(value, str):
        return tuple(part for part in value.split("|") if part)
    return tuple(value)


def _drop_none(body: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value is not None}


def _default_instance_id() -> str:
    # Fits the store's 100-character lease owner column.
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------------------------- client


class WeComClient:
    """Async client for WeCom's server API on one shared aiohttp session.

    See the module docstring for the error, retry, at-most-once and token rules.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        corp_id: str,
        secret: str,
        agent_id: int,
        api_base: str = DEFAULT_API_BASE,
        credentials: CredentialStore,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        timeout: float = 10.0,
        max_retries: int = 3,
        calls_per_minute: int = 10_000,
        instance_id: str | None = None,
        cooldown: float = 60.0,
        on_error: Callable[[str, int], None] | None = None,
        max_in_flight: int | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if calls_per_minute < 1:
            raise ValueError("calls_per_minute must be at least 1")
        if max_in_flight is None:
            # Never more than the session's connection pool: past it aiohttp queues calls
            # first come first served, and a welcome would wait behind profile fetches there.
            connector = session.connector
            pools = (getattr(connector, "limit", 0), getattr(connector, "limit_per_host", 0))
            max_in_flight = min([DEFAULT_MAX_IN_FLIGHT, *(pool for pool in pools if pool)])
        self._session = session
        self.corp_id = corp_id
        self.agent_id = int(agent_id)
        self._secret = secret
        self._api_base = api_base.rstrip("/")
        self._store = credentials
        self._clock = clock
        self._sleep = sleep
        self._timeout = timeout
        # A connect timeout fires before the total one, so "never sent" can be told apart.
        self._client_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=timeout / 2)
        self._max_retries = max_retries
        self._cooldown = cooldown
        # Told (api, errcode) of every error WeCom answered or every transport failure given up
        # on, once per call (not for cooldown or deadline fast-fails, never sent): metrics.
        self._on_error = on_error
        self._owner = instance_id or _default_instance_id()
        self._calls_per_minute = calls_per_minute
        self._lanes: dict[str, Lane] = {}
        self._gate = Gate(max_in_flight)
        self._arrivals = itertools.count()
        self._random = random.Random()
        self._locks: dict[str, asyncio.Lock] = {}
        self._local: dict[str, Credential] = {}
        self._failures: dict[str, _Failure] = {}
        # Values WeCom rejected (40014/42001, or a ticket the JS side refused): never used
        # again, even if a read that raced the discard puts one back into the local cache.
        self._rejected: deque[str] = deque(maxlen=16)
        # A refresh lease covers one attempt and is renewed while the refresh goes on, so a
        # process killed mid-refresh holds the others up for seconds, not for a whole
        # retry schedule.
        self._lease_seconds = timeout + 5.0

    def __repr__(self) -> str:
        return f"WeComClient(corp_id={self.corp_id!r}, agent_id={self.agent_id})"

    # ------------------------------------------------------------------ credential names

    @property
    def token_name(self) -> str:
        return f"access_token:{self.corp_id}:{self.agent_id}"

    @property
    def jsapi_ticket_name(self) -> str:
        return f"jsapi_ticket:{self.corp_id}:{self.agent_id}"

    @property
    def agent_ticket_name(self) -> str:
        return f"agent_ticket:{self.corp_id}:{self.agent_id}"

    # ------------------------------------------------------------------ core: one API call

    async def call(
        self,
        method: Literal["GET", "POST"],
        api: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        unsafe: bool | None = None,
        priority: Priority | None = None,
        deadline: Deadline = None,
    ) -> dict[str, Any]:
        """Call any API path under /cgi-bin/ with the token, retries and limits; the answer dict.

        ``unsafe`` defaults to whether ``api`` is in :data:`UNSAFE_APIS`, ``priority`` to
        :func:`default_priority`; past ``deadline`` the call is not made.
        """
        if unsafe is None:
            unsafe = api in UNSAFE_APIS
        return await self._call(
            method,
            api,
            params=params,
            body=body,
            unsafe=unsafe,
            priority=priority,
            deadline=deadline,
        )

    def _lane(self, api: str) -> Lane:
        lane = self._lanes.get(api)
        if lane is None:
            lane = self._lanes[api] = Lane(
                self._calls_per_minute, clock=self._clock, sleep=self._sleep
            )
        return lane

    async def _call(
        self,
        method: str,
        api: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        multipart: _Multipart | None = None,
        unsafe: bool = False,
        auth: bool = True,
        priority: Priority | None = None,
        deadline: Deadline = None,
    ) -> dict[str, Any]:
        priority = default_priority(api) if priority is None else Priority(priority)
        due = _instant_of(deadline)
        lane = self._lane(api)
        attempt = 0
        token_retried = False
        while True:
            self._admit(api, lane, priority, due)
            token = await self.get_access_token() if auth else None
            place = rank(priority, due, next(self._arrivals))
            while await lane.acquire(place) is not Admission.GRANTED:
                self._admit(api, lane, priority, due)  # raises: the lane said why
                place = rank(priority, due, next(self._arrivals))  # unless the clock moved on
            try:
                answer, probing = await self._attempt(
                    method, api, lane, place, due, params, token, body, multipart
                )
            except WeComTransportError as error:  # an HTTP status that is no answer at all
                self._failed(error)
                raise
            except _Transient as failure:
                if unsafe and failure.sent:
                    log.warning("WeCom %s: %s; not retried, outcome unknown", api, failure.reason)
                    raise self._failed(
                        WeComUncertain(
                            api, -1, f"{failure.reason}; the request may have reached WeCom"
                        )
                    ) from None
                if attempt >= self._max_retries:
                    raise self._failed(
                        WeComTransportError(
                            api, -1, f"{failure.reason} (gave up after {attempt + 1} attempts)"
                        )
                    ) from None
                delay = self._retry_delay(attempt, due)
                if delay is None:
                    raise self._failed(
                        WeComTransportError(api, -1, f"{failure.reason} ({NO_TIME_TO_RETRY})")
                    ) from None
                log.warning("WeCom %s: %s; retry %d", api, failure.reason, attempt + 1)
                await self._sleep(delay)
                attempt += 1
                continue

            errcode = answer.get("errcode", 0)
            if not isinstance(errcode, int):
                try:
                    errcode = int(errcode)
                except (TypeError, ValueError):
                    errcode = -1
            if errcode == 0:
                if probing:
                    log.info("WeCom %s: answered again; its cooldown is over", api)
                    lane.warm()
                return answer
            errmsg = str(answer.get("errmsg", ""))
            if auth and token is not None and errcode in TOKEN_INVALID and not token_retried:
                log.info("WeCom %s: errcode %d; refreshing the access token", api, errcode)
                token_retried = True
                await self._forget(self.token_name, token)
                continue
            if errcode == FREQUENCY_LIMIT:
                lane.cool(self._clock() + self._cooldown)
                log.warning(
                    "WeCom %s: 45009 frequency limit; calls below URGENT held back for %.0f s",
                    api,
                    self._cooldown,
                )
                raise self._failed(WeComError(api, errcode, errmsg))
            if errcode in BUSY and attempt < self._max_retries:
                delay = self._retry_delay(attempt, due)
                if delay is None:
                    raise self._failed(WeComError(api, errcode, f"{errmsg} ({NO_TIME_TO_RETRY})"))
                log.warning("WeCom %s: errcode %d; retry %d", api, errcode, attempt + 1)
                await self._sleep(delay)
                attempt += 1
                continue
            raise self._failed(WeComError(api, errcode, errmsg))

    async def _attempt(
        self,
        method: str,
        api: str,
        lane: Lane,
        place: Rank,
        due: float | None,
        params: Mapping[str, Any] | None,
        token: str | None,
        body: Mapping[str, Any] | None,
        multipart: _Multipart | None,
    ) -> tuple[dict[str, Any], bool]:
        """One request through the gate: (answer, whether it tested a cooling API)."""
        probe: asyncio.Lock | None = None
        if place[0] == Priority.URGENT and lane.cooling(self._clock()):
            probe = lane.probe
            await probe.acquire()
            if not lane.cooling(self._clock()):  # another call found WeCom answering again
                probe.release()
                probe = None
        try:
            await self._gate.enter(place)
            try:
                # Time passed at the gate: the deadline, or a 45009 meanwhile, may forbid it now.
                self._admit(api, lane, Priority(place[0]), due)
                return await self._send(method, api, params, token, body, multipart), (
                    probe is not None
                )
            finally:
                self._gate.leave()
        finally:
            if probe is not None:
                probe.release()

    def _failed(self, error: WeComError) -> WeComError:
        """Report an error to the on_error hook; returns it for raising."""
        if self._on_error is not None:
            try:
                self._on_error(error.api, error.errcode)
            except Exception:  # a metrics hook must never turn into a WeCom failure
                log.exception("WeCom on_error hook failed")
        return error

    def _admit(self, api: str, lane: Lane, priority: Priority, due: float | None) -> None:
        """Raise if the call may not be made now: its deadline passed, or its API is cooling
        down after a 45009 and the call is not URGENT. Neither reaches WeCom."""
        self._check_deadline(api, due)
        if priority == Priority.URGENT:
            return
        remaining = lane.cooling(self._clock())
        if remaining > 0:
            raise WeComError(
                api,
                FREQUENCY_LIMIT,
                f"frequency limit: cooling down for another {remaining:.0f} s (not sent)",
            )

    def _check_deadline(self, api: str, due: float | None) -> None:
        if due is None:
            return
        late = self._clock() - due
        if late >= 0:
            raise WeComDeadlineExceeded(
                api, -1, f"its deadline passed {late:.1f} s ago before it could be made (not sent)"
            )

    def _retry_delay(self, attempt: int, due: float | None) -> float | None:
        """The jittered backoff before retry ``attempt + 1``; None if it would end past ``due``."""
        delay = min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)
        delay *= 0.5 + self._random.random() / 2
        if due is not None and self._clock() + delay >= due:
            return None
        return delay

    async def _send(
        self,
        method: str,
        api: str,
        params: Mapping[str, Any] | None,
        token: str | None,
        body: Mapping[str, Any] | None,
        multipart: _Multipart | None,
    ) -> dict[str, Any]:
        url = f"{self._api_base}/cgi-bin/{api}"
        query: dict[str, str] = {}
        for key, value in (params or {}).items():
            if value is not None:
                query[key] = str(int(value)) if isinstance(value, bool) else str(value)
        if token is not None:
            query["access_token"] = token
        kwargs: dict[str, Any] = {}
        if multipart is not None:
            kwargs["data"] = multipart.form()
        elif body is not None:
            kwargs["data"] = json.dumps(body, ensure_ascii=False).encode()
            kwargs["headers"] = {"Content-Type": "application/json; charset=utf-8"}
        try:
            async with self._session.request(
                method, url, params=query, timeout=self._client_timeout, **kwargs
            ) as response:
                status = response.status
                raw = await response.read()
        except aiohttp.ConnectionTimeoutError:
            raise _Transient("connect timeout", sent=False) from None
        except aiohttp.ClientConnectorError as exc:
            raise _Transient(f"cannot connect: {_redact(str(exc))}", sent=False) from None
        except TimeoutError:
            raise _Transient(f"timed out after {self._timeout:g} s", sent=True) from None
        except aiohttp.ClientError as exc:
            detail = _redact(str(exc)) or type(exc).__name__
            raise _Transient(f"{type(exc).__name__}: {detail}", sent=True) from None
        if status >= 500:
            raise _Transient(f"HTTP {status}", sent=True)
        if status != 200:
            raise WeComTransportError(api, -1, f"HTTP {status}")
        try:
            answer = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            raise _Transient("unreadable answer (not JSON)", sent=True) from None
        if not isinstance(answer, dict):
            raise _Transient("unreadable answer (not a JSON object)", sent=True)
        return answer

    # ------------------------------------------------------------------ token and tickets

    async def get_access_token(self) -> str:
        """The current access token (cached and shared; refreshed by one caller at a time).

        Internal: for this client's own calls. Never hand it to a browser.
        """
        return await self._credential(self.token_name, "gettoken", self._fetch_token)

    async def get_jsapi_ticket(self) -> str:
        """The corp jsapi_ticket for ``wx.config`` / ``getConfigSignature`` (cached, shared)."""
        return await self._credential(
            self.jsapi_ticket_name, "get_jsapi_ticket", self._fetch_jsapi_ticket
        )

    async def get_agent_ticket(self) -> str:
        """The app ticket for ``wx.agentConfig`` / ``getAgentConfigSignature`` (cached, shared)."""
        return await self._credential(
            self.agent_ticket_name, "ticket/get", self._fetch_agent_ticket
        )

    async def discard_ticket(self, kind: Literal["jsapi", "agent"], value: str) -> None:
        """Forget a ticket the JS side rejected (42012) so the next get fetches a new one."""
        name = self.jsapi_ticket_name if kind == "jsapi" else self.agent_ticket_name
        await self._forget(name, value)

    async def _fetch_token(self) -> tuple[str, int]:
        answer = await self._call(
            "GET",
            "gettoken",
            params={"corpid": self.corp_id, "corpsecret": self._secret},
            auth=False,
        )
        return self._credential_answer("gettoken", answer, "access_token")

    async def _fetch_jsapi_ticket(self) -> tuple[str, int]:
        answer = await self._call("GET", "get_jsapi_ticket")
        return self._credential_answer("get_jsapi_ticket", answer, "ticket")

    async def _fetch_agent_ticket(self) -> tuple[str, int]:
        answer = await self._call("GET", "ticket/get", params={"type": "agent_config"})
        return self._credential_answer("ticket/get", answer, "ticket")

    @staticmethod
    def _credential_answer(api: str, answer: dict[str, Any], field: str) -> tuple[str, int]:
        value = answer.get(field)
        try:
            expires_in = int(answer.get("expires_in", 7200))
        except (TypeError, ValueError):
            expires_in = 7200
        if not isinstance(value, str) or not value or expires_in <= 0:
            raise WeComTransportError(api, -1, f"answer without a usable {field}")
        return value, expires_in

    def _usable(self, credential: Credential | None, now: float) -> bool:
        return (
            credential is not None
            and credential.expires_at.timestamp() > now
            and credential.value not in self._rejected
        )

    def _instant(self, seconds: float) -> datetime:
        return datetime.fromtimestamp(seconds, UTC)

    async def _forget(self, name: str, value: str) -> None:
        if value not in self._rejected:
            self._rejected.append(value)
        local = self._local.get(name)
        if local is not None and local.value == value:
            del self._local[name]
        await self._store.discard(name, value)

    async def _credential(
        self, name: str, api: str, fetch: Callable[[], Awaitable[tuple[str, int]]]
    ) -> str:
        local = self._local.get(name)
        if local is not None and self._usable(local, self._clock()):
            return local.value
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            poll = POLL_MIN
            # A live lease lapses within lease_seconds; twice that allows for clock skew
            # between instances. Past it the store itself is misbehaving: give up.
            give_up_at = self._clock() + 2 * self._lease_seconds
            while True:
                failure = self._failures.get(name)
                if failure is not None:
                    if failure.until > self._clock():
                        error = failure.error  # a fresh instance: tracebacks do not pile up
                        raise type(error)(error.api, error.errcode, error.errmsg)
                    del self._failures[name]
                stored = await self._store.get(name)
                now = self._clock()
                if self._usable(stored, now):
                    assert stored is not None
                    self._local[name] = stored
                    return stored.value
                if await self._store.try_lease(
                    name, self._owner, self._instant(now), self._instant(now + self._lease_seconds)
                ):
                    return await self._refresh(name, fetch)
                # Another instance is refreshing: wait for its value, or for its lease to lapse.
                if now >= give_up_at:
                    raise WeComTransportError(
                        api,
                        -1,
                        f"another instance held the refresh lease for over "
                        f"{2 * self._lease_seconds:.0f} s without storing a value",
                    )
                await self._sleep(poll)
                poll = min(poll * 2, POLL_MAX)

    async def _refresh(self, name: str, fetch: Callable[[], Awaitable[tuple[str, int]]]) -> str:
        stored_new = False
        try:
            # The previous holder may have stored a value between our read and our lease.
            stored = await self._store.get(name)
            if self._usable(stored, self._clock()):
                assert stored is not None
                self._local[name] = stored
                return stored.value
            started = self._clock()
            renew = asyncio.create_task(self._renew_lease(name))
            try:
                value, expires_in = await fetch()
            except WeComError as exc:
                transport = isinstance(exc, (WeComTransportError, WeComUncertain))
                memo = REFRESH_TRANSPORT_FAILURE_MEMO if transport else REFRESH_FAILURE_MEMO
                self._failures[name] = _Failure(exc, self._clock() + memo)
                log.error(
                    "WeCom %s refresh failed: errcode %d %s",
                    name.split(":")[0],
                    exc.errcode,
                    exc.errmsg,
                )
                raise
            finally:
                renew.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renew
            margin = min(REFRESH_MARGIN, expires_in / 2)
            credential = Credential(value, self._instant(started + expires_in - margin))
            await self._store.put(name, credential, self._owner)
            stored_new = True
            self._local[name] = credential
            return value
        finally:
            if not stored_new:
                await self._store.release(name, self._owner)

    async def _renew_lease(self, name: str) -> None:
        # Real time, not the injected clock's sleep: this only has to outpace the lease.
        while True:
            await asyncio.sleep(self._lease_seconds / 3)
            now = self._clock()
            await self._store.try_lease(
                name, self._owner, self._instant(now), self._instant(now + self._lease_seconds)
            )

    # ------------------------------------------------------------------ address book

    async def department_list(self, department_id: int | None = None) -> list[dict[str, Any]]:
        """``department/list``: the department and its children (all when no id)."""
        answer = await self._call("GET", "department/list", params={"id": department_id})
        return list(answer.get("department", []))

    async def user_list(
        self, department_id: int, fetch_child: bool = False
    ) -> list[dict[str, Any]]:
        """``user/list``: members of a department (and its children with ``fetch_child``)."""
        answer = await self._call(
            "GET",
            "user/list",
            params={"department_id": department_id, "fetch_child": 1 if fetch_child else 0},
        )
        return list(answer.get("userlist", []))

    async def user_get(self, userid: str) -> dict[str, Any]:
        """``user/get``: one member's record (the answer minus errcode/errmsg)."""
        answer = await self._call("GET", "user/get", params={"userid": userid})
        return {k: v for k, v in answer.items() if k not in ("errcode", "errmsg")}

    # ------------------------------------------------------------------ external contacts

    async def get_external_contact(
        self,
        external_userid: str,
        *,
        priority: Priority | None = None,
        deadline: Deadline = None,
    ) -> dict[str, Any]:
        """``externalcontact/get``: ``{"external_contact": {...}, "follow_user": [...]}``.

        Follows ``next_cursor`` until every follow_user is collected (WeCom pages beyond 500).
        BACKGROUND unless ``priority`` says otherwise; ``deadline`` bounds every page.
        """
        params: dict[str, Any] = {"external_userid": external_userid}
        when = {"priority": priority, "deadline": deadline}
        answer = await self._call("GET", "externalcontact/get", params=params, **when)
        contact = answer.get("external_contact", {})
        follow_users = list(answer.get("follow_user", []))
        seen: set[str] = set()
        cursor = answer.get("next_cursor") or ""
        while cursor and cursor not in seen:
            seen.add(cursor)
            page = await self._call(
                "GET", "externalcontact/get", params={**params, "cursor": cursor}, **when
            )
            follow_users.extend(page.get("follow_user", []))
            cursor = page.get("next_cursor") or ""
        return {"external_contact": contact, "follow_user": follow_users}

    async def list_external_contacts(self, userid: str) -> list[str]:
        """``externalcontact/list``: the external_userids of one member's customers."""
        answer = await self._call("GET", "externalcontact/list", params={"userid": userid})
        return list(answer.get("external_userid", []))

    async def batch_get_by_user(
        self, userids: Sequence[str], cursor: str = "", limit: int = 100
    ) -> Page:
        """``externalcontact/batch/get_by_user``: one page of ``external_contact_list`` items.

        Each item is ``{"external_contact": {...}, "follow_info": {...}}``.
        """
        userids = [userids] if isinstance(userids, str) else list(userids)
        if not 1 <= len(userids) <= 100:
            raise ValueError("batch_get_by_user takes 1 to 100 userids")
        if not 1 <= limit <= 100:
            raise ValueError("limit must be 1..100")
        answer = await self._call(
            "POST",
            "externalcontact/batch/get_by_user",
            body={"userid_list": userids, "cursor": cursor, "limit": limit},
        )
        return Page(list(answer.get("external_contact_list", [])), answer.get("next_cursor") or "")

    def iter_batch_get_by_user(
        self, userids: Sequence[str], limit: int = 100
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item of ``batch_get_by_user``, walking all pages."""
        return self._walk(lambda cursor: self.batch_get_by_user(userids, cursor, limit))

    async def get_follow_user_list(self) -> list[str]:
        """``externalcontact/get_follow_user_list``: members with customer contact enabled."""
        answer = await self._call("GET", "externalcontact/get_follow_user_list")
        return list(answer.get("follow_user", []))

    async def _walk(self, fetch: Callable[[str], Awaitable[Page]]) -> AsyncIterator[dict[str, Any]]:
        cursor = ""
        seen: set[str] = set()
        while True:
            page = await fetch(cursor)
            for item in page.items:
                yield item
            if not page.next_cursor or page.next_cursor in seen:
                return
            seen.add(page.next_cursor)
            cursor = page.next_cursor

    # ------------------------------------------------------------------ welcome and mass send

    async def send_welcome_msg(
        self,
        welcome_code: str,
        text: str | None = None,
        attachments: Sequence[Mapping[str, Any]] = (),
        *,
        deadline: Deadline = None,
    ) -> None:
        """``externalcontact/send_welcome_msg`` (unsafe: at most once), URGENT.

        41051 = already sent (stop); 41096 = another app is sending (the caller may retry within
        the 20 s window); :class:`WeComUncertain` = may have been sent. Pass the code's expiry as
        ``deadline``: a welcome that can no longer be made in time is not sent
        (:class:`WeComDeadlineExceeded`).
        """
        if not text and not attachments:
            raise ValueError("send_welcome_msg needs text or attachments")
        if len(attachments) > 9:
            raise ValueError("at most 9 attachments")
        body: dict[str, Any] = {"welcome_code": welcome_code}
        if text:
            body["text"] = {"content": text}
        if attachments:
            body["attachments"] = [dict(a) for a in attachments]
        await self._call(
            "POST", "externalcontact/send_welcome_msg", body=body, unsafe=True, deadline=deadline
        )

    async def add_msg_template(
        self,
        *,
        external_userids: Sequence[str] = (),
        sender: str | None = None,
        text: str | None = None,
        attachments: Sequence[Mapping[str, Any]] = (),
        chat_type: Literal["single", "group"] = "single",
        chat_ids: Sequence[str] = (),
        tag_filter: Mapping[str, Any] | None = None,
        allow_select: bool | None = None,
    ) -> MsgTemplateResult:
        """``externalcontact/add_msg_template`` (unsafe): creates a mass-send task the guide
        confirms. Returns the task's msgid and the ids WeCom could not send to."""
        if not text and not attachments:
            raise ValueError("add_msg_template needs text or attachments")
        if len(attachments) > 9:
            raise ValueError("at most 9 attachments")
        if len(external_userids) > 10_000:
            raise ValueError("at most 10 000 external_userids")
        if chat_type == "group" and not sender:
            raise ValueError("chat_type 'group' needs a sender")
        body: dict[str, Any] = {"chat_type": chat_type}
        if external_userids:
            body["external_userid"] = list(external_userids)
        if chat_ids:
            body["chat_id_list"] = list(chat_ids)
        if tag_filter is not None:
            body["tag_filter"] = dict(tag_filter)
        if sender:
            body["sender"] = sender
        if allow_select is not None:
            body["allow_select"] = allow_select
        if text:
            body["text"] = {"content": text}
        if attachments:
            body["attachments"] = [dict(a) for a in attachments]
        answer = await self._call(
            "POST", "externalcontact/add_msg_template", body=body, unsafe=True
        )
        return MsgTemplateResult(str(answer.get("msgid", "")), tuple(answer.get("fail_list") or ()))

    async def get_groupmsg_list_v2(
        self,
        *,
        start_time: int | datetime,
        end_time: int | datetime,
        chat_type: Literal["single", "group"] = "single",
        creator: str | None = None,
        filter_type: int = 2,
        limit: int = 50,
        cursor: str = "",
    ) -> Page:
        """``externalcontact/get_groupmsg_list_v2``: one page of ``group_msg_list``."""
        body = _drop_none(
            {
                "chat_type": chat_type,
                "start_time": _epoch(start_time),
                "end_time": _epoch(end_time),
                "creator": creator,
                "filter_type": filter_type,
                "limit": limit,
                "cursor": cursor,
            }
        )
        answer = await self._call("POST", "externalcontact/get_groupmsg_list_v2", body=body)
        return Page(list(answer.get("group_msg_list", [])), answer.get("next_cursor") or "")

    def iter_groupmsg_list_v2(self, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        """Every ``group_msg_list`` item, walking all pages (same arguments, minus cursor)."""
        return self._walk(lambda cursor: self.get_groupmsg_list_v2(**kwargs, cursor=cursor))

    async def get_groupmsg_task(self, msgid: str, limit: int = 500, cursor: str = "") -> Page:
        """``externalcontact/get_groupmsg_task``: one page of ``task_list`` (status 0/2)."""
        answer = await self._call(
            "POST",
            "externalcontact/get_groupmsg_task",
            body={"msgid": msgid, "limit": limit, "cursor": cursor},
        )
        return Page(list(answer.get("task_list", [])), answer.get("next_cursor") or "")

    def iter_groupmsg_task(self, msgid: str, limit: int = 500) -> AsyncIterator[dict[str, Any]]:
        return self._walk(lambda cursor: self.get_groupmsg_task(msgid, limit, cursor))

    async def get_groupmsg_send_result(
        self, msgid: str, userid: str, limit: int = 500, cursor: str = ""
    ) -> Page:
        """``externalcontact/get_groupmsg_send_result``: one page of ``send_list``
        (status 0 unsent, 1 sent, 2 not a friend, 3 recipient cap reached)."""
        answer = await self._call(
            "POST",
            "externalcontact/get_groupmsg_send_result",
            body={"msgid": msgid, "userid": userid, "limit": limit, "cursor": cursor},
        )
        return Page(list(answer.get("send_list", [])), answer.get("next_cursor") or "")

    def iter_groupmsg_send_result(
        self, msgid: str, userid: str, limit: int = 500
    ) -> AsyncIterator[dict[str, Any]]:
        return self._walk(
            lambda cursor: self.get_groupmsg_send_result(msgid, userid, limit, cursor)
        )

    async def remind_groupmsg_send(self, msgid: str) -> None:
        """``externalcontact/remind_groupmsg_send`` (≤3 per msgid per 24 h)."""
        await self._call("POST", "externalcontact/remind_groupmsg_send", body={"msgid": msgid})

    async def cancel_groupmsg_send(self, msgid: str) -> None:
        """``externalcontact/cancel_groupmsg_send``."""
        await self._call("POST", "externalcontact/cancel_groupmsg_send", body={"msgid": msgid})

    # ------------------------------------------------------------------ tags and remarks

    async def mark_tag(
        self,
        userid: str,
        external_userid: str,
        add_tag: Sequence[str] = (),
        remove_tag: Sequence[str] = (),
        *,
        priority: Priority | None = None,
        deadline: Deadline = None,
    ) -> None:
        """``externalcontact/mark_tag`` (idempotent; BACKGROUND unless ``priority`` says)."""
        if not add_tag and not remove_tag:
            raise ValueError("mark_tag needs add_tag or remove_tag")
        await self._call(
            "POST",
            "externalcontact/mark_tag",
            body={
                "userid": userid,
                "external_userid": external_userid,
                "add_tag": list(add_tag),
                "remove_tag": list(remove_tag),
            },
            priority=priority,
            deadline=deadline,
        )

    async def get_corp_tag_list(
        self, tag_ids: Sequence[str] = (), group_ids: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """``externalcontact/get_corp_tag_list``: ``tag_group`` list (all when both empty)."""
        body: dict[str, Any] = {}
        if tag_ids:
            body["tag_id"] = list(tag_ids)
        if group_ids:
            body["group_id"] = list(group_ids)
        answer = await self._call("POST", "externalcontact/get_corp_tag_list", body=body)
        return list(answer.get("tag_group", []))

    async def add_corp_tag(
        self,
        tags: Sequence[Mapping[str, Any]],
        *,
        group_id: str | None = None,
        group_name: str | None = None,
        order: int | None = None,
    ) -> dict[str, Any]:
        """``externalcontact/add_corp_tag`` (unsafe: creates). ``tags``: ``[{"name", "order"?}]``.

        Returns the created ``tag_group`` with the new tag ids.
        """
        if not tags:
            raise ValueError("add_corp_tag needs at least one tag")
        if group_id is None and group_name is None:
            raise ValueError("add_corp_tag needs group_id or group_name")
        body = _drop_none(
            {
                "group_id": group_id,
                "group_name": group_name,
                "order": order,
                "tag": [dict(t) for t in tags],
            }
        )
        answer = await self._call("POST", "externalcontact/add_corp_tag", body=body, unsafe=True)
        return dict(answer.get("tag_group", {}))

    async def remark(
        self,
        userid: str,
        external_userid: str,
        *,
        remark: str | None = None,
        description: str | None = None,
        remark_company: str | None = None,
        remark_mobiles: Sequence[str] | None = None,
        remark_pic_mediaid: str | None = None,
    ) -> None:
        """``externalcontact/remark`` (idempotent); ``remark_mobiles=[""]`` clears the mobiles."""
        fields = _drop_none(
            {
                "remark": remark,
                "description": description,
                "remark_company": remark_company,
                "remark_mobiles": list(remark_mobiles) if remark_mobiles is not None else None,
                "remark_pic_mediaid": remark_pic_mediaid,
            }
        )
        if not fields:
            raise ValueError("remark needs at least one field")
        await self._call(
            "POST",
            "externalcontact/remark",
            body={"userid": userid, "external_userid": external_userid, **fields},
        )

    # ------------------------------------------------------------------ contact ways (联系我)

    async def add_contact_way(
        self,
        *,
        type: Literal[1, 2],
        scene: Literal[1, 2],
        users: Sequence[str] = (),
        parties: Sequence[int] = (),
        state: str | None = None,
        remark: str | None = None,
        skip_verify: bool | None = None,
        style: int | None = None,
        **extra: Any,
    ) -> ContactWay:
        """``externalcontact/add_contact_way`` (unsafe: creates). Persist ``config_id``.

        ``extra`` passes further WeCom fields (is_temp, expires_in, conclusions, ...).
        """
        if state is not None and len(state) > 30:
            raise ValueError("state is at most 30 characters")
        if not users and not parties:
            raise ValueError("add_contact_way needs users or parties")
        body = _drop_none(
            {
                "type": type,
                "scene": scene,
                "style": style,
                "remark": remark,
                "skip_verify": skip_verify,
                "state": state,
                "user": list(users) or None,
                "party": list(parties) or None,
                **extra,
            }
        )
        answer = await self._call("POST", "externalcontact/add_contact_way", body=body, unsafe=True)
        return ContactWay(str(answer.get("config_id", "")), answer.get("qr_code"))

    async def get_contact_way(self, config_id: str) -> dict[str, Any]:
        """``externalcontact/get_contact_way``: the ``contact_way`` record."""
        answer = await self._call(
            "POST", "externalcontact/get_contact_way", body={"config_id": config_id}
        )
        return dict(answer.get("contact_way", {}))

    async def update_contact_way(self, config_id: str, **fields: Any) -> None:
        """``externalcontact/update_contact_way`` (idempotent): the given fields replace."""
        if "state" in fields and fields["state"] is not None and len(fields["state"]) > 30:
            raise ValueError("state is at most 30 characters")
        await self._call(
            "POST",
            "externalcontact/update_contact_way",
            body={"config_id": config_id, **_drop_none(fields)},
        )

    async def del_contact_way(self, config_id: str) -> None:
        """``externalcontact/del_contact_way``."""
        await self._call("POST", "externalcontact/del_contact_way", body={"config_id": config_id})

    async def list_contact_way(
        self,
        *,
        start_time: int | datetime | None = None,
        end_time: int | datetime | None = None,
        cursor: str = "",
        limit: int = 100,
    ) -> Page:
        """``externalcontact/list_contact_way``: one page of ``[{"config_id"}]``."""
        body = _drop_none(
            {
                "start_time": _epoch(start_time) if start_time is not None else None,
                "end_time": _epoch(end_time) if end_time is not None else None,
                "cursor": cursor or None,
                "limit": limit,
            }
        )
        answer = await self._call("POST", "externalcontact/list_contact_way", body=body)
        return Page(list(answer.get("contact_way", [])), answer.get("next_cursor") or "")

    # ------------------------------------------------------------------ transfers

    async def transfer_customer(
        self,
        handover_userid: str,
        takeover_userid: str,
        external_userids: Sequence[str],
        transfer_success_msg: str | None = None,
    ) -> dict[str, int]:
        """``externalcontact/transfer_customer`` (unsafe): ``{external_userid: errcode}``.

        0 means the takeover was started (completes after 24 h unless the customer refuses).
        """
        if not 1 <= len(external_userids) <= 100:
            raise ValueError("transfer_customer takes 1 to 100 external_userids")
        body = _drop_none(
            {
                "handover_userid": handover_userid,
                "takeover_userid": takeover_userid,
                "external_userid": list(external_userids),
                "transfer_success_msg": transfer_success_msg,
            }
        )
        answer = await self._call(
            "POST", "externalcontact/transfer_customer", body=body, unsafe=True
        )
        return {c["external_userid"]: int(c.get("errcode", 0)) for c in answer.get("customer", [])}

    async def transfer_result(
        self, handover_userid: str, takeover_userid: str, cursor: str = ""
    ) -> Page:
        """``externalcontact/transfer_result``: one page of ``customer`` (status 1..4)."""
        answer = await self._call(
            "POST",
            "externalcontact/transfer_result",
            body={
                "handover_userid": handover_userid,
                "takeover_userid": takeover_userid,
                "cursor": cursor,
            },
        )
        return Page(list(answer.get("customer", [])), answer.get("next_cursor") or "")

    async def resigned_transfer_customer(
        self, handover_userid: str, takeover_userid: str, external_userids: Sequence[str]
    ) -> dict[str, int]:
        """``externalcontact/resigned/transfer_customer`` (unsafe): ``{external_userid: errcode}``.

        The handover member must have left the corp.
        """
        if not 1 <= len(external_userids) <= 100:
            raise ValueError("resigned_transfer_customer takes 1 to 100 external_userids")
        answer = await self._call(
            "POST",
            "externalcontact/resigned/transfer_customer",
            body={
                "handover_userid": handover_userid,
                "takeover_userid": takeover_userid,
                "external_userid": list(external_userids),
            },
            unsafe=True,
        )
        return {c["external_userid"]: int(c.get("errcode", 0)) for c in answer.get("customer", [])}

    async def resigned_transfer_result(
        self, handover_userid: str, takeover_userid: str, cursor: str = ""
    ) -> Page:
        """``externalcontact/resigned/transfer_result``: one page of ``customer``."""
        answer = await self._call(
            "POST",
            "externalcontact/resigned/transfer_result",
            body={
                "handover_userid": handover_userid,
                "takeover_userid": takeover_userid,
                "cursor": cursor,
            },
        )
        return Page(list(answer.get("customer", [])), answer.get("next_cursor") or "")

    # ------------------------------------------------------------------ statistics

    async def get_user_behavior_data(
        self,
        userids: Sequence[str],
        start_time: int | datetime,
        end_time: int | datetime,
        partyids: Sequence[int] = (),
    ) -> list[dict[str, Any]]:
        """``externalcontact/get_user_behavior_data``: ``behavior_data`` per day.

        Several userids give aggregate totals. Checked here: ≤100 userids and ≤100 partyids,
        not both empty, start ≤ end, span ≤ 30 days (ValueError otherwise).
        """
        userids = [userids] if isinstance(userids, str) else list(userids)
        start, end = _epoch(start_time), _epoch(end_time)
        if not userids and not partyids:
            raise ValueError("get_user_behavior_data needs userids or partyids")
        if len(userids) > USER_BEHAVIOR_MAX_USERS or len(partyids) > USER_BEHAVIOR_MAX_USERS:
            raise ValueError("get_user_behavior_data takes at most 100 userids and 100 partyids")
        if end < start:
            raise ValueError("end_time is before start_time")
        if end - start > USER_BEHAVIOR_MAX_SPAN:
            raise ValueError("get_user_behavior_data spans at most 30 days")
        body: dict[str, Any] = {"start_time": start, "end_time": end}
        if userids:
            body["userid"] = userids
        if partyids:
            body["partyid"] = list(partyids)
        answer = await self._call("POST", "externalcontact/get_user_behavior_data", body=body)
        return list(answer.get("behavior_data", []))

    # ------------------------------------------------------------------ app messages

    async def send_app_message(
        self,
        touser: str | Iterable[str] | None,
        msgtype: str,
        payload: Mapping[str, Any],
        *,
        toparty: str | Iterable[str] | None = None,
        totag: str | Iterable[str] | None = None,
        safe: bool | None = None,
        enable_duplicate_check: bool | None = None,
        duplicate_check_interval: int | None = None,
        at_least_once: bool = False,
        priority: Priority | None = None,
        deadline: Deadline = None,
    ) -> AppMessageResult:
        """``message/send`` from this app (agentid filled in); ``payload`` is the msgtype's object.

        Unsafe by default (:class:`WeComUncertain` when the outcome is unknown);
        ``at_least_once=True`` retries like a safe call, for reminders where a duplicate is fine.
        Partly invalid recipients still send (see ``invaliduser``); all invalid → 81013.
        BACKGROUND (reminders) unless ``priority`` says otherwise (a reply a guide waits for).
        """
        if touser is None and toparty is None and totag is None:
            raise ValueError("send_app_message needs touser, toparty or totag")
        body = _drop_none(
            {
                "touser": _pipe(touser),
                "toparty": _pipe(toparty),
                "totag": _pipe(totag),
                "msgtype": msgtype,
                "agentid": self.agent_id,
                msgtype: dict(payload),
                "safe": (1 if safe else 0) if safe is not None else None,
                "enable_duplicate_check": (
                    (1 if enable_duplicate_check else 0)
                    if enable_duplicate_check is not None
                    else None
                ),
                "duplicate_check_interval": duplicate_check_interval,
            }
        )
        answer = await self._call(
            "POST",
            "message/send",
            body=body,
            unsafe=not at_least_once,
            priority=priority,
            deadline=deadline,
        )
        return AppMessageResult(
            msgid=answer.get("msgid"),
            invaliduser=_split(answer.get("invaliduser")),
            invalidparty=_split(answer.get("invalidparty")),
            invalidtag=_split(answer.get("invalidtag")),
            unlicenseduser=_split(answer.get("unlicenseduser")),
            response_code=answer.get("response_code"),
        )

    async def send_text(
        self, touser: str | Iterable[str], content: str, **options: Any
    ) -> AppMessageResult:
        """A text app message (≤2048 bytes)."""
        return await self.send_app_message(touser, "text", {"content": content}, **options)

    async def send_textcard(
        self,
        touser: str | Iterable[str],
        title: str,
        description: str,
        url: str,
        btntxt: str = "详情",
        **options: Any,
    ) -> AppMessageResult:
        """A textcard app message (title ≤128 B, description ≤512 B)."""
        payload = {"title": title, "description": description, "url": url, "btntxt": btntxt}
        return await self.send_app_message(touser, "textcard", payload, **options)

    async def send_news(
        self, touser: str | Iterable[str], articles: Sequence[Mapping[str, Any]], **options: Any
    ) -> AppMessageResult:
        """A news app message with 1–8 articles ``{"title","description","url","picurl"}``."""
        if not 1 <= len(articles) <= 8:
            raise ValueError("news takes 1 to 8 articles")
        payload = {"articles": [dict(a) for a in articles]}
        return await self.send_app_message(touser, "news", payload, **options)

    # ------------------------------------------------------------------ media

    async def upload_media(
        self,
        kind: Literal["image", "voice", "video", "file"],
        filename: str,
        data: bytes,
        content_type: str = "application/octet-stream",
    ) -> Media:
        """``media/upload`` (multipart): a temporary media_id, valid 3 days."""
        if kind not in ("image", "voice", "video", "file"):
            raise ValueError(f"unknown media kind {kind!r}")
        answer = await self._call(
            "POST",
            "media/upload",
            params={"type": kind},
            multipart=_Multipart("media", filename, bytes(data), content_type),
        )
        return Media(
            type=str(answer.get("type", kind)),
            media_id=str(answer.get("media_id", "")),
            created_at=int(answer.get("created_at", 0) or 0),
        )
