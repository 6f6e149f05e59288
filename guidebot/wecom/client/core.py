"""The core every WeCom API area stands on: one ``_call`` with the token, limits and retries.

:class:`ClientCore` owns the aiohttp session, the per-API lanes and the in-flight gate of
guidebot.wecom.scheduler, the retry rules, and the access token and JS-SDK tickets (kept by
:class:`~guidebot.wecom.client.tokens.CredentialCache`). The API areas (directory, contacts,
messages, ...) are subclasses that only shape requests and answers; guidebot.wecom.client
composes them into ``WeComClient``. The rules themselves are written down there.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import aiohttp

from guidebot.clock import Clock, SystemClock
from guidebot.wecom.client.errors import (
    WeComDeadlineExceeded,
    WeComError,
    WeComTransportError,
    WeComUncertain,
)
from guidebot.wecom.client.policy import UNSAFE_APIS, default_priority
from guidebot.wecom.client.tokens import CredentialCache, default_instance_id
from guidebot.wecom.credentials import CredentialStore
from guidebot.wecom.scheduler import Admission, Gate, Lane, Priority, Rank, rank

__all__ = ["DEFAULT_API_BASE", "ClientCore", "Deadline", "Multipart"]

log = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://qyapi.weixin.qq.com"

TOKEN_INVALID = frozenset({40014, 42001})
BUSY = frozenset({-1, 45033})
FREQUENCY_LIMIT = 45009

BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0

# Calls in flight per client unless the session's connection pool is smaller.
DEFAULT_MAX_IN_FLIGHT = 100
NO_TIME_TO_RETRY = "no time left to retry before its deadline"

# A call's deadline: an instant on the client's clock (seconds) or a tz-aware datetime.
Deadline = float | datetime | None

_SECRET_QUERY = re.compile(r"(access_token|corpsecret)=[^&\s'\"]*", re.IGNORECASE)


def _redact(text: str) -> str:
    return _SECRET_QUERY.sub(r"\1=***", text)


class _Transient(Exception):
    """A transport failure of one attempt. ``sent``: the request may have reached WeCom."""

    def __init__(self, reason: str, *, sent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sent = sent


@dataclass(frozen=True, slots=True)
class Multipart:
    """A file upload's one form field (media/upload)."""

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


def _instant_of(deadline: Deadline) -> float | None:
    if deadline is None or isinstance(deadline, int | float):
        return deadline
    if deadline.tzinfo is None:
        raise ValueError("naive datetime: pass a tz-aware deadline")
    return deadline.timestamp()


def _errcode(answer: Mapping[str, Any]) -> int:
    """The answer's errcode as an int (0 when absent; -1 when it is no number at all)."""
    errcode = answer.get("errcode", 0)
    if isinstance(errcode, int):
        return errcode
    try:
        return int(errcode)
    except (TypeError, ValueError):
        return -1


