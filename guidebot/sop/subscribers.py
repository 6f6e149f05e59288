"""The SOP engine as a hearer of the other domains' facts (guidebot.events).

Every fact arrives inside the emitter's transaction, after the emitter recorded it, so the
enrollments and tasks written here commit together with the relation, forward, open or order
that caused them.

* RelationAdded from a WeCom add callback (not an edit's discovery, not reconciliation or the
  demo, which WeCom announced to nobody): every enabled `customer.added` playbook whose audience
  matches enrolls the pair. A welcome step is sent right after the commit (events.after_commit),
  within the code's 20 s (guidebot.sop.welcome_lane batches the welcomes of adds that
  commit together).
* TagsGained (a guide's edit, a playbook's tag step, the nightly reconciliation's repair):
  playbooks listing `tag.added:<tag>` stop for this pair; if the relation is active,
  `tag.added` playbooks for those tags enroll it.
* GroupMemberJoined (a customer's join of a customer group, announced by WeCom): the
  `group.joined` playbooks whose filter picks the join enroll the customer with the group's
  owner, when their relation is active (guidebot.sop.group_joins).
* RelationEdited (the guide's remark or description changed): a birthday written or changed
  on the day itself enrolls the pair in the `date` playbooks of that day (guidebot.sop.dates),
  as the day's scan would have had it been written before.
* While a playbook is broken (disabled by an error), an add or a tag that meets its last good
  version's trigger is remembered (sop_missed), and enrolled when it is fixed within its
  `catch_up` horizon (guidebot.sop.catch_up).
* RelationEnded from a callback (del_follow_user: contact.lost; del_external_contact:
  contact.removed, or guide.changed for a transfer whose enrollments did not move): the pair's
  enrollments stop, pending tasks are skipped with the reason. Never another guide's.
* RelationEnded from any source (a callback, reconciliation): every task of the pair the
  guide could still act on (pending, sent, snoozed) closes with the reason
  (guidebot.sop.task_closing), so the guide's list never holds a customer who left.
* GuideLeft: the guide's enrollments stop and all their tasks close.
* RelationTransferred: running enrollments move to the takeover guide, and with them the
  handover's tasks that can follow (task_closing.hand_over_tasks); the others close.
* ContentForwarded with a task: the forwarding guide's task is done (completed by the sidebar).
* ContentOpened: a customer's open of a link that reached them (link_reached_customer) is the
  `content.opened` goal of the playbooks they are in with that guide.
* ContentOpened also enrolls `content.opened` playbooks, and StageChanged `stage.changed`
  ones, once per occurrence (guidebot.sop.behaviour).
* OrderPaid with a guide: the customer's enrollments with that guide that stop on order.paid
  stop, and their order.paid goals are credited.

Reconciliation's repairs are left to the checks at send time, as they always were.
An SOP failure never costs the emitter its record where enrolling is concerned: each
enrollment runs in a savepoint, and a failure is logged and leaves the rest to commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.models import EventSource, Relation, RelationStatus
from guidebot.events import (
    ContentForwarded,
    ContentOpened,
    GroupMemberJoined,
    GuideLeft,
    OrderPaid,
    PairFacts,
    PairNames,
    RelationAdded,
    RelationEdited,
    RelationEnded,
    RelationTransferred,
    StageChanged,
    StoreRef,
    Subscribers,
    TagsGained,
    after_commit,
)
from guidebot.sop.audience import Subject, audience_matches, birthday_of, subject_for, tag_keys
from guidebot.sop.behaviour import on_content_opened, on_stage_changed
from guidebot.sop.catch_up import record_missed
from guidebot.sop.context import SopRuntime
from guidebot.sop.dates import day_start, keeps_field, today_for
from guidebot.sop.dates import occurrence as date_occurrence
from guidebot.sop.enroll_batch import WelcomeClaim, enroll_all
from guidebot.sop.enrollment import (
    Enrolled,
    enroll,
    record_goal,
    stop_enrollments,
    transfer_enrollments,
)
from guidebot.sop.group_joins import announced, owner_relation, picking
from guidebot.sop.models import CompletedBy
from guidebot.sop.playbook import Playbook
from guidebot.sop.queries import OPENED, link_reached_customer
from guidebot.sop.task_closing import close_guide_tasks, end_pair, hand_over_tasks
from guidebot.sop.task_marks import TaskConflict, TaskNotFound, complete_task
from guidebot.sop.welcome_lane import Undrafted, Welcome, WelcomeLane, draft_welcome

log = logging.getLogger(__name__)

# The pair a hearer acts on: as the add's emitter handed it, or read.
Pair = Relation | PairFacts

# The stop reason for each way a relation ends.
_END_REASON = {
    RelationStatus.LOST: "contact.lost",
    RelationStatus.REMOVED: "contact.removed",
    # A transfer whose enrollments were not moved (no successor known): they end here.
    RelationStatus.TRANSFERRED: "guide.changed",
}


@dataclass(frozen=True, slots=True)
class SopSubscriber:
    """The engine hearing facts with the app's one SOP runtime: its playbooks, and for the
    welcome sent after the commit, its sessions, WeCom client and clock."""

    sop: SopRuntime
    welcomes: WelcomeLane = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "welcomes", WelcomeLane(self.sop))

    def subscribe(self, subscribers: Subscribers) -> None:
        subscribers.subscribe(RelationAdded, self.on_added)
        subscribers.subscribe(TagsGained, self.on_tags_gained)
        subscribers.subscribe(RelationEdited, self.on_edited)
        subscribers.subscribe(RelationEnded, self.on_ended)
        subscribers.subscribe(RelationTransferred, self.on_transferred)
        subscribers.subscribe(GuideLeft, self.on_guide_left)
        subscribers.subscribe(ContentForwarded, self.on_forwarded)
        subscribers.subscribe(ContentOpened, self.on_opened)
        subscribers.subscribe(OrderPaid, self.on_order_paid)
        subscribers.subscribe(StageChanged, self.on_stage_changed)
        subscribers.subscribe(GroupMemberJoined, self.on_group_joined)

    def _playbooks(self, trigger: str) -> list[Playbook]:
        return [p for p in self.sop.registry.enabled() if p.trigger.event == trigger]

    async def on_added(self, session: AsyncSession, event: RelationAdded) -> None:
        if event.source != EventSource.CALLBACK or event.by_edit:
            return
        relation = event.relation  # as contacts wrote it: no read
        if relation is None:
            relation = await _relation(session, event.guide_userid, event.external_userid)
        if relation is None or relation.status != RelationStatus.ACTIVE:
            return
        await self._missed(session, relation, event, lambda p: p.trigger.event == "customer.added")
        playbooks = self._playbooks("customer.added")
        if not playbooks:
            return
        # Where the add knew the names its text needs, the welcome goes in claimed for the lane,
        # drafted: sent without a claim or a read of its own (guidebot.sop.welcome_lane).
        names = event.names
        claim = self.welcomes.claim(event.now) if names is not None else None
        enrolled = await self._enroll_each(
            session,
            playbooks,
            relation,
            at=event.at,
            now=event.now,
            welcome_code=event.welcome_code,
            store=event.store,
            claim=claim,
        )
        for e in enrolled:
            if e.welcome_task_id is None:
                continue
            welcome: Welcome = e.welcome_task_id
            if e.welcome_row is not None and names is not None:
                welcome = self._draft(e, relation, names, event.store)
            after_commit(session, partial(self.welcomes.send, welcome))

    def _draft(
        self, e: Enrolled, relation: Pair, names: PairNames, store: StoreRef | None
    ) -> Welcome:
        """The claimed welcome drafted, or left for the lane to prepare as the tick would when
        its text cannot be drafted here (it meets the same error there, and says so)."""
        row = e.welcome_row
        assert row is not None and e.settings is not None
        try:
            return draft_welcome(self.sop, row, e.settings, relation, names, store)
        except Exception as exc:
            log.debug("welcome %s not drafted with the add (%s); prepared instead", row["id"], exc)
            return Undrafted(row["id"])

    async def on_tags_gained(self, session: AsyncSession, event: TagsGained) -> None:
        keys = sorted(tag_keys(event.tags))
        for key in keys:
            await stop_enrollments(
                session,
                external_userid=event.external_userid,
                guide_userid=event.guide_userid,
                reason=f"tag.added:{key}",
                now=event.now,
            )
        if not event.active:
            return
        relation = await _relation(session, event.guide_userid, event.external_userid)
        if relation is None:
            return
        await self._missed(
            session,
            relation,
            event,
            lambda p: p.trigger.event == "tag.added" and p.trigger.tag in keys,
        )
        playbooks = [p for p in self._playbooks("tag.added") if p.trigger.tag in keys]
        if playbooks:
            await self._enroll_each(session, playbooks, relation, at=event.at, now=event.now)

    async def on_group_joined(self, session: AsyncSession, event: GroupMemberJoined) -> None:
        playbooks = self._playbooks("group.joined")
        if not playbooks or not announced(event):
            return
        relation = await owner_relation(session, event)
        if relation is None:
            return
        playbooks = await picking(session, playbooks, event)
        if playbooks:
            await self._enroll_each(session, playbooks, relation, at=event.at, now=event.now)

    async def _missed(self, session: AsyncSession, relation: Pair, event, wanted) -> None:
        """Broken playbooks whose trigger this is: the pair is remembered, to be caught up
        when the file is fixed (guidebot.sop.catch_up)."""
        broken = [p for p in self.sop.registry.broken() if wanted(p)]
        if broken:
            await record_missed(
                session,
                broken,
                guide_userid=relation.guide_userid,
                external_userid=relation.external_userid,
                at=event.at,
                now=event.now,
            )

    async def on_edited(self, session: AsyncSession, event: RelationEdited) -> None:
        if not event.active or not {"remark", "description"} & set(event.changed):
            return
        playbooks = [p for p in self.sop.registry.enabled() if keeps_field(p)]
        if not playbooks:
            return
        relation = await _relation(session, event.guide_userid, event.external_userid)
        birthday = birthday_of(relation) if relation is not None else None
        if relation is None or birthday is None:
            return
        subject = await subject_for(session, relation)
        for playbook in playbooks:
            day = today_for(playbook, event.now, self.sop.settings.timezone)
            if (day.month, day.day) != birthday or not audience_matches(playbook.audience, subject):
                continue
            zone = playbook.timezone or self.sop.settings.timezone
            await self._enroll_one(
                session,
                playbook,
                subject,
                at=day_start(day, subject.store_zone, zone),
                now=event.now,
                occurrence=date_occurrence(day),
            )

    async def on_ended(self, session: AsyncSession, event: RelationEnded) -> None:
        if event.status not in _END_REASON:
            return
        # Whoever found the end, nobody can act on the pair's tasks any more; a callback's
        # end stops the pair's runs too.
        await end_pair(
            session,
            external_userid=event.external_userid,
            guide_userid=event.guide_userid,
            reason=_END_REASON[event.status],
            now=event.now,
            stop_runs=event.source == EventSource.CALLBACK,
        )

    async def on_transferred(self, session: AsyncSession, event: RelationTransferred) -> None:
        await transfer_enrollments(
            session,
            external_userid=event.external_userid,
            from_guide=event.from_guide,
            to_guide=event.to_guide,
            now=event.now,
        )
        await hand_over_tasks(
            session,
            external_userid=event.external_userid,
            from_guide=event.from_guide,
            to_guide=event.to_guide,
            now=event.now,
        )

    async def on_guide_left(self, session: AsyncSession, event: GuideLeft) -> None:
        await close_guide_tasks(session, event.guide_userid, event.now)

    async def on_forwarded(self, session: AsyncSession, event: ContentForwarded) -> None:
        if event.task_id is None:
            return
        try:
            await complete_task(
                session,
                event.task_id,
                CompletedBy.SIDEBAR,
                event.now,
                guide_userid=event.guide_userid,
            )
        except (TaskNotFound, TaskConflict) as exc:
            log.info(
                "task %s not completed by %s's forward: %s", event.task_id, event.guide_userid, exc
            )

    async def on_opened(self, session: AsyncSession, event: ContentOpened) -> None:
        if not await session.scalar(select(link_reached_customer(event.link_nonce, event.task_id))):
            return
        await record_goal(
            session,
            external_userid=event.external_userid,
            event=OPENED,
            at=event.at,
            guide_userid=event.guide_userid,
        )
        await on_content_opened(self.sop, session, event)

    async def on_stage_changed(self, session: AsyncSession, event: StageChanged) -> None:
        await on_stage_changed(self.sop, session, event)

    async def on_order_paid(self, session: AsyncSession, event: OrderPaid) -> None:
        if event.guide_userid is None or event.external_userid is None:
            return
        await stop_enrollments(
            session,
            external_userid=event.external_userid,
            guide_userid=event.guide_userid,
            reason="order.paid",
            now=event.now,
        )
        await record_goal(
            session,
            external_userid=event.external_userid,
            event="order.paid",
            at=event.paid_at,
            guide_userid=event.guide_userid,
        )

    async def _enroll_each(
        self,
        session: AsyncSession,
        playbooks: list[Playbook],
        relation: Pair,
        *,
        at: datetime,
        now: datetime,
        welcome_code: str | None = None,
        store: StoreRef | None = None,
        claim: WelcomeClaim | None = None,
    ) -> list[Enrolled]:
        """Enroll the pair in each playbook whose audience matches; what enrolled.

        All together first (guidebot.sop.enroll_batch, a welcome claimed with `claim`); if that
        fails, playbook by playbook, each in its own savepoint, so a failure is logged and
        stays with its playbook."""
        subject = await subject_for(session, relation, store)
        matching = [p for p in playbooks if audience_matches(p.audience, subject)]
        try:
            enrolled = await enroll_all(
                session,
                matching,
                subject,
                at=at,
                now=now,
                default_timezone=self.sop.settings.timezone,
                welcome_code=welcome_code,
                claim=claim,
            )
        except Exception as exc:
            log.warning(
                "enrolling %s/%s in %d playbook(s) together failed (%s); one by one",
                subject.guide_userid,
                subject.external_userid,
                len(matching),
                exc,
            )
            enrolled = []
            for playbook in matching:
                one = await self._enroll_one(
                    session, playbook, subject, at=at, now=now, welcome_code=welcome_code
                )
                if one is not None:
                    enrolled.append(one)
        return enrolled

    async def _enroll_one(
        self,
        session: AsyncSession,
        playbook: Playbook,
        subject: Subject,
        *,
        at: datetime,
        now: datetime,
        welcome_code: str | None = None,
        occurrence: str | None = None,
    ) -> Enrolled | None:
        """Enroll in a savepoint: a failure is logged and the event's other work goes on."""
        try:
            async with session.begin_nested():
                return await enroll(
                    session,
                    playbook,
                    subject,
                    at=at,
                    now=now,
                    default_timezone=self.sop.settings.timezone,
                    welcome_code=welcome_code,
                    occurrence=occurrence,
                )
        except Exception:
            log.exception(
                "enrolling %s/%s in %s failed; the event's other work goes on",
                subject.guide_userid,
                subject.external_userid,
                playbook.id,
            )
            return None


async def _relation(session: AsyncSession, userid: str, ext: str) -> Relation | None:
    return await session.scalar(
        select(Relation)
        .where(Relation.guide_userid == userid, Relation.external_userid == ext)
        .execution_options(populate_existing=True)
    )


__all__ = ["SopSubscriber"]
