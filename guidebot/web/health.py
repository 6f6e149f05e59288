"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import logging

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from guidebot.web.keys import CLOCK, ENGINE, SESSIONS, TELEMETRY

log = logging.getLogger(__name__)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        async with request.app[ENGINE].connect() as conn:
            await conn.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as exc:
        log.warning("readyz: database unreachable: %s", type(exc).__name__)
        return web.json_response({"status": "unavailable", "database": "unreachable"}, status=503)
    return web.json_response({"status": "ready", "database": "ok"})


async def metrics(request: web.Request) -> web.Response:
    telemetry = request.app[TELEMETRY]
    try:
        async with request.app[SESSIONS]() as session:
            await telemetry.refresh_backlog(session, request.app[CLOCK].now())
    except (SQLAlchemyError, OSError) as exc:  # the other figures are still worth answering
        log.warning("metrics: backlog not measured: %s", type(exc).__name__)
    return web.Response(body=telemetry.render(), headers={"Content-Type": telemetry.content_type})


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
