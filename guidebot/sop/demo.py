"""The SOP side of `guidebot demo`: the guides at work on their tasks.

* `backfill_tasks`: a customer of the demo's past week enrolls in the `customer.added`
  playbooks as of the add, as if guidebot had been running; the tasks due since are settled the
  way guides and the engine settle them (the welcome sent; most guide tasks done from the
  sidebar or the bot, some skipped with a reason, a few still waiting), so the dashboard's task
  figures (due, done, on time) and the guides' lists have something to show.
* `tasks_to_finish`: a few tasks due now, for the live traffic's guides to finish, skip or put
  off by writing to the bot (guidebot.demo sends those messages through the simulated WeCom).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.models import Relation, RelationStatus
from guidebot.sop.actions import action_for
from guidebot.sop.audience import audience_matches, subject_for
from guidebot.sop.completion import complete_enrollments
from guidebot.sop.enrollment import enroll
from guidebot.sop.models import CompletedBy, SopTask, TaskStatus
from guidebot.sop.playbook import Playbook
from guidebot.sop.queries import actionable_by_guide

SKIP_REASONS = ("客户在外地", "已电话联系", "客户暂不需要")


async def backfill_tasks(
    session: AsyncSession,
    playbooks: list[Playbook],
    rng: random.Random,
    *,
    guide: str,
    customer: str,
    at: datetime,
    now: datetime,
    default_timezone: str,
) -> int:
    """Enroll the pair as of `at` in each `customer.added` playbook; settle what fell due since.
    The number of tasks settled."""
    relation = await session.scalar(
        select(Relation).where(Relation.guide_userid == guide, Relation.external_userid == customer)
    )
    if relation is None or relation.status != RelationStatus.ACTIVE:
        return 0  # a customer who left since enrolled in nothing that still shows
    subject = await subject_for(session, relation)
    settled = 0
    for playbook in playbooks:
        if playbook.trigger.event != "customer.added":
            continue
        if not audience_matches(playbook.audience, subject):
            continue
        enrolled = await enroll(
            session, playbook, subject, at=at, now=now, default_timezone=default_timezone
        )
        if enrolled is None:
            continue
        tasks = await session.scalars(
            select(SopTask).where(
                SopTask.enrollment_id == enrolled.enrollment_id,
                SopTask.due_at <= now,
                SopTask.status == TaskStatus.PENDING,
            )
        )
        for task in tasks:
            _settle_as_then(task, rng, now)
            settled += 1
        await session.flush()
        await complete_enrollments(session, [enrolled.enrollment_id], now)
    return settled


def _settle_as_then(task: SopTask, rng: random.Random, now: datetime) -> None:
    """What became of a past task: sent by the engine, or acted on (or not yet) by the guide."""
    task.sent_at, task.welcome_code, task.updated_at = task.due_at, None, now
    action = action_for(task.action)
    if action is None or not action.guide_facing:
        task.status = TaskStatus.DONE if task.action == "tag" else TaskStatus.SENT
        task.completed_at, task.completed_by = task.due_at, CompletedBy.ENGINE
        return
    roll = rng.random()
    if roll < 0.7:
        task.status = TaskStatus.DONE
        later = task.due_at + timedelta(hours=rng.uniform(0.2, 30))
        task.completed_at = min(later, now - timedelta(minutes=1))
    elif roll < 0.8:
        task.status = TaskStatus.SKIPPED
        task.reason = rng.choice(SKIP_REASONS)
        task.completed_at = min(task.due_at + timedelta(hours=rng.uniform(0.5, 8)), now)
    else:
        task.status = TaskStatus.SENT  # still waiting for the guide
        return
    task.completed_by = rng.choice((CompletedBy.SIDEBAR, CompletedBy.BOT))
    task.completed_by_user = task.guide_userid


async def tasks_to_finish(
    session: AsyncSession, now: datetime, rng: random.Random, *, limit: int = 2
) -> list[tuple[str, str]]:
    """(guide, what they write to the bot) for a few tasks due now: mostly 完成 N, sometimes
    跳过 N 原因 or 稍后 N 2h."""
    rows = (
        await session.execute(
            select(SopTask.guide_userid, SopTask.id)
            .where(*actionable_by_guide(None), SopTask.due_at <= now)
            .order_by(func.random())
            .limit(limit)
        )
    ).all()
    said = []
    for guide, task_id in rows:
        roll = rng.random()
        if roll < 0.75:
            said.append((guide, f"完成 {task_id}"))
        elif roll < 0.9:
            said.append((guide, f"跳过 {task_id} {rng.choice(SKIP_REASONS)}"))
        else:
            said.append((guide, f"稍后 {task_id} 2h"))
    return said
