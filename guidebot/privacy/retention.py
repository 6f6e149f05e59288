"""Retention: each table's records past their period are pruned in small batches.

| rule | table | kept | then |
| --- | --- | --- | --- |
| inbox | inbox_events | processed: GUIDEBOT_RETENTION_INBOX_DAYS after processing | plaintext,
  customer and error cleared; the dedupe key and kind stay. Pending and failed events stay. |
| tasks | sop_tasks | settled (not open, not awaiting the guide): TASKS_DAYS after due and last
  change | deleted; the days they counted in are frozen first |
| bot_replies | bot_replies | answered (or given up): BOT_REPLIES_DAYS | deleted |
| opens | content_opens | OPENS_DAYS (at least 91: the attribution window) | deleted; the
  unique-visitor rows the rollups count stay |
| visitor_ties | content_visitor_customers | OPENS_DAYS after the browser last opened a link
  naming the customer (a visitor id lives 365 days) | deleted |
| forwards | content_forwards | repeat forwards: FORWARDS_DAYS | deleted; each item's first
  forward to a customer, which the rollups count, stays |
| alerts | lost_alerts | sent ones: ALERTS_DAYS after the loss | deleted (the figures count
  relation_events) |
| audit | audit_log | AUDIT_DAYS | deleted |

Each batch is one short transaction: read up to `batch` primary keys past their time, after
the last key the run read (a keyset: the inbox's cleared rows stay in the table, and reading
them again each batch made a run quadratic in them), then delete (or clear) those rows still
past their time. Several instances may run it at once: a
row two of them picked is deleted once, and the other's statement finds nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.audit.models import AuditEntry
from guidebot.bot.models import BotReply, ReplyStatus
from guidebot.config import Retention
from guidebot.content.models import ContentForward, ContentOpen, ContentVisitorCustomer
from guidebot.content.service import first_forward
from guidebot.intake.models import InboxEvent, InboxStatus
from guidebot.metrics.models import LostAlert
from guidebot.metrics.rollup import freeze_before
from guidebot.periodic import take_turn
from guidebot.sop.models import SopTask, TaskStatus

log = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]

# Batches per rule per run: a run stops after this many and the next run goes on.
MAX_BATCHES = 200
# A frozen day is at least this far from the cut-off: a local day spans UTC-12..UTC+14.
FREEZE_MARGIN = timedelta(days=2)
SETTLED_TASKS = tuple(
    s for s in TaskStatus.ALL if s not in TaskStatus.OPEN + TaskStatus.AWAITING_GUIDE
)
SETTLED_REPLIES = (
    ReplyStatus.PASSIVE,
    ReplyStatus.SENT,
    ReplyStatus.UNKNOWN,
    ReplyStatus.FAILED,
    ReplyStatus.DROPPED,
)


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    model: Any
    key: Any  # the primary key column
    setting: str  # Retention's attribute: days
    past: Callable[[datetime], ColumnElement[bool]]  # rows past their time at this cut-off
    clear: dict[str, Any] | None = None  # None: delete the rows; else set these values
    freezes_rollups: bool = False


RULES: tuple[Rule, ...] = (
    Rule(
        "inbox",
        InboxEvent,
        InboxEvent.id,
        "inbox_days",
        lambda cut: (
            (InboxEvent.status == InboxStatus.DONE)
            & (InboxEvent.processed_at < cut)
            & (InboxEvent.payload != "")
        ),
        clear={"payload": "", "customer_key": None, "last_error": None},
    ),
    Rule(
        "tasks",
        SopTask,
        SopTask.id,
        "tasks_days",
        lambda cut: (
            SopTask.status.in_(SETTLED_TASKS) & (SopTask.due_at < cut) & (SopTask.updated_at < cut)
        ),
        freezes_rollups=True,
    ),
    Rule(
        "bot_replies",
        BotReply,
        BotReply.msg_id,
        "bot_replies_days",
        lambda cut: BotReply.status.in_(SETTLED_REPLIES) & (BotReply.created_at < cut),
    ),
    Rule(
        "opens", ContentOpen, ContentOpen.id, "opens_days", lambda cut: ContentOpen.opened_at < cut
    ),
    Rule(
        "visitor_ties",
        ContentVisitorCustomer,
        ContentVisitorCustomer.visitor_key,  # a keyset on the visitor: its ties go together
        "opens_days",
        lambda cut: ContentVisitorCustomer.last_at < cut,
    ),
    Rule(
        "forwards",
        ContentForward,
        ContentForward.id,
        "forwards_days",
        lambda cut: (ContentForward.sent_at < cut) & ~first_forward(),
    ),
    Rule(
        "alerts",
        LostAlert,
        LostAlert.id,
        "alerts_days",
        lambda cut: (LostAlert.lost_at < cut) & LostAlert.batch.is_not(None),
    ),
    Rule("audit", AuditEntry, AuditEntry.id, "audit_days", lambda cut: AuditEntry.at < cut),
)


@dataclass(slots=True)
class PruneReport:
    rows: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    largest_batch: int = 0

    @property
    def total(self) -> int:
        return sum(self.rows.values())


async def prune(
    sessions: Sessions,
    retention: Retention,
    now: datetime,
    *,
    max_batches: int = MAX_BATCHES,
) -> PruneReport:
    """One run of every rule whose period is set (not 0)."""
    report = PruneReport()
    for rule in RULES:
        days = getattr(retention, rule.setting)
        if not days:
            continue
        cut = now - timedelta(days=days)
        if rule.freezes_rollups:
            async with sessions() as session, session.begin():
                await freeze_before(session, (cut + FREEZE_MARGIN).date(), now)
        report.rows[rule.name] = await _prune_rule(
            sessions, rule, cut, retention.batch, max_batches, report
        )
    if report.total:
        log.info(
            "retention: pruned %s",
            ", ".join(f"{n} {name}" for name, n in report.rows.items() if n),
        )
    return report


async def _prune_rule(
    sessions: Sessions,
    rule: Rule,
    cut: datetime,
    batch: int,
    max_batches: int,
    report: PruneReport,
) -> int:
    done = 0
    after = None  # keyset: a batch starts past the last key read, never rescanning the rows
    for _ in range(max_batches):  # an earlier batch cleared (cleared rows stay in the table)
        await take_turn()
        async with sessions() as session, session.begin():
            query = select(rule.key).where(rule.past(cut))
            if after is not None:
                query = query.where(rule.key > after)
            keys = list(await session.scalars(query.order_by(rule.key).limit(batch)))
            if not keys:
                break
            after = keys[-1]
            where = (rule.key.in_(keys), rule.past(cut))
            if rule.clear is None:
                statement = delete(rule.model).where(*where)
            else:
                statement = update(rule.model).where(*where).values(**rule.clear)
            result = await session.execute(statement.execution_options(synchronize_session=False))
            done += max(result.rowcount, 0)
        report.batches += 1
        report.largest_batch = max(report.largest_batch, len(keys))
        if len(keys) < batch:
            break
    return done
