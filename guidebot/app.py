"""create_app(settings) -> web.Application.

The resources are one runtime (guidebot.runtime: database, WeCom client, clock, settings,
telemetry, playbooks, the SOP engine's runtime, and the sessions wired to deliver the domains'
facts to who hears them, guidebot.events), built once and kept under typed AppKeys
(guidebot.web.keys); it and the background work that needs it start and stop in cleanup_ctx,
in that order.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial

from aiohttp import web

from guidebot.bot.handlers import router as bot_router
from guidebot.clock import Clock, SystemClock
from guidebot.config import Settings
from guidebot.contacts.handlers import router as contacts_router
from guidebot.db.parking import parked_backlog
from guidebot.groups.handlers import router as groups_router
from guidebot.intake.backlog import inbox_backlog
from guidebot.intake.dispatch import build_dispatcher
from guidebot.intake.inbox import InboxWriter
from guidebot.intake.worker import InboxWorker, WorkerPolicy
from guidebot.runtime import Runtime, open_runtime, periodic_jobs
from guidebot.scheduler import GiveWay, create_scheduler
from guidebot.sop.queries import task_backlog
from guidebot.telemetry import Telemetry
from guidebot.web import (
    admin_errors,
    audit_page,
    callback,
    cohort_pages,
    content_editor,
    customer_page,
    domain_verify,
    group_pages,
    guides_page,
    health,
    links,
    pages,
    passive_reply,
    playbooks_page,
    sidebar,
    stores_page,
    studio,
)
from guidebot.web.api import cohorts as cohorts_api
from guidebot.web.api import contacts as contacts_api
from guidebot.web.api import content as content_api
from guidebot.web.api import groups as groups_api
from guidebot.web.api import lifecycle as lifecycle_api
from guidebot.web.api import metrics as metrics_api
from guidebot.web.api import playbooks as playbooks_api
from guidebot.web.api import privacy as privacy_api
from guidebot.web.api import relations as relations_api
from guidebot.web.api import sop as sop_api
from guidebot.web.api import tasks as tasks_api
from guidebot.web.api.common import setup_api
from guidebot.web.api.errors import api_errors
from guidebot.web.keys import (
    CLOCK,
    CRYPTO,
    ENGINE,
    HTTP,
    INBOX,
    INBOX_WORKER,
    RUNTIME,
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
from guidebot.wecom.crypto import CallbackCrypto

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, *, clock: Clock | None = None, run_workers: bool = True
) -> web.Application:
    """The whole server. `run_workers=False` leaves stored callbacks for the test to drain."""
    # Bodies: the callback's size unless a route declares its own, and a deadline for all
    # (guidebot.web.limits); errors under /api are JSON whoever raises them
    # (guidebot.web.api.errors); under /admin they are pages in the admin's layout.
    app = web.Application(
        client_max_size=callback.MAX_CALLBACK_BYTES,
        middlewares=[api_errors, body_limits, admin_errors.admin_errors],
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock or SystemClock()
    app[TELEMETRY] = Telemetry()
    app[TELEMETRY].measure_with(inbox_backlog, task_backlog, parked_backlog)
    app[CRYPTO] = CallbackCrypto(settings.token, settings.aes_key, settings.corp_id)
    # Admin sign-in and the sidebar's OAuth take turns here, a few at a time.
    app[SIGN_IN_GATE] = SignInGate()
    app.cleanup_ctx.append(partial(runtime, run_workers=run_workers))
    app.cleanup_ctx.append(partial(intake, run_workers=run_workers))
    app.cleanup_ctx.append(contacts_startup)  # after the DB and WeCom client it uses
    app.cleanup_ctx.append(partial(sop_startup, run_workers=run_workers))
    if run_workers:
        app.cleanup_ctx.append(scheduler)
    health.setup_routes(app)
    callback.setup_routes(app)
    domain_verify.setup_routes(app)  # WW_verify_*.txt from GUIDEBOT_WECOM_VERIFY_DIR
    links.setup_routes(app)  # tracked links /r/
    sidebar.setup_routes(app)
    passive_reply.setup(app)  # the bot's answers still being sent when the server stops
    setup_api(app, *api_groups())
    pages.setup_routes(app)  # /admin: sign-in, dashboards (guidebot.web.auth for roles)
    guides_page.setup_routes(app)  # /admin/guides
    stores_page.setup_routes(app)  # /admin/stores
    customer_page.setup_routes(app)  # /admin/customers/{external_userid}
    content_editor.setup_routes(app)  # /admin/content/new, /admin/content/{id} (HQ)
    group_pages.setup_routes(app)  # /admin/groups, /admin/groups/{chat_id}
    playbooks_page.setup_routes(app)  # /admin/playbooks
    cohort_pages.setup_routes(app)  # /admin/cohorts
    studio.setup_routes(app)  # /admin/playbooks/{id}: the playbook studio
    audit_page.setup_routes(app)  # /admin/audit (HQ)
    admin_errors.setup_routes(app)  # / leads to /admin (or a guide's /sidebar)
    return app


def api_groups() -> list:
    return [
        contacts_api.api,
        relations_api.api,
        sop_api.api,
        playbooks_api.api,
        tasks_api.api,
        content_api.api,
        groups_api.api,
        metrics_api.api,
        cohorts_api.api,
        lifecycle_api.api,
        privacy_api.api,
    ]


async def runtime(app: web.Application, *, run_workers: bool = True) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with open_runtime(
        settings,
        clock=app[CLOCK],
        telemetry=app[TELEMETRY],
        server=True,
        release_token_leases=run_workers and settings.is_sqlite,
    ) as built:
        app[RUNTIME] = built
        app[ENGINE], app[SESSIONS], app[HTTP] = built.engine, built.sessions, built.http
        app[WECOM], app[SOP] = built.wecom, built.sop
        yield


BATCH_EVENTS = 20
BATCH_LANES_POSTGRESQL = 4


def make_worker(built: Runtime) -> InboxWorker:
    """The inbox worker on the runtime's sessions, handing its handlers the runtime's wecom,
    clock, settings and telemetry (guidebot.intake.dispatch.INJECTABLES)."""
    settings, wecom, clock = built.settings, built.wecom, built.clock
    return InboxWorker(
        built.sessions,
        # The domains that handle WeCom's events; each hears every event, in no meaningful order.
        build_dispatcher([contacts_router, groups_router, bot_router]),
        clock,
        resources={
            "wecom": wecom,
            "clock": clock,
            "settings": settings,
            "telemetry": built.telemetry,
        },
        policy=WorkerPolicy(
            lease=timedelta(seconds=settings.claim_lease_seconds),
            # A burst's events share transactions (each customer's in order): BEGIN and COMMIT
            # are paid once per batch, not per event; on PostgreSQL a commit is a WAL flush.
            # SQLite has one connection: one batch at a time. On PostgreSQL a few lanes of
            # batches over different customers run at once, so that one lane's round trips to
            # the database overlap another's work. Several instances each claim their own events.
            concurrency=1 if settings.is_sqlite else BATCH_LANES_POSTGRESQL,
            batch_events=BATCH_EVENTS,
        ),
        # A handler may call WeCom inside its transaction; on SQLite that transaction holds the
        # write lock a token refresh would need. Refreshing first keeps the two apart.
        before_batch=wecom.get_access_token,
    )


@asynccontextmanager
async def offline_worker(settings: Settings):
    """The inbox worker without the web server, for `guidebot inbox replay`."""
    async with open_runtime(settings) as built:
        yield make_worker(built), built.sessions, built.clock


async def intake(app: web.Application, *, run_workers: bool) -> AsyncIterator[None]:
    built = app[RUNTIME]
    worker = make_worker(built)
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


async def scheduler(app: web.Application) -> AsyncIterator[None]:
    # Rollups and pruning skip their ticks while the inbox worker is in a burst of adds.
    # Between their transactions they let the add in hand and its welcome finish first.
    worker = app.get(INBOX_WORKER)
    give_way = GiveWay(worker.busy, quiet=worker.quiet) if worker is not None else None
    jobs = create_scheduler(app[SETTINGS].timezone, periodic_jobs(app[RUNTIME]), give_way)
    jobs.start()
    yield
    jobs.shutdown(wait=False)
