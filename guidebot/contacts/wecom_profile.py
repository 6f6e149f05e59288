"""What WeCom says about a guide↔customer pair: externalcontact/get, narrowed to one guide.

Contacts' handlers ask here first, before touching the database, so SQLite's single writer is
never held across the network.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from guidebot.wecom.client import WeComClient, WeComError, WeComTransportError

log = logging.getLogger(__name__)

# externalcontact/get answers these when there is nothing to read for this pair any more: the
# event is still recorded from what it says.
NO_PROFILE = frozenset({84061, 40096})
# Worth retrying: WeCom busy, a concurrency or frequency limit, or no answer at all.
TRANSIENT = frozenset({-1, 45009, 45033})


def from_epoch(seconds: int | float | str | None) -> datetime | None:
    if seconds in (None, "", 0, "0"):
        return None
    return datetime.fromtimestamp(int(seconds), UTC)


@dataclass(frozen=True, slots=True)
class Profile:
    """externalcontact/get for one customer, narrowed to one guide's follow_user entry."""

    contact: dict[str, Any]
    follow: dict[str, Any] | None  # None: WeCom lists no relation between them

    @property
    def createtime(self) -> datetime | None:
        return from_epoch(self.follow.get("createtime")) if self.follow else None

    @classmethod
    def of(cls, answer: dict[str, Any], userid: str) -> Profile:
        """externalcontact/get's answer, narrowed to one guide."""
        follow_users = answer.get("follow_user") or []
        follow = next((f for f in follow_users if f.get("userid") == userid), None)
        return cls(dict(answer.get("external_contact") or {}), follow)


def is_transient(exc: WeComError) -> bool:
    """Worth asking again later: no answer at all, WeCom busy, or a limit (45009 cooldown)."""
    return isinstance(exc, WeComTransportError) or exc.errcode in TRANSIENT


async def fetch_contact(
    wecom: WeComClient, external_userid: str, *, deadline: datetime | None = None
) -> dict[str, Any] | None:
    """externalcontact/get's whole answer, or None when WeCom has none to give.

    Transient failures raise (a call not made by its ``deadline`` too); 84061 (no relation)
    and other refusals return None.
    """
    try:
        return await wecom.get_external_contact(external_userid, deadline=deadline)
    except WeComError as exc:
        if is_transient(exc):
            raise
        if exc.errcode not in NO_PROFILE:
            log.warning(
                "externalcontact/get %s: %s; recording the event alone", external_userid, exc
            )
        return None


async def fetch_profile(
    wecom: WeComClient, external_userid: str, userid: str, *, deadline: datetime | None = None
) -> Profile | None:
    """The customer's profile and this guide's entry, or None when WeCom has none to give.

    Transient failures raise (the inbox worker retries the event); 84061 (no relation) and
    other refusals return None so the event is still recorded from what it says.
    """
    answer = await fetch_contact(wecom, external_userid, deadline=deadline)
    return None if answer is None else Profile.of(answer, userid)


__all__ = [
    "NO_PROFILE",
    "TRANSIENT",
    "Profile",
    "fetch_contact",
    "fetch_profile",
    "from_epoch",
    "is_transient",
]
