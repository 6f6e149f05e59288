"""What the server starts beside serving (cleanup_ctx hooks on the web.Application): the first
directory sync and customer-group sync, and the SOP engine's runtime with its crash recovery and
playbook watch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from guidebot.contacts.jobs import nightly_directory_sync
from guidebot.groups.jobs import nightly_group_sync
from guidebot.sop.queue import reap_claims
from guidebot.sop.reconcile import reconcile_sending
from guidebot.web.keys import CLOCK, SESSIONS, SETTINGS, SOP, WECOM

log = logging.getLogger(__name__)

# How long start-up waits for WeCom before giving up on the first directory sync.
STARTUP_SYNC_TIMEOUT = 120.0
CONTACTS_STARTUP = web.AppKey("contacts_startup_sync", asyncio.Task)
WATCH_INTERVAL = 2.0  # seconds between looks at the sop directory
SOP_WATCH = web.AppKey("sop_watch", asyncio.Task)


# ---- contacts --------------------------------------------------------------------------------


async def _startup_sync(app: web.Application) -> None:
    try:
        await asyncio.wait_for(
            nightly_directory_sync(app[SESSIONS], app[WECOM], app[CLOCK]), STARTUP_SYNC_TIMEOUT
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # WeCom down must not stop the server; the nightly sync retries
        log.warning("start-up directory sync failed, continuing without it: %s", exc)
        return
    try:  # the customer groups, once their owners are known
        await asyncio.wait_for(
            nightly_group_sync(app[SESSIONS], app[WECOM], app[CLOCK]), STARTUP_SYNC_TIMEOUT
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.warning("start-up group sync failed, continuing without it: %s", exc)


async def contacts_startup(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: sync the address book once at start, in the background, so a slow or
    unreachable WeCom never holds up serving callbacks."""
    task = asyncio.create_task(_startup_sync(app), name="contacts-startup-sync")
    app[CONTACTS_STARTUP] = task
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# ---- the SOP engine --------------------------------------------------------------------------


async def sop_startup(app: web.Application, *, run_workers: bool = True) -> AsyncIterator[None]:
    """The engine's start-up: on SQLite (one process owns the queue) the claims a crash left
    are released and rows it left in `sending` are reconciled now, instead of after their
    leases (a welcome's code lives 20 s); the playbook directory is watched for changes.
    PostgreSQL keeps the leases: another instance may hold them."""
    runtime = app[SOP]  # the app's one, built with the others (guidebot.runtime)
    if run_workers:
        if app[SETTINGS].is_sqlite:
            try:
                released = await reap_claims(runtime, runtime.clock.now(), everything=True)
                if released:
                    log.warning("sop: %d claim(s) left by the last process made due", released)
                await reconcile_sending(runtime, everything=True)
            except Exception:
                log.exception("recovering rows a crash left failed; the jobs try again")
        watch = getattr(runtime.registry, "watch", None)
        if watch is not None:
            app[SOP_WATCH] = asyncio.create_task(watch(WATCH_INTERVAL), name="sop-watch")
    yield
    task = app.get(SOP_WATCH)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
