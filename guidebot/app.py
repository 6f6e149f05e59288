"""create_app(settings) -> web.Application.

Resources live under typed AppKeys (guidebot.web.keys) and start and stop in cleanup_ctx, in
order: database, WeCom client, the wiring of the domains' events into the sessions (who hears
what, guidebot.events), then the background work that needs them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial

import aiohttp
from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from guidebot.bot.handlers import router as bot_router
from guidebot.bot.jobs import flush_bot_replies
from guidebot.clock import Clock, SystemClock
from guidebot.config import Settings
from guidebot.contacts.handlers import router as contacts_router
from guidebot.db.credentials import DatabaseCredentialStore
from guidebot.db.engine import create_engine, create_session_factory, open_first_connection
from guidebot.db.migrate import prepare_database
from guidebot.db.parking import parked_backlog
from guidebot.events import Subscribers, wire
from guidebot.intake.backlog import inbox_backlog
from guidebot.intake.dispatch import build_dispatcher
from guidebot.intake.inbox import InboxWriter
from guidebot.intake.worker import InboxWorker, WorkerPolicy
from guidebot.scheduler import FixedJob, create_scheduler
from guidebot.sop.queries import task_backlog
from guidebot.sop.subscribers import SopSubscriber
from guidebot.telemetry import Telemetry
from guidebot.web import callback, health, links, pages, passive_reply, sidebar
from guidebot.web.api import contacts as contacts_api
from guidebot.web.api import content as content_api
from guidebot.web.api import metrics as metrics_api
from guidebot.web.api import relations as relations_api
from guidebot.web.api import sop as sop_api
from guidebot.web.api.common import setup_api
from guidebot.web.api.errors import api_errors
from guidebot.web.keys import (
    CLOCK,
    CRYPTO,
    ENGINE,
    HTTP,
    INBOX,
    INBOX_WORKER,
    SESSIONS,
    SETTINGS,
    SIGN_IN_GATE,
    SOP,
    TELEMETRY,
    WECOM,
)
from guidebot.web.limits import body_limits
from guidebot.web.startup import contacts_startup, sop_startup
from guidebot.web.throttle import SignInGate
from guidebot.wecom.client import WeComClient
from guidebot.wecom.crypto import CallbackCrypto

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, *, clock: Clock | None = None, run_workers: bool = True
) -> web.Application:
    """The whole server. `run_workers=False` leaves stored callbacks for the test to drain."""
    # Bodies: the callback's size unless a route declares its own, and a deadline for all
    # (guidebot.web.limits); errors under /api are JSON whoever raises them
    # (guidebot.web.api.errors).
    app = web.Application(
        client_max_size=callback.MAX_CALLBACK_BYTES, middlewares=[api_errors, body_limits]
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock or SystemClock()
    app[TELEMETRY] = Telemetry()
    app[TELEMETRY].measure_with(inbox_backlog, task_backlog, parked_backlog)
    app[CRYPTO] = CallbackCrypto(settings.token, settings.aes_key, settings.corp_id)
    # Admin sign-in and the sidebar's OAuth take turns here, a few at a time.
    app[SIGN_IN_GATE] = SignInGate()
    app.cleanup_ctx.append(database)
    app.cleanup_ctx.append(partial(wecom_client, run_workers=run_workers))
    app.cleanup_ctx.append(domain_events)  # before anything writes through the sessions
    app.cleanup_ctx.append(partial(intake, run_workers=run_workers))
    app.cleanup_ctx.append(contacts_startup)  # after the DB and WeCom client it uses
    app.cleanup_ctx.append(partial(sop_startup, run_workers=run_workers))
    if run_workers:
        app.cleanup_ctx.append(scheduler)
    health.setup_routes(app)
    callback.setup_routes(app)
    links.setup_routes(app)  # tracked links /r/
    sidebar.setup_routes(app)
    passive_reply.setup(app)  # the bot's answers still being sent when the server stops
    setup_api(app, *api_groups())
    pages.setup_routes(app)  # /admin: sign-in, dashboards (guidebot.web.auth for roles)
    return app


def api_groups() -> list:
    return [contacts_api.api, relations_api.api, sop_api.api, content_api.api, metrics_api.api]


async def database(app: web.Application) -> AsyncIterator[None]:
    engine = create_engine(app[SETTINGS].database_url)
    await open_first_connection(engine)
    app[ENGINE] = engine
    app[SESSIONS] = create_session_factory(engine)
    yield
    await engine.dispose()


def domain_subscribers(
    sessions, wecom: WeComClient, clock: Clock, settings: Settings
) -> Subscribers:
    """Who hears the domains' facts (guidebot.events): the SOP engine."""
    subscribers = Subscribers()
    SopSubscriber(sessions, wecom, clock, settings).subscribe(subscribers)
    return subscribers


