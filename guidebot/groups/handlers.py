"""change_external_chat (doc 96361): the group is read from WeCom first (groupchat/get, before
the transaction, so SQLite's writer is not held across the network), then recorded.

A dismiss needs no read. A group WeCom no longer gives (49008 dismissed, 90501 not a customer
group) is recorded from the callback alone; any other WeCom failure raises, and the worker
retries the event.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.clock import Clock
from guidebot.groups.members import Change
from guidebot.groups.models import GroupSource
from guidebot.groups.service import ChatChange, record_chat_change
from guidebot.intake.router import Router
from guidebot.wecom.client import WeComClient, WeComError
from guidebot.wecom.events import ExternalChatEvent

router = Router("groups")

GONE = frozenset({49008, 90501, 90509})  # dismissed; not (or no longer) a customer group


async def read_group(wecom: WeComClient, chat_id: str) -> dict[str, Any] | None:
    """groupchat/get's group_chat, or None when WeCom says the group is gone."""
    try:
        return await wecom.groupchat_get(chat_id, need_name=True)
    except WeComError as exc:
        if exc.errcode in GONE:
            return None
        raise


@router.on(ExternalChatEvent)
async def on_group_changed(
    event: ExternalChatEvent,
    session: AsyncSession,
    wecom: WeComClient,
    clock: Clock,
    inbox_id: int,
) -> None:
    snapshot = None
    if event.change_type != "dismiss":
        snapshot = await read_group(wecom, event.chat_id)
    await record_chat_change(
        session,
        ChatChange(
            chat_id=event.chat_id,
            change_type=event.change_type,
            at=event.create_time,
            detail=event.update_detail,
            join_scene=event.join_scene,
            quit_scene=event.quit_scene,
            members=tuple(event.mem_change_list),
            last_version=event.last_mem_ver,
        ),
        snapshot,
        Change(GroupSource.CALLBACK, clock.now(), inbox_id),
    )
