"""A TCP proxy in front of PostgreSQL that a test can take down and bring back.

From the client's side an outage looks like a database restart: `go_down()` stops listening
(new connections are refused), has PostgreSQL end every proxied backend with
`pg_terminate_backend` (the client reads FATAL 57P01 admin_shutdown, as on a restart), then
closes whatever is still open. `come_back()` listens again on the same port. The real server
is never touched otherwise, so other tests sharing it carry on.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg


class PgProxy:
    def __init__(self, upstream_host: str, upstream_port: int, port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = port
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._pumps: set[asyncio.Task[None]] = set()
        self.accepted = 0

    @property
    def is_up(self) -> bool:
        return self._server is not None

    def upstream_ports(self) -> set[int]:
        """The local ports of the proxy's connections to PostgreSQL (its backends' client_port)."""
        return {upstream.get_extra_info("sockname")[1] for _, upstream in self._pairs}

    async def start(self) -> None:
        await self.come_back()

    async def come_back(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, "127.0.0.1", self.port, reuse_address=True
            )

    async def go_down(self, admin_dsn: str | None = None) -> int:
        """Refuse new connections, terminate the proxied backends, close the rest.

        Returns how many backends PostgreSQL terminated.
        """
        server, self._server = self._server, None
        if server is not None:
            server.close()  # stops listening now; wait_closed() below, once the pipes are gone
        terminated = 0
        ports = sorted(self.upstream_ports())
        if admin_dsn is not None and ports:
            conn = await asyncpg.connect(admin_dsn)
            try:
                terminated = await conn.fetchval(
                    "SELECT count(*) FROM ("
                    "  SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    "  WHERE client_port = ANY($1::int[]) AND pid <> pg_backend_pid()"
                    ") AS t",
                    ports,
                )
            finally:
                await conn.close()
            await asyncio.sleep(0.2)  # let the FATAL messages through the still-open pipes
        self._close_all()
        if self._pumps:
            await asyncio.wait(list(self._pumps), timeout=5)
        if server is not None:
            await asyncio.wait_for(server.wait_closed(), 5)
        return terminated

    async def stop(self) -> None:
        await self.go_down()

    def _close_all(self) -> None:
        for client, upstream in list(self._pairs):
            for writer in (client, upstream):
                transport = writer.transport
                # abort(): what a dying server's socket looks like to the client (no lingering).
                with contextlib.suppress(Exception):
                    transport.abort()
        self._pairs.clear()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self._server is None:  # accepted in the same loop turn as go_down()
            client_w.transport.abort()
            return
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.transport.abort()
            return
        if self._server is None:  # went down while this connection was being made
            client_w.transport.abort()
            upstream_w.transport.abort()
            return
        self.accepted += 1
        pair = (client_w, upstream_w)
        self._pairs.add(pair)
        pumps = [
            asyncio.create_task(self._pump(client_r, upstream_w)),
            asyncio.create_task(self._pump(upstream_r, client_w)),
        ]
        for task in pumps:
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        self._pairs.discard(pair)
        for writer in pair:  # one side hung up: pass the goodbye on, flushed, then close
            with contextlib.suppress(Exception):
                writer.close()
        for task in pumps:
            task.cancel()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
