"""Where the client keeps access tokens and JS-SDK tickets.

WeCom limits gettoken and the ticket endpoints, and several guidebot instances share one corp,
so credentials live in a shared store with a short refresh lease: one caller refreshes, the
others wait for its result. guidebot.db.credentials implements this over the database;
MemoryCredentialStore serves tools and tests that run in one process.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Credential:
    value: str
    expires_at: datetime


class CredentialStore(Protocol):
    async def get(self, name: str) -> Credential | None: ...

    async def try_lease(self, name: str, owner: str, now: datetime, until: datetime) -> bool:
        """Take the refresh lease unless another owner holds an unexpired one."""

    async def put(self, name: str, credential: Credential, owner: str) -> None:
        """Store a fresh credential and release `owner`'s lease."""

    async def release(self, name: str, owner: str) -> None: ...

    async def discard(self, name: str, value: str) -> None:
        """Forget `value` if it is still the stored one (WeCom called it invalid)."""


@dataclass(slots=True)
class _Row:
    credential: Credential | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None


class MemoryCredentialStore:
    def __init__(self) -> None:
        self._rows: dict[str, _Row] = {}

    async def get(self, name: str) -> Credential | None:
        row = self._rows.get(name)
        return row.credential if row else None

    async def try_lease(self, name: str, owner: str, now: datetime, until: datetime) -> bool:
        row = self._rows.setdefault(name, _Row())
        if row.lease_owner not in (None, owner) and row.lease_until and row.lease_until > now:
            return False
        row.lease_owner, row.lease_until = owner, until
        return True

    async def put(self, name: str, credential: Credential, owner: str) -> None:
        row = self._rows.setdefault(name, _Row())
        row.credential = credential
        if row.lease_owner == owner:
            row.lease_owner = row.lease_until = None

    async def release(self, name: str, owner: str) -> None:
        row = self._rows.get(name)
        if row and row.lease_owner == owner:
            row.lease_owner = row.lease_until = None

    async def discard(self, name: str, value: str) -> None:
        row = self._rows.get(name)
        if row and row.credential and row.credential.value == value:
            row.credential = None
