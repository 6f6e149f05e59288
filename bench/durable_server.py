"""The bare handler plus a durable acknowledgement, and nothing else.

Each body is group-committed to an inbox by guidebot's own InboxWriter (on SQLite: WAL,
synchronous=FULL, the same engine settings) before the 200: no signature, no decryption, no
parsing, no worker. Between the bare handler and guidebot it shows what acknowledging only
after a commit costs on this machine by itself.

    python -m bench.durable_server PORT DATABASE_URL
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import sys

from aiohttp import web

from guidebot.clock import SystemClock
from guidebot.db.engine import create_engine
from guidebot.db.migrate import upgrade_sync
from guidebot.intake.inbox import InboxEntry, InboxWriter


async def serve(port: int, database_url: str) -> None:
    engine = create_engine(database_url)
    writer = InboxWriter(engine, SystemClock())
    writer.start()

    async def callback(request: web.Request) -> web.Response:
        body = await request.read()
        digest = hashlib.sha256(body).hexdigest()
        await writer.store(InboxEntry(digest, "bench", None, body.decode()))
        return web.Response(status=200)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/wecom/callback", callback)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def main() -> None:
    port, database_url = int(sys.argv[1]), sys.argv[2]
    upgrade_sync(database_url)
    gc.collect()
    gc.freeze()  # as `guidebot serve` does after start-up
    asyncio.run(serve(port, database_url))


if __name__ == "__main__":
    main()
