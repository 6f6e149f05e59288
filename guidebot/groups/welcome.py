"""A store's group welcome (入群欢迎语, doc 96357): one text per store, kept in WeCom's library
of group welcome templates; guides apply it to their groups in the client (WeCom has no API
that sends a group welcome). The text is HQ's template rendered for the store (by the SOP
engine's sandbox: guidebot.sop.group_welcome); `%NICKNAME%` in it becomes the joining
customer's nickname in WeCom.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.directory import find_store
from guidebot.contacts.errors import Invalid, NotFound, Upstream
from guidebot.contacts.models import Department
from guidebot.groups.models import StoreGroupWelcome
from guidebot.wecom.client import WeComClient, WeComError

log = logging.getLogger(__name__)

TEXT_BYTES = 3000  # doc 96357: add takes at most 3000 bytes of text (edit 4000)
NICKNAME = "%NICKNAME%"  # doc 96357: replaced by the joining customer's nickname


async def store_of(session: AsyncSession, store: str | int) -> Department:
    found = await find_store(session, store)
    if found is None or not found.is_store:
        raise NotFound(f"没有这家门店 / no store {store!r}")
    return found


def _checked(text: str) -> str:
    text = text.strip()
    if not text:
        raise Invalid("欢迎语为空 / the welcome renders to nothing")
    size = len(text.encode())
    if size > TEXT_BYTES:
        raise Invalid(
            f"欢迎语超过 {TEXT_BYTES} 字节 / the welcome is {size} bytes; WeCom takes {TEXT_BYTES}"
        )
    return text


async def set_store_welcome(
    session: AsyncSession,
    wecom: WeComClient,
    now: datetime,
    *,
    store: Department,
    template: str,
    text: str,
    notify: bool = True,
) -> StoreGroupWelcome:
    """Add the store's template to WeCom's library, or edit the one it has. Commits."""
    text = _checked(text)
    store_id = store.id
    existing = await session.get(StoreGroupWelcome, store_id)
    template_id = existing.template_id if existing else None
    await session.commit()
    content = {"text": {"content": text}}
    try:
        if template_id is None:
            template_id = await wecom.add_group_welcome_template(content, notify=notify)
        else:
            await wecom.edit_group_welcome_template(template_id, content)
    except WeComError as exc:
        raise Upstream(
            f"企业微信拒绝了入群欢迎语 / WeCom refused the group welcome: errcode {exc.errcode} "
            f"{exc.errmsg}",
            exc.errcode,
        ) from exc
    row = await session.get(StoreGroupWelcome, store_id)
    if row is None:
        row = StoreGroupWelcome(store_id=store_id, created_at=now)
        session.add(row)
    row.template, row.template_id, row.text, row.updated_at = template, template_id, text, now
    await session.commit()
    log.info("store %s group welcome %s set from %s", store_id, template_id, template)
    return row


async def get_store_welcome(session: AsyncSession, store: str | int) -> StoreGroupWelcome:
    found = await store_of(session, store)
    row = await session.get(StoreGroupWelcome, found.id)
    if row is None:
        raise NotFound(f"这家门店没有入群欢迎语 / store {store!r} has no group welcome")
    return row


async def list_store_welcomes(session: AsyncSession) -> list[StoreGroupWelcome]:
    return list(
        await session.scalars(select(StoreGroupWelcome).order_by(StoreGroupWelcome.store_id))
    )


async def delete_store_welcome(session: AsyncSession, wecom: WeComClient, store: str | int) -> None:
    row = await get_store_welcome(session, store)
    store_id, template_id = row.store_id, row.template_id
    await session.commit()
    try:
        await wecom.del_group_welcome_template(template_id)
    except WeComError as exc:
        raise Upstream(
            f"企业微信拒绝删除 / WeCom refused to delete the group welcome: errcode {exc.errcode}",
            exc.errcode,
        ) from exc
    row = await session.get(StoreGroupWelcome, store_id)
    if row is not None:
        await session.delete(row)
    await session.commit()
