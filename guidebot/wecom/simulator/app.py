"""create_simulator_app and run_simulator: the fake WeCom as an aiohttp application."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from .api import handle_api
from .config import SimulatorConfig
from .control import create_control_app
from .delivery import CallbackDeliverer
from .keys import CLOSING, DELIVERER, SIMULATOR_STATE
from .state import SimState

# Large enough for 10 000 external_userids in one add_msg_template body.
MAX_REQUEST_BYTES = 8 * 1024 * 1024


def create_simulator_app(config: SimulatorConfig) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[SIMULATOR_STATE] = SimState(config)
    app[CLOSING] = asyncio.Event()
    app.cleanup_ctx.append(_delivery_session)
    app.on_shutdown.append(_release_hung_calls)
    app.router.add_route("*", "/cgi-bin/{api:.+}", handle_api)
    app.add_subapp("/_sim", create_control_app())
    return app


async def _delivery_session(app: web.Application) -> AsyncIterator[None]:
    # The callback target is another process (or this one); don't share its cookies.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        app[DELIVERER] = CallbackDeliverer(app[SIMULATOR_STATE], session)
        yield


async def _release_hung_calls(app: web.Application) -> None:
    app[CLOSING].set()


async def run_simulator(config: SimulatorConfig, host: str = "127.0.0.1", port: int = 8081) -> None:
    """Serve the simulator until cancelled."""
    runner = web.AppRunner(create_simulator_app(config))
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
