"""Prometheus metrics, one registry per application so several apps can live in one process.

A server of several processes (`guidebot serve --processes N`) answers /metrics from whichever
process the scrape reaches: there the parent names a directory in PROMETHEUS_MULTIPROC_DIR,
prometheus_client keeps each process's figures in it, and every scrape sums them all.

The backlog gauges are computed on each scrape from the tables. This module knows no table:
whoever owns one hands in a reader (`Telemetry.measure_with`) that sets its gauges from one
cheap indexed query; the app hands in the inbox's, the SOP engine's and the parked rows'.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy.ext.asyncio import AsyncSession

# Sets some of the backlog gauges from the tables: (telemetry, session, now).
BacklogReader = Callable[["Telemetry", AsyncSession, datetime], Awaitable[None]]
SHARED_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own name for it
# A gauge read from the tables says the same in every process: the latest reading is the figure.
FROM_THE_TABLES = "mostrecent"


class Telemetry:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._parked_jobs: set[str] = set()
        self._backlog_readers: list[BacklogReader] = []
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
        # The livestream's question: is every welcome inside its code's 20 s?
        self.welcome_seconds = Histogram(
            "guidebot_welcome_seconds",
            "Time from a customer's add (the event's time) to WeCom accepting its welcome "
            "(send_welcome_msg); a welcome code lives 20 s",
            registry=self.registry,
            buckets=(0.25, 0.5, 1, 2, 3, 5, 10, 15, 20),
        )
        self.wecom_errors = Counter(
            "guidebot_wecom_api_errors_total",
            "WeCom API calls that answered an error, by API and errcode",
            ["api", "errcode"],
            registry=self.registry,
        )
        # Backlog gauges, set on each scrape by the readers handed in (refresh_backlog).
        self.inbox_lag = Gauge(
            "guidebot_inbox_lag_seconds",
            "How long the oldest pending inbox event has been waiting since it became due "
            "(received, or its retry time); 0 when none is due",
            registry=self.registry,
            multiprocess_mode=FROM_THE_TABLES,
        )
        self.inbox_pending = Gauge(
            "guidebot_inbox_pending_events",
            "Inbox events waiting for the worker (new, or waiting for a retry)",
            registry=self.registry,
            multiprocess_mode=FROM_THE_TABLES,
        )
        self.inbox_failed = Gauge(
            "guidebot_inbox_failed_events",
            "Inbox events parked as failed (guidebot inbox replay --failed)",
            registry=self.registry,
            multiprocess_mode=FROM_THE_TABLES,
        )
        self.sop_task_lag = Gauge(
            "guidebot_sop_task_lag_seconds",
            "How long the oldest due SOP task has been waiting to be claimed; 0 when none is due",
            registry=self.registry,
            multiprocess_mode=FROM_THE_TABLES,
        )

        self.parked_rows = Gauge(
            "guidebot_parked_rows",
            "Rows a periodic job could not handle and parked, by job (guidebot jobs parked)",
            ["job"],
            registry=self.registry,
            multiprocess_mode=FROM_THE_TABLES,
        )

    def set_parked(self, counts: dict[str, int]) -> None:
        # A job whose rows were all handed back stays a series, at 0.
        for job in set(counts) | set(self._parked_jobs):
            self.parked_rows.labels(job=job).set(counts.get(job, 0))
        self._parked_jobs |= set(counts)

    def measure_with(self, *readers: BacklogReader) -> None:
        """Read these on each scrape (refresh_backlog), in this order."""
        self._backlog_readers.extend(readers)

    async def refresh_backlog(self, session: AsyncSession, now: datetime) -> None:
        """Set the backlog gauges: one indexed query per figure, so a scrape stays cheap with
        millions of finished rows."""
        for reader in self._backlog_readers:
            await reader(self, session, now)

    @staticmethod
    def age(instant: datetime | None, now: datetime) -> float:
        """Seconds since `instant`, for a lag gauge; 0 when nothing is waiting."""
        return _age(instant, now)

    def wecom_error(self, api: str, errcode: int) -> None:
        """WeComClient's on_error hook."""
        self.wecom_errors.labels(api=api, errcode=str(errcode)).inc()

    def render(self) -> bytes:
        shared = os.environ.get(SHARED_DIR_ENV)
        if not shared:
            return generate_latest(self.registry)
        every_process = CollectorRegistry()
        MultiProcessCollector(every_process, path=shared)
        return generate_latest(every_process)


def _age(instant: datetime | None, now: datetime) -> float:
    return max(0.0, (now - instant).total_seconds()) if instant is not None else 0.0
