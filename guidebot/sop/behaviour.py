"""Behaviour triggers: playbooks that enroll on what a customer did, or stopped doing.

Each fires once per **occurrence**, and the occurrence is the enrollment's `cycle`
(unique per playbook, scope and customer), so a replayed or duplicated fact, a second
instance's scan or a restart never enrolls twice:

* `content.opened` (`item:` / `tag:` narrow it): ContentOpened of a link that reached the
  customer, in the open's transaction. Occurrence `opened:<link nonce>`: the link, so
  opening it again is the same occurrence.
* `stage.changed` (`from:` / `to:`): StageChanged, in the change's transaction. Occurrence
  `stage:<to>:<instant of the change>`.
* `opened_no_order` (`after:`): the scan (guidebot.sop.behaviour_scan) finds a link's first
  open `after` old with no counted order paid by the customer since. `no_order:<link nonce>`.
* `silent` (`after:`): the scan finds no reply, open or order (nor add) for `after`
  (contacts' `last_active_at`). `silent:<instant of the last act>`: a new act, then silence
  again, is a new occurrence.
* `repurchase_due` (`after:`, `orders:`): the scan finds `after` since the last counted
  (paid, not refunded) order. `repurchase:<instant of that order>`.

The pair enrolled is the fact's guide (the link's, the stage's latest guide) with the customer,
if their relation is active and the playbook's audience matches. The playbook's own `enroll`
rules still hold over occurrences: one run at a time, and a second occurrence enrolls only
after `reenter_after`. Steps then follow the send window and the daily cap like every other
playbook's (guidebot.sop.prepare).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.models import Relation, RelationStatus
from guidebot.content.models import ContentItem
from guidebot.events import ContentOpened, StageChanged
from guidebot.sop.audience import audience_matches, subject_for
from guidebot.sop.context import SopRuntime
from guidebot.sop.enrollment import enroll
from guidebot.sop.playbook import Playbook

log = logging.getLogger(__name__)


def instant_key(at: datetime) -> str:
    """An instant in an occurrence key: UTC to the microsecond (`20260313T125500.000000`)."""
    return f"{at.astimezone(UTC):%Y%m%dT%H%M%S.%f}"


def opened_key(nonce: str) -> str:
    return f"opened:{nonce}"


def no_order_key(nonce: str) -> str:
    return f"no_order:{nonce}"


def stage_key(to_stage: str, at: datetime) -> str:
    return f"stage:{to_stage}:{instant_key(at)}"


def silent_key(last_active: datetime) -> str:
    return f"silent:{instant_key(last_active)}"


def repurchase_key(paid_at: datetime) -> str:
    return f"repurchase:{instant_key(paid_at)}"


def playbooks_for(sop: SopRuntime, trigger: str) -> list[Playbook]:
    return [p for p in sop.registry.enabled() if p.trigger.event == trigger]


async def enroll_pair(
    sop: SopRuntime,
    session: AsyncSession,
    playbook: Playbook,
    *,
    guide_userid: str,
    external_userid: str,
    at: datetime,
    now: datetime,
    occurrence: str,
) -> bool:
    """Enroll the pair for this occurrence if their relation is active and the audience
    matches; whether it enrolled. Raises what enrolling raises (the caller isolates)."""
    relation = await session.scalar(
        select(Relation).where(
            Relation.guide_userid == guide_userid,
            Relation.external_userid == external_userid,
            Relation.status == RelationStatus.ACTIVE,
        )
    )
    if relation is None:
        return False
    subject = await subject_for(session, relation)
    if not audience_matches(playbook.audience, subject):
        return False
    enrolled = await enroll(
        session,
        playbook,
        subject,
        at=at,
        now=now,
        default_timezone=sop.settings.timezone,
        occurrence=occurrence,
    )
    return enrolled is not None


async def _each(
    sop: SopRuntime,
    session: AsyncSession,
    playbooks: list[Playbook],
    guide_userid: str,
    external_userid: str,
    at: datetime,
    now: datetime,
    occurrence: str,
) -> None:
    """Each playbook in its own savepoint: a failure is logged, the fact's other work goes on."""
    for playbook in playbooks:
        try:
            async with session.begin_nested():
                await enroll_pair(
                    sop,
                    session,
                    playbook,
                    guide_userid=guide_userid,
                    external_userid=external_userid,
                    at=at,
                    now=now,
                    occurrence=occurrence,
                )
        except Exception:
            log.exception(
                "enrolling %s/%s in %s (%s) failed; the fact's other work goes on",
                guide_userid,
                external_userid,
                playbook.id,
                occurrence,
            )


async def on_content_opened(sop: SopRuntime, session: AsyncSession, event: ContentOpened) -> None:
    """`content.opened` playbooks, for an open of a link that reached the customer (the
    caller checked); `item` and `tag` narrow it to one library item or a tag of items."""
    playbooks = playbooks_for(sop, "content.opened")
    if not playbooks:
        return
    item = await session.get(ContentItem, event.item_id)
    wanted = [
        p
        for p in playbooks
        if (p.trigger.item is None or (item is not None and item.key == p.trigger.item))
        and (p.trigger.tag is None or (item is not None and p.trigger.tag in (item.tags or [])))
    ]
    await _each(
        sop,
        session,
        wanted,
        event.guide_userid,
        event.external_userid,
        event.at,
        event.now,
        opened_key(event.link_nonce),
    )


async def on_stage_changed(sop: SopRuntime, session: AsyncSession, event: StageChanged) -> None:
    """`stage.changed` playbooks whose `from` and `to` match the change."""
    wanted = [
        p
        for p in playbooks_for(sop, "stage.changed")
        if p.trigger.from_stage in (None, event.from_stage)
        and p.trigger.to_stage in (None, event.to_stage)
    ]
    if not wanted:
        return
    await _each(
        sop,
        session,
        wanted,
        event.guide_userid,
        event.external_userid,
        event.at,
        event.now,
        stage_key(event.to_stage, event.at),
    )


__all__ = [
    "enroll_pair",
    "instant_key",
    "no_order_key",
    "on_content_opened",
    "on_stage_changed",
    "opened_key",
    "repurchase_key",
    "silent_key",
    "stage_key",
]
