"""A small HTTP/1.1 load generator on raw asyncio streams.

aiohttp's client costs more CPU per request than the servers under test spend, so on a 2-core
machine it would measure itself. This one sends pre-built requests over keep-alive connections
and reads just enough of each answer to find its end.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class LoadResult:
    requests: int
    seconds: float
    latencies: list[float]
    statuses: dict[int, int]
    # Paced runs: how far behind its slot each request went out (0 when on time).
    lateness: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def summary(self, label: str) -> str:
        return (
            f"{label}: {self.requests} requests in {self.seconds:.2f}s = {self.rate:,.0f}/s, "
            f"p50 {self.percentile(50) * 1000:.2f} ms, p99 {self.percentile(99) * 1000:.2f} ms, "
            f"statuses {dict(sorted(self.statuses.items()))}"
        )


def build_post(
    host: str, port: int, path: str, body: bytes, content_type: str = "text/xml"
) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


async def run_load(
    host: str,
    port: int,
    requests: list[bytes],
    *,
    concurrency: int,
    rate: float | None = None,
    connect_first: bool = False,
) -> LoadResult:
    """Send every request once over `concurrency` connections; optionally paced at `rate`/s.

    With `connect_first` every connection is open before the clock starts, so that opening
    hundreds of them does not make a paced run's first requests late.
    """
    queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    for index, request in enumerate(requests):
        queue.put_nowait((index, request))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lateness: list[float] = []

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(host, port)

    opened = await asyncio.gather(*(connect() for _ in range(concurrency))) if connect_first else []
    started = time.perf_counter()

    async def sender(slot: int) -> None:
        reader, writer = opened[slot] if connect_first else await connect()
        try:
            while True:
                try:
                    index, request = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                if rate:
                    # Open-loop pacing: request i is due at i / rate; latency counts from then.
                    due = started + index / rate
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    lateness.append(max(0.0, time.perf_counter() - due))
                    sent = due
                else:
                    sent = time.perf_counter()
                writer.write(request)
                status = await _read_response(reader)
                latencies.append(time.perf_counter() - sent)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(sender(slot) for slot in range(concurrency)))
    return LoadResult(len(requests), time.perf_counter() - started, latencies, statuses, lateness)
