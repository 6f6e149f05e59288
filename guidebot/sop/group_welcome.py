"""A store's group welcome rendered from HQ's templates (templates/messages), in the same
sandbox as every message (guidebot.sop.templates), off the event loop; then kept in WeCom by
guidebot.groups.welcome.

The template sees `store` (name, code) and `customer`, whose name and remark are WeCom's
`%NICKNAME%`: WeCom puts the joining customer's nickname there. Any other variable is an error.
"""

from __future__ import annotations

from datetime import datetime

import jinja2
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.errors import Invalid
from guidebot.groups.models import StoreGroupWelcome
from guidebot.groups.welcome import NICKNAME, set_store_welcome, store_of
from guidebot.sop.templates import render_off_loop
from guidebot.wecom.client import WeComClient


async def render_group_welcome(env: jinja2.Environment, template: str, store) -> str:
    variables = {
        "store": {"name": store.name, "code": store.code},
        "customer": {"name": NICKNAME, "remark": NICKNAME, "external_userid": ""},
    }
    [result] = await render_off_loop(env, [(template, variables)])
    if isinstance(result, jinja2.TemplateError):
        raise Invalid(f"模板无法渲染 / template {template!r} does not render: {result}")
    return result


async def set_group_welcome(
    session: AsyncSession,
    wecom: WeComClient,
    env: jinja2.Environment,
    now: datetime,
    *,
    store: str | int,
    template: str,
    notify: bool = True,
) -> StoreGroupWelcome:
    """Render HQ's `template` for `store` and keep it as the store's group welcome in WeCom."""
    found = await store_of(session, store)
    text = await render_group_welcome(env, template, found)
    return await set_store_welcome(
        session, wecom, now, store=found, template=template, text=text, notify=notify
    )
