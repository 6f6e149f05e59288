"""The access token and JS-SDK tickets: cached in the shared store, refreshed by one at a time.

A stored credential's ``expires_at`` is the instant it stops being *used*: WeCom's ``expires_in``
minus a 300 s margin (half the lifetime when that is shorter than 600 s). One caller refreshes at
a time: an asyncio.Lock per name inside the client, and the store's refresh lease across clients
and processes (see guidebot.wecom.client for the whole rule). A failed refresh is remembered for a
while, because WeCom blocks an IP that repeats a wrong secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from guidebot.clock import Clock
from guidebot.wecom.client.errors import WeComError, WeComTransportError, WeComUncertain
from guidebot.wecom.credentials import Credential, CredentialStore

__all__ = ["CredentialCache", "Fetch", "default_instance_id"]

log = logging.getLogger(__name__)

REFRESH_MARGIN = 300.0
POLL_MIN = 0.05
POLL_MAX = 1.0
REFRESH_FAILURE_MEMO = 60.0
REFRESH_TRANSPORT_FAILURE_MEMO = 5.0

# Asks WeCom for a new value: (value, expires_in seconds).
Fetch = Callable[[], Awaitable[tuple[str, int]]]


@dataclass(frozen=True, slots=True)
class _Failure:
    error: WeComError
    until: float


def default_instance_id() -> str:
    # Fits the store's 100-character lease owner column.
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _instant(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class CredentialCache:
    """One client's view of its credentials in the shared store."""

    def __init__(
        self,
        store: CredentialStore,
        *,
        owner: str,
        clock: Clock,
        lease_seconds: float,
    ) -> None:
        self._store = store
        self._owner = owner
        self._clock = clock
        self._lease_seconds = lease_seconds
        self._locks: dict[str, asyncio.Lock] = {}
        self._local: dict[str, Credential] = {}
        self._failures: dict[str, _Failure] = {}
        # Values WeCom rejected (40014/42001, or a ticket the JS side refused): never used
        # again, even if a read that raced the discard puts one back into the local cache.
        self._rejected: deque[str] = deque(maxlen=16)

    def _usable(self, credential: Credential | None, now: float) -> bool:
        return (
            credential is not None
            and credential.expires_at.timestamp() > now
            and credential.value not in self._rejected
        )

    async def forget(self, name: str, value: str) -> None:
        """Never use ``value`` again: WeCom (or the JS side) rejected it."""
        if value not in self._rejected:
            self._rejected.append(value)
        local = self._local.get(name)
        if local is not None and local.value == value:
            del self._local[name]
        await self._store.discard(name, value)

    async def get(self, name: str, api: str, fetch: Fetch) -> str:
        """The usable value of ``name``, from memory, the store, or ``fetch`` under the lease."""
        local = self._local.get(name)
        if local is not None and self._usable(local, self._clock.time()):
            return local.value
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            poll = POLL_MIN
            # A live lease lapses within lease_seconds; twice that allows for clock skew
            # between instances. Past it the store itself is misbehaving: give up.
            give_up_at = self._clock.time() + 2 * self._lease_seconds
            while True:
                failure = self._failures.get(name)
                if failure is not None:
                    if failure.until > self._clock.time():
                        error = failure.error  # a fresh instance: tracebacks do not pile up
                        raise type(error)(error.api, error.errcode, error.errmsg)
                    del self._failures[name]
                stored = await self._store.get(name)
                now = self._clock.time()
                if self._usable(stored, now):
                    assert stored is not None
                    self._local[name] = stored
                    return stored.value
                if await self._store.try_lease(
                    name, self._owner, _instant(now), _instant(now + self._lease_seconds)
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
                await self._clock.sleep(poll)
                poll = min(poll * 2, POLL_MAX)

    async def _refresh(self, name: str, fetch: Fetch) -> str:
        stored_new = False
        try:
            # The previous holder may have stored a value between our read and our lease.
            stored = await self._store.get(name)
            if self._usable(stored, self._clock.time()):
                assert stored is not None
                self._local[name] = stored
                return stored.value
            started = self._clock.time()
            renew = asyncio.create_task(self._renew_lease(name))
            try:
                value, expires_in = await fetch()
            except WeComError as exc:
                transport = isinstance(exc, (WeComTransportError, WeComUncertain))
                memo = REFRESH_TRANSPORT_FAILURE_MEMO if transport else REFRESH_FAILURE_MEMO
                self._failures[name] = _Failure(exc, self._clock.time() + memo)
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
            credential = Credential(value, _instant(started + expires_in - margin))
            await self._store.put(name, credential, self._owner)
            stored_new = True
            self._local[name] = credential
            return value
        finally:
            if not stored_new:
                await self._store.release(name, self._owner)

    async def _renew_lease(self, name: str) -> None:
        # Real time, not the clock's sleep: this runs beside the fetch's real I/O and only has
        # to outpace the lease while it lasts; a fake clock moves when slept on, so a loop on
        # it would run the time away.
        while True:
            await asyncio.sleep(self._lease_seconds / 3)
            now = self._clock.time()
            await self._store.try_lease(
                name, self._owner, _instant(now), _instant(now + self._lease_seconds)
            )

    # ------------------------------------------------------------------ address book
