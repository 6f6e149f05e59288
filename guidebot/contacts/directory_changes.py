"""change_contact callbacks: the address book kept current between full syncs.

A handler re-reads WeCom's truth (user/get, department/list?id=) instead of trusting the event
alone: address-book events carry only ids since 2022, and arrive in no fixed order. What it
learns is applied with guidebot.contacts.directory's writers, under its lock.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.directory import (
    lock_directory,
    mark_department_deleted,
    mark_left,
    refresh_store_flags,
    rename_guide,
    upsert_department,
    upsert_guide,
)
from guidebot.wecom.client import WeComClient, WeComError

log = logging.getLogger(__name__)

# user/get answers these when the member does not exist (any more) or is out of our range.
MEMBER_GONE = frozenset({60111, 40003, 60011})
DEPARTMENT_GONE = frozenset({60123, 60003})


async def apply_user_changed(
    session: AsyncSession,
    wecom: WeComClient,
    *,
    userid: str,
    new_userid: str | None,
    departments: Sequence[int],
    main_department: int | None,
    at: datetime,
) -> None:
    """create_user / update_user: fetch user/get for the truth, then apply it at `at`.

    A NewUserID is applied only when WeCom confirms it: user/get answers for the new id and no
    longer for the old one. Otherwise the event is stale (renamed back since) or not WeCom's,
    and moving the guide's customers and history to another id would be wrong.
    """
    target = new_userid or userid
    info = await _user_get(wecom, target)
    renaming = bool(new_userid) and new_userid != userid
    confirmed = renaming and info is not None and await _user_get(wecom, userid) is None
    await lock_directory(session)
    if confirmed:
        await rename_guide(session, userid, target, at)
    elif renaming:
        log.info(
            "update_user %s -> %s not renamed: WeCom does not confirm it (user/get finds %s)",
            userid,
            target,
            "both ids" if info is not None else f"no {target}",
        )
    if info is None:
        # Gone again already (the events came out of order): the delete_user event, or the
        # nightly sync, settles it. Don't make a departed member active.
        log.info("change_contact for %s: user/get says the member is gone; not applied", target)
        return
    await upsert_guide(
        session,
        target,
        name=info.get("name"),
        main_department=info.get("main_department") or main_department,
        departments=[int(d) for d in info.get("department") or departments],
        at=at,
    )


async def apply_user_deleted(
    session: AsyncSession, wecom: WeComClient, *, userid: str, at: datetime
) -> None:
    if await _user_get(wecom, userid) is not None:
        # user/get still finds the member: this delete is older than a re-creation.
        log.info("delete_user for %s ignored: the member exists in WeCom", userid)
        return
    await lock_directory(session)
    await mark_left(session, userid, at)


async def _user_get(wecom: WeComClient, userid: str) -> dict[str, Any] | None:
    """user/get's member, or None when WeCom says there is no such member (any more)."""
    try:
        return await wecom.user_get(userid)
    except WeComError as exc:
        if exc.errcode not in MEMBER_GONE:
            raise  # transient or unexpected: the worker retries
        return None


async def apply_party_changed(
    session: AsyncSession, wecom: WeComClient, *, dept_id: int, at: datetime
) -> None:
    """create_party / update_party / delete_party: re-read the department, apply the truth."""
    try:
        found = [d for d in await wecom.department_list(dept_id) if int(d["id"]) == dept_id]
    except WeComError as exc:
        if exc.errcode not in DEPARTMENT_GONE:
            raise
        found = []
    await lock_directory(session)
    if found:
        dept = found[0]
        await upsert_department(
            session,
            dept_id,
            name=dept.get("name"),
            parent_id=dept.get("parentid"),
            order=dept.get("order"),
            now=at,
        )
    else:
        await mark_department_deleted(session, dept_id, at)
    await refresh_store_flags(session)
