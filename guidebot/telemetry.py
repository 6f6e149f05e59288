"""Prometheus metrics, one registry per application so several apps can live in one process."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession


class Telemetry:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._parked_jobs: set[str] = set()
        self.callbacks = Counter(
            "guidebot_callbacks_total",
            "WeCom callbacks received, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        # Each outcome's child looked up once (labels() costs more than inc() on the callback
        # path); it also makes every outcome a series from the start, at 0.
        self.callback_outcome = {
            outcome: self.callbacks.labels(outcome=outcome)
            for outcome in ("accepted", "rejected", "unavailable")
        }
        self.callback_seconds = Histogram(
            "guidebot_callback_ack_seconds",
            "Time from receiving a callback to answering it",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.wecom_errors = Counter(
            "guidebot_wecom_api_errors_total",
            "WeCom API calls that answered an error, by API and errcode",
            ["api", "errcode"],
            registry=self.registry,
        )
        # Backlog gauges, computed on each scrape from the tables (see refresh_backlog).
        self.inbox_lag = Gauge(
            "guidebot_inbox_lag_seconds",
            "How long the oldest pending inbox event has been waiting since it became due "
            "(received, or its retry time); 0 when none is due",
            registry=self.registry,
        )
        self.inbox_pending = Gauge(
            "guidebot_inbox_pending_events",
            "Inbox events waiting for the worker (new, or waiting for a retry)",
            registry=self.registry,
        )
        self.inbox_failed = Gauge(
            "guidebot_inbox_failed_events",
            "Inbox events parked as failed (guidebot inbox replay --failed)",
            registry=self.registry,
        )
        self.sop_task_lag = Gauge(
            "guidebot_sop_task_lag_seconds",
            "How long the oldest due SOP task has been waiting to be claimed; 0 when none is due",
            registry=self.registry,
        )

        self.parked_rows = Gauge(
            "guidebot_parked_rows",
            "Rows a periodic job could not handle and parked, by job (guidebot jobs parked)",
            ["job"],
            registry=self.registry,
        )

    def set_parked(self, counts: dict[str, int]) -> None:
        # A job whose rows were all handed back stays a series, at 0.
        for job in set(counts) | set(self._parked_jobs):
            self.parked_rows.labels(job=job).set(counts.get(job, 0))
        self._parked_jobs |= set(counts)

    def wecom_error(self, api: str, errcode: int) -> None:
        """WeComClient's on_error hook."""
        self.wecom_errors.labels(api=api, errcode=str(errcode)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def refresh_backlog(telemetry: Telemetry, session: AsyncSession, now: datetime) -> None:
    """Set the backlog gauges: one indexed query per figure (inbox: ix_inbox_events_due,
    SOP: ix_sop_tasks_status_due; parked rows are few), so a scrape stays cheap with millions
    of finished rows."""
    from guidebot.db.parking import parked_counts, unparked
    from guidebot.intake.models import InboxEvent, InboxStatus
    from guidebot.sop.models import SopTask, TaskStatus
    from guidebot.sop.queue import TASKS_TABLE, TICK_JOB

    oldest_due, pending = (
        await session.execute(
            select(func.min(InboxEvent.next_attempt_at), func.count()).where(
                InboxEvent.status == InboxStatus.PENDING
            )
        )
    ).one()
    failed = await session.scalar(
        select(func.count()).where(InboxEvent.status == InboxStatus.FAILED)
    )
    oldest_task = await session.scalar(
        select(func.min(SopTask.due_at)).where(
            SopTask.status == TaskStatus.PENDING,
            unparked(TICK_JOB, TASKS_TABLE, SopTask.id),  # parked: counted below instead
        )
    )
    telemetry.set_parked(await parked_counts(session))
    telemetry.inbox_lag.set(_age(oldest_due, now))
    telemetry.inbox_pending.set(pending or 0)
    telemetry.inbox_failed.set(failed or 0)
    telemetry.sop_task_lag.set(_age(oldest_task, now))


def _age(instant: datetime | None, now: datetime) -> float:
    return max(0.0, (now - instant).total_seconds()) if instant is not None else 0.0
