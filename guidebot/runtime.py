"""One runtime: the resources the server and the CLI's offline commands build once.

The database (engine and sessions, wired to deliver the domains' facts to the SOP engine,
guidebot.events), the WeCom client (with its token cache on a small engine
of its own and its HTTP session), the clock, the settings, the telemetry, the playbook
registry and the SOP engine's runtime built from them. guidebot.app opens one per server and
starts and stops it in its cleanup_ctx; the CLI opens one per offline command that calls
WeCom or runs handlers (`open_runtime`); the commands that need only the database open it the
one way there is (guidebot.db.migrate.open_database). Handlers, jobs and commands take what
they need from it by name (`resources`): each domain declares its periodic jobs beside the
code they run (its jobs.py JOBS), and `periodic_jobs` hands each the resources its
parameters name.

This layer sits between guidebot.web and the domains: it imports the domains, db and wecom,
and none of them imports it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from guidebot.bot import jobs as bot_jobs
from guidebot.clock import Clock, SystemClock
from guidebot.config import Settings
from guidebot.contacts import jobs as contacts_jobs
from guidebot.contacts import lifecycle, reading_hours
from guidebot.content import jobs as content_jobs
from guidebot.db import statistics as db_statistics
from guidebot.db.credentials import DatabaseCredentialStore
from guidebot.db.engine import create_engine, create_session_factory, open_first_connection
from guidebot.db.migrate import prepare_database
from guidebot.events import Subscribers, wire
from guidebot.groups import jobs as groups_jobs
from guidebot.metrics import jobs as metrics_jobs
from guidebot.metrics import losses as metrics_losses
from guidebot.periodic import FixedJob, PeriodicJob
from guidebot.privacy import jobs as privacy_jobs
from guidebot.sop import jobs as sop_jobs
from guidebot.sop.context import SopRuntime
from guidebot.sop.registry import PlaybookRegistry, load_registry
from guidebot.sop.subscribers import SopSubscriber
from guidebot.telemetry import Telemetry
from guidebot.wecom.client import WeComClient

log = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]

# Every periodic job, in the order they are listed; each domain declares its own.
DECLARED_JOBS: tuple[PeriodicJob, ...] = (
    *contacts_jobs.JOBS,
    *groups_jobs.JOBS,
    *sop_jobs.JOBS,
    *content_jobs.JOBS,
    *bot_jobs.JOBS,
    *metrics_jobs.JOBS,
    *privacy_jobs.JOBS,
    *db_statistics.JOBS,
)


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    telemetry: Telemetry
    engine: AsyncEngine
    sessions: Sessions
    http: aiohttp.ClientSession
    wecom: WeComClient
    playbooks: PlaybookRegistry
    sop: SopRuntime

    def resources(self) -> dict[str, Any]:
        """What a handler, a job or a command may ask for, by name."""
        return {
            "sessions": self.sessions,
            "wecom": self.wecom,
            "clock": self.clock,
            "settings": self.settings,
            "telemetry": self.telemetry,
            "playbooks": self.playbooks,
            "sop": self.sop,
        }


def periodic_jobs(runtime: Runtime) -> list[FixedJob]:
    """Every fixed periodic job, handed the resources it names; times are in
    GUIDEBOT_TIMEZONE. Per-customer work is not here (architecture rule 5)."""
    resources = runtime.resources()
    return [job.bind(resources) for job in DECLARED_JOBS]


def domain_subscribers(sop: SopRuntime) -> Subscribers:
    """Who hears the domains' facts (guidebot.events): the SOP engine; metrics (customers who
    deleted a guide, for the lost-customer alerts); contacts (lifecycle stages, reading hours)."""
    subscribers = Subscribers()
    SopSubscriber(sop).subscribe(subscribers)
    metrics_losses.subscribe(subscribers)
    lifecycle.subscribe(subscribers)  # contacts: each customer's lifecycle stage
    reading_hours.subscribe(subscribers)  # contacts: each customer's best hour (best_time)
    return subscribers


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    telemetry: Telemetry | None = None,
    server: bool = False,
    release_token_leases: bool = False,
) -> AsyncIterator[Runtime]:
    """The runtime for `settings`. `server`: wait for the database as the server does at
    start-up (an offline command migrates a SQLite file in place first instead).
    `release_token_leases`: SQLite at start-up (see _release_token_leases)."""
    if not server:
        await asyncio.to_thread(prepare_database, settings.database_url)
    clock = clock or SystemClock()
    telemetry = telemetry or Telemetry()
    engine = create_engine(settings.database_url)
    try:
        if server:
            await open_first_connection(engine)
        sessions = create_session_factory(engine)
        wecom_client = _wecom_client(settings, clock, telemetry, server, release_token_leases)
        async with wecom_client as (http, wecom):
            playbooks = load_registry(settings.sop_dir)
            sop = SopRuntime(sessions, wecom, clock, settings, playbooks, telemetry)
            wire(sessions, domain_subscribers(sop))
            yield Runtime(
                settings=settings,
                clock=clock,
                telemetry=telemetry,
                engine=engine,
                sessions=sessions,
                http=http,
                wecom=wecom,
                playbooks=playbooks,
                sop=sop,
            )
    finally:
        await engine.dispose()


@asynccontextmanager
async def _wecom_client(
    settings: Settings,
    clock: Clock,
    telemetry: Telemetry,
    server: bool,
    release_token_leases: bool,
) -> AsyncIterator[tuple[aiohttp.ClientSession, WeComClient]]:
    # The token cache gets its own small engine: code that holds the main (SQLite: only)
    # connection may call WeCom, and fetching a token must not wait for that connection.
    token_engine = create_engine(settings.database_url, side=True)
    try:
        if server:
            await open_first_connection(token_engine)
        token_sessions = create_session_factory(token_engine)
        if release_token_leases:
            await _release_token_leases(token_sessions)
        async with aiohttp.ClientSession() as http:
            yield (
                http,
                WeComClient(
                    http,
                    corp_id=settings.corp_id,
                    secret=settings.secret,
                    agent_id=settings.agent_id,
                    api_base=settings.wecom_api_base,
                    credentials=DatabaseCredentialStore(token_sessions),
                    clock=clock,
                    on_error=telemetry.wecom_error,
                ),
            )
    finally:
        await token_engine.dispose()


async def _release_token_leases(sessions: Sessions) -> None:
    """SQLite has one process: a token refresh lease found at start-up died with the last one,
    and the first welcome after a crash must not wait out its lease for a token."""
    try:
        released = await DatabaseCredentialStore(sessions).release_all()
    except SQLAlchemyError as exc:  # unreachable: /readyz says so; the lease lapses anyway
        log.warning("token leases not released at start-up: %s", type(exc).__name__)
        return
    if released:
        log.warning("wecom: %d token refresh lease(s) left by the last process released", released)


__all__ = ["DECLARED_JOBS", "Runtime", "open_runtime", "periodic_jobs"]
