"""create_simulator_app and run_simulator: the fake WeCom as an aiohttp application."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from .api.dispatch import handle_api
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
    # WeCom acts on a request it has received even when the caller hangs up (a client timeout
    # during a "latency" fault): each API call runs to its end in its own task, whether or not
    # the server cancels the handler of a closed connection (aiohttp's test server does).
    in_flight: set[asyncio.Task[web.StreamResponse]] = set()

    async def cgi_bin(request: web.Request) -> web.StreamResponse:
        task = asyncio.create_task(handle_api(request))
        in_flight.add(task)
        task.add_done_callback(_finished(in_flight))
        return await asyncio.shield(task)

    async def release_hung_calls(app: web.Application) -> None:
        app[CLOSING].set()
        if in_flight:
            await asyncio.wait(set(in_flight), timeout=5)

    app.on_shutdown.append(release_hung_calls)
    app.router.add_route("*", "/cgi-bin/{api:.+}", cgi_bin)
    app.add_subapp("/_sim", create_control_app())
    return app


def _finished(in_flight: set[asyncio.Task[web.StreamResponse]]):
    def done(task: asyncio.Task[web.StreamResponse]) -> None:
        in_flight.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller that hung up is not told, nor is asyncio

    return done


async def _delivery_session(app: web.Application) -> AsyncIterator[None]:
    # The callback target is another process (or this one); don't share its cookies.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        app[DELIVERER] = CallbackDeliverer(app[SIMULATOR_STATE], session)
        yield


async def run_simulator(config: SimulatorConfig, host: str = "127.0.0.1", port: int = 8081) -> None:
    """Serve the simulator until cancelled."""
    # No per-request access log, as `guidebot serve` and the demo: at a livestream's rate (a
    # control call, a callback and two API calls an add) its lines were a tenth of the CPU.
    runner = web.AppRunner(create_simulator_app(config), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