async def domain_events(app: web.Application) -> AsyncIterator[None]:
    """Every session the app hands out delivers the facts a domain announces in it."""
    sessions = app[SESSIONS]
    wire(sessions, domain_subscribers(sessions, app[WECOM], app[CLOCK], app[SETTINGS]))
    yield


async def wecom_client(app: web.Application, *, run_workers: bool = True) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # The token cache gets its own small engine: code that holds the main (SQLite: only)
    # connection may call WeCom, and fetching a token must not wait for that connection.
    token_engine = create_engine(settings.database_url, side=True)
    try:
        await open_first_connection(token_engine)
        token_sessions = create_session_factory(token_engine)
        if run_workers and settings.is_sqlite:
            await _release_token_leases(token_sessions)
        async with aiohttp.ClientSession() as http:
            app[HTTP] = http
            app[WECOM] = _wecom_client(
                http, settings, token_sessions, app[CLOCK], telemetry=app[TELEMETRY]
            )
            yield
    finally:
        await token_engine.dispose()


async def _release_token_leases(sessions) -> None:
    """SQLite has one process: a token refresh lease found at start-up died with the last one,
    and the first welcome after a crash must not wait out its lease for a token."""
    try:
        released = await DatabaseCredentialStore(sessions).release_all()
    except SQLAlchemyError as exc:  # unreachable: /readyz says so; the lease lapses anyway
        log.warning("token leases not released at start-up: %s", type(exc).__name__)
        return
    if released:
        log.warning("wecom: %d token refresh lease(s) left by the last process released", released)


def _wecom_client(
    http: aiohttp.ClientSession,
    settings: Settings,
    sessions,
    clock: Clock,
    *,
    telemetry: Telemetry | None = None,
):
    return WeComClient(
        http,
        corp_id=settings.corp_id,
        secret=settings.secret,
        agent_id=settings.agent_id,
        api_base=settings.wecom_api_base,
        credentials=DatabaseCredentialStore(sessions),
        clock=clock.time,
        on_error=telemetry.wecom_error if telemetry is not None else None,
    )


def make_worker(
    sessions, wecom: WeComClient, clock: Clock, settings: Settings, telemetry: Telemetry
) -> InboxWorker:
    # SQLite has one connection per process: handling customers concurrently would only queue
    # them in front of the callbacks waiting to be stored.
    concurrency = 1 if settings.is_sqlite else WorkerPolicy().concurrency
    return InboxWorker(
        sessions,
        # The domains that handle WeCom's events; each hears every event, in no meaningful order.
        build_dispatcher([contacts_router, bot_router]),
        clock,
        resources={"wecom": wecom, "clock": clock, "settings": settings, "telemetry": telemetry},
        policy=WorkerPolicy(
            concurrency=concurrency, lease=timedelta(seconds=settings.claim_lease_seconds)
        ),
        # A handler may call WeCom inside its transaction; on SQLite that transaction holds the
        # write lock a token refresh would need. Refreshing first keeps the two apart.
        before_batch=wecom.get_access_token,
    )


@asynccontextmanager
async def offline_resources(settings: Settings):
    """The database and WeCom client without the web server, for one-off CLI commands."""
    await asyncio.to_thread(prepare_database, settings.database_url)
    engine = create_engine(settings.database_url)
    token_engine = create_engine(settings.database_url, side=True)
    clock = SystemClock()
    try:
        async with aiohttp.ClientSession() as http:
            sessions = create_session_factory(engine)
            wecom = _wecom_client(http, settings, create_session_factory(token_engine), clock)
            wire(sessions, domain_subscribers(sessions, wecom, clock, settings))
            yield sessions, wecom, clock
    finally:
        await engine.dispose()
        await token_engine.dispose()


