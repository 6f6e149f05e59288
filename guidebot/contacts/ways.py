"""「联系我」 contact ways: a QR code per store, channel and campaign, told apart by `state`.

WeCom echoes a way's `state` (at most 30 characters) in every add event it causes, so the state
is how an add is attributed. guidebot writes it as ``s{store code}:{channel}[:{campaign}]``,
for example ``s12:poster:spring26``, and keeps every way it creates in `contact_ways`: WeCom
does not list API-created ways in its console, and a lost config_id cannot be edited or deleted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.directory import find_store, require_store
from guidebot.contacts.errors import Conflict, Invalid, NotFound, Upstream
from guidebot.contacts.models import ContactWay, Guide, GuideStatus
from guidebot.wecom.client import WeComClient, WeComError, WeComUncertain

log = logging.getLogger(__name__)

STATE_MAX = 30  # WeCom's limit on a contact way's state
MAX_USERS = 100  # WeCom's limit on members per way
_PART = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class ParsedState:
    """What a state in guidebot's format says; the store is its code, not yet looked up."""

    store_code: str
    channel: str
    campaign: str | None


def make_state(store_code: str, channel: str, campaign: str | None = None) -> str:
    """The state for a way; Invalid, naming the part, when it cannot be written in 30 chars."""
    for name, value in (("store code", store_code), ("channel", channel)):
        if not value or not _PART.fullmatch(value):
            raise Invalid(f"{name} {value!r} must be letters, digits, '_', '.' or '-'")
    if campaign is not None and campaign != "" and not _PART.fullmatch(campaign):
        raise Invalid(f"campaign {campaign!r} must be letters, digits, '_', '.' or '-'")
    state = f"s{store_code}:{channel}" + (f":{campaign}" if campaign else "")
    if len(state) > STATE_MAX:
        raise Invalid(
            f"state {state!r} is {len(state)} characters; WeCom allows {STATE_MAX}: "
            f"shorten the channel or campaign by {len(state) - STATE_MAX}"
        )
    return state


def parse_state(state: str | None) -> ParsedState | None:
    """The parts of a state in guidebot's format, or None for any other state."""
    if not state or len(state) > STATE_MAX or not state.startswith("s"):
        return None
    parts = state[1:].split(":")
    if len(parts) not in (2, 3) or not all(_PART.fullmatch(p) for p in parts):
        return None
    return ParsedState(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


async def way_for_state(session: AsyncSession, state: str | None) -> ContactWay | None:
    if not state:
        return None
    return await session.scalar(select(ContactWay).where(ContactWay.state == state))


async def create_contact_way(
    session: AsyncSession,
    wecom: WeComClient,
    now: datetime,
    *,
    store: str | int,
    channel: str,
    campaign: str | None = None,
    userids: Sequence[str],
    remark: str | None = None,
) -> ContactWay:
    """Create a QR 「联系我」 way for `userids` in `store` through WeCom and keep it.

    Commits: once after checking (so SQLite's single writer is not held across the WeCom
    call) and once after storing. Raises NotFound, Invalid, Conflict or Upstream.
    """
    userids = list(dict.fromkeys(userids))
    if not userids:
        raise Invalid("userids must name at least one guide")
    if len(userids) > MAX_USERS:
        raise Invalid(f"a contact way takes at most {MAX_USERS} guides, got {len(userids)}")
    if remark is not None and len(remark) > 30:
        raise Invalid("remark is at most 30 characters")
    found = await find_store(session, store)
    if found is None or not found.is_store:
        raise NotFound(f"没有这家门店 / no store {store!r}")
    state = make_state(found.code, channel, campaign)
    store_id = found.id
    known = set(
        await session.scalars(
            select(Guide.userid).where(
                Guide.userid.in_(userids), Guide.status == GuideStatus.ACTIVE
            )
        )
    )
    unknown = [u for u in userids if u not in known]
    if unknown:
        raise NotFound(f"no active guide {', '.join(map(repr, unknown))}")
    existing = await way_for_state(session, state)
    if existing is not None:
        raise Conflict(f"state {state!r} is already used by contact way {existing.config_id}")
    await session.commit()

    try:
        created = await wecom.add_contact_way(
            type=1 if len(userids) == 1 else 2,
            scene=2,
            users=userids,
            state=state,
            remark=remark,
            skip_verify=True,
        )
    except WeComUncertain as exc:
        # add_contact_way is not idempotent: WeCom may hold a way we cannot name. Say so.
        log.error("add_contact_way for state %s: outcome unknown: %s", state, exc)
        raise Upstream(
            f"WeCom did not answer whether the way for {state!r} was created; "
            "check list_contact_way before trying again",
            exc.errcode,
        ) from exc
    except WeComError as exc:
        raise Upstream(
            f"WeCom refused the contact way: errcode {exc.errcode} {exc.errmsg}", exc.errcode
        ) from exc

    way = ContactWay(
        config_id=created.config_id,
        state=state,
        store_id=store_id,
        channel=channel,
        campaign=campaign or None,
        userids=userids,
        qr_code=created.qr_code,
        remark=remark,
        created_at=now,
    )
    session.add(way)
    await session.commit()
    log.info("contact way %s created: state %s, guides %s", way.config_id, state, userids)
    return way


async def list_contact_ways(
    session: AsyncSession, *, store: str | int | None = None
) -> list[ContactWay]:
    query = select(ContactWay).order_by(ContactWay.created_at, ContactWay.config_id)
    if store is not None:
        found = await require_store(session, store)
        query = query.where(ContactWay.store_id == found.id)
    return list(await session.scalars(query))
