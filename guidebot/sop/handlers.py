"""Contact events as the SOP engine sees them: enroll, stop, and the welcome fast path.

The dispatcher offers each event to `before` (ahead of contacts), to contacts, then to
`router`, all in the event's one transaction. So by the time `router` runs, contacts has
recorded the relation change, and the enrollment and its task rows commit together with it.

* add (customer.added): every enabled playbook whose audience matches enrolls the pair, if
  contacts logged this add as new (`added`/`reactivated`, not a transfer or a duplicate). A
  welcome step is sent right after the commit (after_commit), within the code's 20 s.
* edit: tags gained (compared with what `before` saw) stop playbooks listing
  `tag.added:<tag>` for this pair and enroll `tag.added` playbooks.
* del_follow_user → contact.lost; del_external_contact → contact.removed (or guide.changed
  for a transfer whose successor was not moved to): the pair's enrollments stop, pending tasks
  are skipped with the reason. Never another guide's.

An SOP failure never costs contacts its record: each enrollment runs in a savepoint, and a
failure is logged and leaves the event's other work to commit.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.clock import Clock
from guidebot.config import Settings
from guidebot.contacts.models import EventKind, Relation, RelationEvent, RelationStatus
from guidebot.intake.router import Router
from guidebot.sop.audience import audience_matches, subject_for, tag_keys
from guidebot.sop.context import SopRuntime
from guidebot.sop.enrollment import enroll, stop_enrollments
from guidebot.sop.playbook import Playbook
from guidebot.sop.tick import run_tasks
from guidebot.wecom.events import (
    AddExternalContact,
    AddHalfExternalContact,
    DelExternalContact,
    DelFollowUser,
    EditExternalContact,
)

log = logging.getLogger(__name__)

router = Router("sop")
# Runs before contacts: remembers a pair's tags so `router` can tell which were added.
before = Router("sop-before")

_TAGS_BEFORE = "sop.tags_before"


@before.on(EditExternalContact)
async def remember_tags(event: EditExternalContact, session: AsyncSession) -> None:
    tags = await session.scalar(
        select(Relation.tags).where(
            Relation.guide_userid == event.userid,
            Relation.external_userid == event.external_userid,
        )
    )
    seen = session.info.setdefault(_TAGS_BEFORE, {})
    seen[(event.userid, event.external_userid)] = {
        str(t.get("id") or t.get("name")) for t in tags or () if isinstance(t, dict)
    }


async def _relation(session: AsyncSession, userid: str, ext: str) -> Relation | None:
    return await session.scalar(
        select(Relation)
        .where(Relation.guide_userid == userid, Relation.external_userid == ext)
        .execution_options(populate_existing=True)
    )


def _playbooks(sop: SopRuntime, event: str) -> list[Playbook]:
    return [p for p in sop.registry.enabled() if p.trigger.event == event]


async def _enroll_each(
    session: AsyncSession,
    playbooks: list[Playbook],
    relation: Relation,
    *,
    at: datetime,
    now: datetime,
    settings: Settings,
    welcome_code: str | None = None,
) -> list[int]:
    """Enroll the pair in each playbook whose audience matches; the welcome task ids."""
    subject = await subject_for(session, relation)
    welcomes: list[int] = []
    for playbook in playbooks:
        if not audience_matches(playbook.audience, subject):
            continue
        try:
            async with session.begin_nested():
                enrolled = await enroll(
                    session,
                    playbook,
                    subject,
                    at=at,
                    now=now,
                    default_timezone=settings.timezone,
                    welcome_code=welcome_code,
                )
        except Exception:
            log.exception(
                "enrolling %s/%s in %s failed; the event's other work goes on",
                relation.guide_userid,
                relation.external_userid,
                playbook.id,
            )
            continue
        if enrolled is not None and enrolled.welcome_task_id is not None:
            welcomes.append(enrolled.welcome_task_id)
    return welcomes


def _welcome_later(sop: SopRuntime, task_id: int) -> Callable[[], Awaitable[Any]]:
    async def send() -> None:
        await run_tasks(sop.claimer(), sop.clock.now(), ids=[task_id])

    return send


@router.on(AddExternalContact, AddHalfExternalContact)
async def on_added(
    event: AddExternalContact | AddHalfExternalContact,
    session: AsyncSession,
    clock: Clock,
    settings: Settings,
    sop: SopRuntime,
    inbox_id: int,
    after_commit: list,
) -> None:
    # Enroll only an add contacts recorded as new just now: not a duplicate delivery, not the
    # takeover side of a transfer (its enrollments move instead), not an add arriving after
    # the delete that ended it.
    fresh = await session.scalar(
        select(RelationEvent.id).where(
            RelationEvent.inbox_id == inbox_id,
            RelationEvent.guide_userid == event.userid,
            RelationEvent.external_userid == event.external_userid,
            RelationEvent.kind.in_((EventKind.ADDED, EventKind.REACTIVATED)),
        )
    )
    if fresh is None:
        return
    relation = await _relation(session, event.userid, event.external_userid)
    if relation is None or relation.status != RelationStatus.ACTIVE:
        return
    playbooks = _playbooks(sop, "customer.added")
    if not playbooks:
        return
    welcomes = await _enroll_each(
        session,
        playbooks,
        relation,
        at=event.create_time,
        now=clock.now(),
        settings=settings,
        welcome_code=event.welcome_code,
    )
    for task_id in welcomes:
        after_commit.append(_welcome_later(sop, task_id))


@router.on(EditExternalContact)
async def on_edited(
    event: EditExternalContact,
    session: AsyncSession,
    clock: Clock,
    settings: Settings,
    sop: SopRuntime,
) -> None:
    pair = (event.userid, event.external_userid)
    seen: set[str] = session.info.get(_TAGS_BEFORE, {}).pop(pair, set())
    relation = await _relation(session, *pair)
    if relation is None:
        return
    gained = [
        t
        for t in relation.tags or ()
        if isinstance(t, dict) and str(t.get("id") or t.get("name")) not in seen
    ]
    if not gained:
        return
    now = clock.now()
    keys = sorted(tag_keys(gained))
    for key in keys:
        await stop_enrollments(
            session,
            external_userid=event.external_userid,
            guide_userid=event.userid,
            reason=f"tag.added:{key}",
            now=now,
        )
    if relation.status != RelationStatus.ACTIVE:
        return
    playbooks = [p for p in _playbooks(sop, "tag.added") if p.trigger.tag in keys]
    if playbooks:
        await _enroll_each(
            session, playbooks, relation, at=event.create_time, now=now, settings=settings
        )


@router.on(DelFollowUser)
async def on_customer_left(event: DelFollowUser, session: AsyncSession, clock: Clock) -> None:
    await _ended(session, event.userid, event.external_userid, clock.now())


@router.on(DelExternalContact)
async def on_guide_deleted(event: DelExternalContact, session: AsyncSession, clock: Clock) -> None:
    await _ended(session, event.userid, event.external_userid, clock.now())


async def _ended(session: AsyncSession, userid: str, ext: str, now: datetime) -> None:
    """Stop the pair's enrollments if contacts ended the relation (an older event did not)."""
    relation = await _relation(session, userid, ext)
    if relation is None or relation.status == RelationStatus.ACTIVE:
        return
    reason = {
        RelationStatus.LOST: "contact.lost",
        RelationStatus.REMOVED: "contact.removed",
        # A transfer whose enrollments were not moved (no successor known): they end here.
        RelationStatus.TRANSFERRED: "guide.changed",
    }[relation.status]
    await stop_enrollments(
        session, external_userid=ext, guide_userid=userid, reason=reason, now=now, force=True
    )


__all__ = ["before", "router"]
