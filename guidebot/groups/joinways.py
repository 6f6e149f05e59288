"""「加入群聊」 join ways: a QR code (or mini-program plugin) leading into up to 5 customer
groups, told apart by `state` (doc 99547).

The state is written as the contact ways' is (guidebot.contacts.ways: ``s{store}:{channel}
[:{campaign}]``, at most 30 characters), so a join is attributed to a store, a channel and a
campaign: WeCom gives the state of each member who joined through the code in groupchat/get
(the change_external_chat callback says only JoinScene 3). API-made ways are not shown in
WeCom's console and only the app that made one may read or delete it, so each is kept here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.directory import find_store, require_store
from guidebot.contacts.errors import Conflict, Invalid, NotFound, Upstream
from guidebot.contacts.ways import make_state
from guidebot.groups.models import CustomerGroup, GroupJoinWay, GroupStatus
from guidebot.wecom.client import WeComClient, WeComError, WeComUncertain

log = logging.getLogger(__name__)

MAX_CHATS = 5  # doc 99547: a join way links at most 5 groups (41091)
REMARK_MAX = 30  # doc 99547: longer remarks are cut
ROOM_BASE_NAME_MAX = 40


async def _check_groups(session: AsyncSession, chat_ids: Sequence[str]) -> None:
    if not 1 <= len(chat_ids) <= MAX_CHATS:
        raise Invalid(
            f"一个加入群聊二维码关联 1 至 {MAX_CHATS} 个群 / a join way links 1 to {MAX_CHATS} "
            f"groups, got {len(chat_ids)}"
        )
    live = set(
        await session.scalars(
            select(CustomerGroup.chat_id).where(
                CustomerGroup.chat_id.in_(chat_ids), CustomerGroup.status == GroupStatus.ACTIVE
            )
        )
    )
    unknown = [c for c in chat_ids if c not in live]
    if unknown:
        raise NotFound(f"没有这个客户群 / no customer group {', '.join(map(repr, unknown))}")


def _check_options(scene: int, remark: str | None, room_base_name: str | None) -> None:
    if scene not in (1, 2):
        raise Invalid("scene 为 1（小程序插件）或 2（二维码）/ scene is 1 (plugin) or 2 (QR)")
    if remark is not None and len(remark) > REMARK_MAX:
        raise Invalid(f"备注最多 {REMARK_MAX} 字 / remark is at most {REMARK_MAX} characters")
    if room_base_name is not None and len(room_base_name) > ROOM_BASE_NAME_MAX:
        raise Invalid(
            f"群名前缀最多 {ROOM_BASE_NAME_MAX} 字 / room_base_name is at most "
            f"{ROOM_BASE_NAME_MAX} characters"
        )


async def _add_in_wecom(wecom: WeComClient, **fields: Any) -> tuple[str, str | None]:
    """add_join_way, then (for a QR way) get_join_way for its picture: (config_id, qr_code)."""
    state = fields["state"]
    try:
        config_id = await wecom.add_join_way(**fields)
        if fields["scene"] != 2:
            return config_id, None
        return config_id, (await wecom.get_join_way(config_id)).get("qr_code")
    except WeComUncertain as exc:
        # add_join_way is not idempotent: WeCom may hold a way we cannot name. Say so.
        log.error("add_join_way for state %s: outcome unknown: %s", state, exc)
        raise Upstream(
            f"企业微信未答复是否已创建 / WeCom did not answer whether the join way for {state!r} "
            "was created",
            exc.errcode,
        ) from exc
    except WeComError as exc:
        raise Upstream(
            f"企业微信拒绝了加入群聊二维码 / WeCom refused the join way: errcode {exc.errcode} "
            f"{exc.errmsg}",
            exc.errcode,
        ) from exc


async def create_join_way(
    session: AsyncSession,
    wecom: WeComClient,
    now: datetime,
    *,
    store: str | int,
    channel: str,
    chat_ids: Sequence[str],
    campaign: str | None = None,
    scene: int = 2,
    remark: str | None = None,
    auto_create_room: bool = True,
    room_base_name: str | None = None,
    room_base_id: int | None = None,
) -> GroupJoinWay:
    """Create a join way through WeCom and keep it. Commits once after checking (SQLite's
    writer is not held across the WeCom call) and once after storing. Raises NotFound,
    Invalid, Conflict or Upstream."""
    chat_ids = list(dict.fromkeys(chat_ids))
    _check_options(scene, remark, room_base_name)
    found = await find_store(session, store)
    if found is None or not found.is_store:
        raise NotFound(f"没有这家门店 / no store {store!r}")
    try:
        state = make_state(found.code, channel, campaign)
    except Invalid as exc:  # the contact ways' rule, said in English there
        raise Invalid(
            "门店代码、渠道与活动组不成有效的 state（最多 30 字，仅字母、数字、_ . -）/ "
            + exc.reason
        ) from exc
    store_id = found.id
    await _check_groups(session, chat_ids)
    taken = await session.scalar(select(GroupJoinWay).where(GroupJoinWay.state == state))
    if taken is not None:
        raise Conflict(
            f"state {state!r} 已被加入群聊二维码 {taken.config_id} 使用 / is already used by "
            f"join way {taken.config_id}"
        )
    await session.commit()

    if not auto_create_room:
        room_base_name = room_base_id = None
    config_id, qr_code = await _add_in_wecom(
        wecom,
        scene=scene,
        chat_ids=chat_ids,
        state=state,
        remark=remark,
        auto_create_room=auto_create_room,
        room_base_name=room_base_name,
        room_base_id=room_base_id,
    )
    way = GroupJoinWay(
        config_id=config_id,
        state=state,
        store_id=store_id,
        channel=channel,
        campaign=campaign or None,
        scene=scene,
        chat_ids=chat_ids,
        remark=remark,
        auto_create_room=auto_create_room,
        room_base_name=room_base_name,
        room_base_id=room_base_id,
        qr_code=qr_code,
        created_at=now,
    )
    session.add(way)
    await session.commit()
    log.info("join way %s created: state %s, groups %s", config_id, state, chat_ids)
    return way


async def list_join_ways(
    session: AsyncSession, *, store: str | int | None = None
) -> list[GroupJoinWay]:
    query = select(GroupJoinWay).order_by(GroupJoinWay.created_at, GroupJoinWay.config_id)
    if store is not None:
        found = await require_store(session, store)
        query = query.where(GroupJoinWay.store_id == found.id)
    return list(await session.scalars(query))


async def delete_join_way(session: AsyncSession, wecom: WeComClient, config_id: str) -> None:
    """Delete the way in WeCom (its code stops working) and here."""
    way = await session.get(GroupJoinWay, config_id)
    if way is None:
        raise NotFound(f"没有这个加入群聊二维码 / no join way {config_id!r}")
    await session.commit()
    try:
        await wecom.del_join_way(config_id)
    except WeComError as exc:
        if exc.errcode != 41044:  # WeCom no longer has it: forget it here too
            raise Upstream(
                f"企业微信拒绝删除 / WeCom refused to delete the join way: errcode {exc.errcode}",
                exc.errcode,
            ) from exc
    way = await session.get(GroupJoinWay, config_id)
    if way is not None:
        await session.delete(way)
    await session.commit()