@asynccontextmanager
async def offline_worker(settings: Settings):
    """The inbox worker without the web server, for `guidebot inbox replay`."""
    async with offline_resources(settings) as (sessions, wecom, clock):
        yield make_worker(sessions, wecom, clock, settings, Telemetry()), sessions, clock


async def intake(app: web.Application, *, run_workers: bool) -> AsyncIterator[None]:
    worker = make_worker(app[SESSIONS], app[WECOM], app[CLOCK], app[SETTINGS], app[TELEMETRY])
    writer = InboxWriter(app[ENGINE], app[CLOCK], on_commit=worker.wake)
    worker.yield_to = writer.quiet  # acknowledging callbacks comes before processing them
    app[INBOX], app[INBOX_WORKER] = writer, worker
    writer.start()
    if run_workers:
        if app[SETTINGS].is_sqlite:
            await worker.recover_after_crash()
        worker.start()
    yield
    await writer.stop()
    await worker.stop()


def periodic_jobs(app: web.Application) -> list[FixedJob]:
    """Every fixed periodic job; times are in GUIDEBOT_TIMEZONE. Per-customer work is not here."""
    from guidebot.contacts import jobs as contacts
    from guidebot.content import jobs as content
    from guidebot.metrics import jobs as metrics
    from guidebot.sop import jobs as sop

    args = (app[SESSIONS], app[WECOM], app[CLOCK])
    return [
        FixedJob(
            "directory-sync", partial(contacts.nightly_directory_sync, *args), cron="30 2 * * *"
        ),
        FixedJob(
            "reconcile-contacts", partial(contacts.nightly_reconcile, *args), cron="0 3 * * *"
        ),
        FixedJob("poll-transfers", partial(contacts.poll_transfers, *args), every_seconds=600),
        # Adds recorded without a profile (the welcome could not wait for WeCom): fill them in.
        FixedJob(
            "refetch-profiles",
            partial(contacts.refetch_profiles, *args),
            every_seconds=contacts.PROFILES_EVERY_SECONDS,
        ),
        # The SOP engine: per-customer work is in sop_tasks; these only claim and settle rows.
        FixedJob("sop-tick", partial(sop.sop_tick, app[SOP]), every_seconds=5),
        FixedJob("sop-reconcile", partial(sop.sop_reconcile, app[SOP]), every_seconds=60),
        FixedJob("sop-results", partial(sop.sop_results, app[SOP]), every_seconds=600),
        FixedJob("sop-triggers", partial(sop.sop_triggers, app[SOP]), every_seconds=60),
        # Content and the bot: mass-send results, WeCom media kept fresh, queued bot answers.
        FixedJob("mass-sends", partial(content.poll_mass_sends, *args), every_seconds=300),
        FixedJob("content-media", partial(content.refresh_media, *args), every_seconds=3600),
        FixedJob(
            "bot-replies",
            partial(flush_bot_replies, *args, app[SETTINGS]),
            every_seconds=10,
        ),
        # Metrics: rollups from the dirty rows the source tables' triggers write (figures
        # within 10 s), and the 09:00 store-time reports (hourly; each store's 09:xx sends).
        FixedJob(
            "metrics-rollup",
            partial(metrics.metrics_rollup, app[SESSIONS], app[CLOCK], app[SETTINGS]),
            every_seconds=metrics.ROLLUP_EVERY_SECONDS,
        ),
        FixedJob(
            "metrics-reports",
            partial(metrics.metrics_reports, *args, app[SETTINGS]),
            cron=metrics.REPORTS_CRON,
        ),
    ]


async def scheduler(app: web.Application) -> AsyncIterator[None]:
    jobs = create_scheduler(app[SETTINGS].timezone, periodic_jobs(app))
    jobs.start()
    yield
    jobs.shutdown(wait=False)
