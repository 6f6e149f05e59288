"""A step's message: the closed set of template variables, tracked content links."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.models import Customer, Department, Guide, Relation
from guidebot.content.links import link_url, mint
from guidebot.content.models import ContentItem
from guidebot.content.service import is_live
from guidebot.sop.actions import action_for
from guidebot.sop.actions.base import StepAction
from guidebot.sop.context import SopRuntime
from guidebot.sop.models import SopEnrollment, SopTask
from guidebot.sop.queries import ACTION_NAMES


def message_for(
    runtime: SopRuntime,
    action: StepAction,
    task: SopTask,
    enrollment: SopEnrollment,
    customer: Customer | None,
    guide: Guide | None,
    store: Department | None,
    relation: Relation | None,
    content: Any = None,
    now: datetime | None = None,
) -> tuple[str | None, tuple[str, dict[str, Any]] | None]:
    """(the text, None) for a step without a template; (None, (template, variables)) for one
    whose template is still to render."""
    variables = message_variables(
        runtime, task, enrollment, customer, guide, store, relation, content, now
    )
    if task.template:
        return None, (task.template, variables)
    text = action.default_message(task, variables)
    if text is not None:
        return text, None
    raise ValueError(f"step {task.step_id!r} has no template to send")


def message_variables(
    runtime: SopRuntime,
    task: SopTask,
    enrollment: SopEnrollment,
    customer: Customer | None,
    guide: Guide | None,
    store: Department | None,
    relation: Relation | None,
    content: Any = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The closed set of template variables (templates.ALLOWED_VARIABLES).

    A step's content item becomes a tracked link that carries the guide, the customer and this
    task, so its opens (and the orders after them) are credited to the right place.

    customer.name is the customer's WeCom name, else the guide's remark. With neither (the
    profile is not fetched yet: an add recorded from the event alone), a message to the
    customer gets an empty name ("{{ customer.name }}您好" reads "您好"), never their raw id; a
    reminder to the guide names the customer by id, so the guide can still tell who it is.
    """
    remark = relation.remark if relation is not None else None
    name = (customer.name if customer else None) or remark
    if not name:
        action = action_for(task.action)
        to_customer = action is not None and action.to_customer
        name = "" if to_customer else task.external_userid
    settings = enrollment.settings or {}
    tracked = _tracked_link(runtime, task, content, now)
    return {
        "customer": {
            "name": name,
            "external_userid": task.external_userid,
            "remark": remark or name,
        },
        "guide": {
            "name": (guide.name if guide else None) or task.guide_userid,
            "userid": task.guide_userid,
        },
        "store": {
            "name": store.name if store else "",
            "code": store.code if store else "",
        },
        "content": {
            "id": task.content or "",
            "title": content.title if content is not None else "",
            "url": tracked,
        },
        "links": {"content": tracked, "task": runtime.task_url(task.id)},
        "playbook": {
            "id": task.playbook_id,
            "name": settings.get("name") or task.playbook_id,
            "version": task.playbook_version,
        },
        "step": {
            "id": task.step_id,
            "action": task.action,
            # What guides read (the step's `name`, else its action's), never the id.
            "name": (settings.get("step_names") or {}).get(task.step_id)
            or ACTION_NAMES["zh"].get(task.action, task.action),
        },
    }


async def content_items(session: AsyncSession, refs: set[str], now: datetime) -> dict[str, Any]:
    """Live content items named by steps (by key, or by id), under every name they go by."""
    if not refs:
        return {}
    ids = [int(ref) for ref in refs if ref.isdigit()]
    items = await session.scalars(
        select(ContentItem).where(or_(ContentItem.key.in_(refs), ContentItem.id.in_(ids)))
    )
    found: dict[str, Any] = {}
    for item in items:
        if is_live(item, now):
            found[item.key] = found[str(item.id)] = item
    return found


def _tracked_link(runtime: SopRuntime, task: SopTask, content: Any, now: datetime | None) -> str:
    if content is None or now is None:
        return ""
    token, _ = mint(
        runtime.settings.secret_key,
        item_id=content.id,
        guide=task.guide_userid,
        customer=task.external_userid,
        task_id=task.id,
        step=task.step_id,
        now=now,
    )
    return link_url(runtime.settings.public_url, token)