class ClientCore:
    """The transport, limits, retries and credentials of a WeCom client (see the package)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        corp_id: str,
        secret: str,
        agent_id: int,
        api_base: str = DEFAULT_API_BASE,
        credentials: CredentialStore,
        clock: Clock | None = None,
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
        self._clock = clock = clock or SystemClock()
        self._timeout = timeout
        # A connect timeout fires before the total one, so "never sent" can be told apart.
        self._client_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=timeout / 2)
        self._max_retries = max_retries
        self._cooldown = cooldown
        # Told (api, errcode) of every error WeCom answered or every transport failure given up
        # on, once per call (not for cooldown or deadline fast-fails, never sent): metrics.
        self._on_error = on_error
        self._calls_per_minute = calls_per_minute
        self._lanes: dict[str, Lane] = {}
        self._gate = Gate(max_in_flight)
        self._arrivals = itertools.count()
        self._random = random.Random()
        # A refresh lease covers one attempt and is renewed while the refresh goes on, so a
        # process killed mid-refresh holds the others up for seconds, not for a whole
        # retry schedule.
        self._credentials = CredentialCache(
            credentials,
            owner=instance_id or default_instance_id(),
            clock=clock,
            lease_seconds=timeout + 5.0,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(corp_id={self.corp_id!r}, agent_id={self.agent_id})"

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
            lane = self._lanes[api] = Lane(self._calls_per_minute, clock=self._clock)
        return lane

    async def _call(
        self,
        method: str,
        api: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        multipart: Multipart | None = None,
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
            place = await self._take_turn(api, lane, priority, due)
            try:
                answer, probing = await self._attempt(
                    method, api, lane, place, due, params, token, body, multipart
                )
            except WeComTransportError as error:  # an HTTP status that is no answer at all
                self._failed(error)
                raise
            except _Transient as failure:
                await self._clock.sleep(self._after_transient(api, failure, unsafe, attempt, due))
                attempt += 1
                continue
            errcode = _errcode(answer)
            if errcode == 0:
                if probing:
                    log.info("WeCom %s: answered again; its cooldown is over", api)
                    lane.warm()
                return answer
            errmsg = str(answer.get("errmsg", ""))
            if auth and token is not None and errcode in TOKEN_INVALID and not token_retried:
                log.info("WeCom %s: errcode %d; refreshing the access token", api, errcode)
                token_retried = True
                await self._credentials.forget(self.token_name, token)
                continue
            await self._clock.sleep(self._after_refusal(api, lane, errcode, errmsg, attempt, due))
            attempt += 1

    async def _take_turn(self, api: str, lane: Lane, priority: Priority, due: float | None) -> Rank:
        """Wait for the API's lane to grant this call a turn; its place in the queue."""
        place = rank(priority, due, next(self._arrivals))
        while await lane.acquire(place) is not Admission.GRANTED:
            self._admit(api, lane, priority, due)  # raises: the lane said why
            place = rank(priority, due, next(self._arrivals))  # unless the clock moved on
        return place

    def _after_transient(
        self, api: str, failure: _Transient, unsafe: bool, attempt: int, due: float | None
    ) -> float:
        """The backoff before retrying an attempt that got no answer, or raise the failure."""
        if unsafe and failure.sent:
            log.warning("WeCom %s: %s; not retried, outcome unknown", api, failure.reason)
            raise self._failed(
                WeComUncertain(api, -1, f"{failure.reason}; the request may have reached WeCom")
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
        return delay

    def _after_refusal(
        self, api: str, lane: Lane, errcode: int, errmsg: str, attempt: int, due: float | None
    ) -> float:
        """The backoff before retrying a call WeCom refused as busy, or raise its error."""
        if errcode == FREQUENCY_LIMIT:
            lane.cool(self._clock.time() + self._cooldown)
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
            return delay
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
        multipart: Multipart | None,
    ) -> tuple[dict[str, Any], bool]:
        """One request through the gate: (answer, whether it tested a cooling API)."""
        probe: asyncio.Lock | None = None
        if place[0] == Priority.URGENT and lane.cooling(self._clock.time()):
            probe = lane.probe
            await probe.acquire()
            if not lane.cooling(self._clock.time()):  # another call found WeCom answering again
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
        remaining = lane.cooling(self._clock.time())
        if remaining > 0:
            raise WeComError(
                api,
                FREQUENCY_LIMIT,
                f"frequency limit: cooling down for another {remaining:.0f} s (not sent)",
            )

    def _check_deadline(self, api: str, due: float | None) -> None:
        if due is None:
            return
        late = self._clock.time() - due
        if late >= 0:
            raise WeComDeadlineExceeded(
                api, -1, f"its deadline passed {late:.1f} s ago before it could be made (not sent)"
            )

    def _retry_delay(self, attempt: int, due: float | None) -> float | None:
        """The jittered backoff before retry ``attempt + 1``; None if it would end past ``due``."""
        delay = min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)
        delay *= 0.5 + self._random.random() / 2
        if due is not None and self._clock.time() + delay >= due:
            return None
        return delay

    async def _send(
        self,
        method: str,
        api: str,
        params: Mapping[str, Any] | None,
        token: str | None,
        body: Mapping[str, Any] | None,
        multipart: Multipart | None,
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
        return await self._credentials.get(self.token_name, "gettoken", self._fetch_token)

    async def get_jsapi_ticket(self) -> str:
        """The corp jsapi_ticket for ``wx.config`` / ``getConfigSignature`` (cached, shared)."""
        return await self._credentials.get(
            self.jsapi_ticket_name, "get_jsapi_ticket", self._fetch_jsapi_ticket
        )

    async def get_agent_ticket(self) -> str:
        """The app ticket for ``wx.agentConfig`` / ``getAgentConfigSignature`` (cached, shared)."""
        return await self._credentials.get(
            self.agent_ticket_name, "ticket/get", self._fetch_agent_ticket
        )

    async def discard_ticket(self, kind: Literal["jsapi", "agent"], value: str) -> None:
        """Forget a ticket the JS side rejected (42012) so the next get fetches a new one."""
        name = self.jsapi_ticket_name if kind == "jsapi" else self.agent_ticket_name
        await self._credentials.forget(name, value)

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
