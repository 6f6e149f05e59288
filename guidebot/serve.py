"""The server's process: its event loop and heap, and `guidebot serve --processes N`.

`--processes N` runs one server of N processes on one port (PostgreSQL only). A Python process
works on one core at a time, and at a livestream's rate one `guidebot serve` needs more than
one (README, Benchmarks: welcome). Each process started here is a whole `guidebot serve` (its
inbox worker, SOP tick, welcome lane and scheduled jobs) bound to the same port with
SO_REUSEPORT, so the kernel hands each new connection to one of them; they share the database
as instances behind a load balancer do (README, Running in production: scaling out). SQLite
has one writer, so there it is refused.

The parent only starts them and forwards SIGTERM and SIGINT. When one ends on its own, the
parent stops the others and ends with its status, so the supervisor (systemd, Docker) restarts
the whole server rather than running on with fewer processes than it was given.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

STOP_WAIT_SECONDS = 70  # a process's own graceful stop takes up to a minute (aiohttp's default)
POLL_SECONDS = 0.5  # how soon the parent notices that a process ended on its own


def event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed (Linux and macOS), else asyncio's.

    The server spends a good part of its time in the loop itself: each add is a callback
    read and answered, two calls to WeCom and their answers, thread hand-offs to SQLite. At
    166 adds a second uvloop kept p99 of the welcome at 1.4-2.0 s where asyncio's loop let it
    drift to 5-10 s (README, Benchmarks: welcome)."""
    try:
        import uvloop
    except ImportError:  # Windows: asyncio's own
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def freeze_startup_heap(app) -> None:
    """Exempt what start-up built (modules, mappers, templates) from the cycle collector, and
    turn the collector on if start-up turned it off (`guidebot serve` does, see cli._serve).

    A full collection walks every tracked object: about 130,000 once started, 60 ms here, long
    enough to show in callback latency. They live as long as the process, so the collector
    need never look at them again; it still collects everything made after start-up.
    """
    gc.collect()
    gc.freeze()
    gc.enable()


class ProcessesRefused(ValueError):
    """--processes cannot be honoured with these settings; the message says why."""


def check_processes(count: int, database_url: str) -> None:
    from guidebot.db.engine import is_sqlite

    if count < 1:
        raise ProcessesRefused("--processes 至少为 1 / --processes must be at least 1")
    if count > 1 and is_sqlite(database_url):
        raise ProcessesRefused(
            f"--processes {count} 需要 PostgreSQL：SQLite 只有一个写入者 / "
            f"--processes {count} needs PostgreSQL: SQLite has one writer"
        )


def serve_processes(count: int, host: str, port: int) -> int:
    """Run `count` servers on host:port until a signal stops them or one of them ends."""
    from guidebot.telemetry import SHARED_DIR_ENV

    command = [sys.executable, "-m", "guidebot.cli", "serve", "--host", host, "--port", str(port)]
    with tempfile.TemporaryDirectory(prefix="guidebot-metrics-") as shared:
        # /metrics sums every process's figures from here, whichever answers (telemetry).
        env = {**os.environ, SHARED_DIR_ENV: shared}
        children: list[subprocess.Popen] = []
        stopping = False

        def stop(signum: int, _frame: object) -> None:
            nonlocal stopping
            stopping = True
            _signal_all(children, signal.SIGTERM)

        # Heard before the first start: a stop that comes meanwhile leaves no server behind.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, stop)
        for _ in range(count):
            if stopping:
                break
            # Each in a session of its own: a terminal's Ctrl-C reaches the parent alone,
            # which passes it on once, as SIGTERM.
            children.append(
                subprocess.Popen([*command, "--reuse-port"], env=env, start_new_session=True)
            )
        return _supervise(children, lambda: stopping)


def _supervise(children: list[subprocess.Popen], stopping: Callable[[], bool]) -> int:
    while not stopping() and all(child.poll() is None for child in children):
        time.sleep(POLL_SECONDS)  # a signal's handler runs meanwhile; seen at the next look
    ended_first = next((child for child in children if child.poll() is not None), None)
    if not stopping():  # told once only: a second SIGTERM would cut a graceful stop short
        _signal_all(children, signal.SIGTERM)
    statuses = [_wait(child) for child in children]
    if stopping():
        # A process told to stop while still starting has no handler yet: SIGTERM's default
        # action ends it, as it was asked to. Only another status is a failure to report.
        return next((status for status in statuses if status not in (0, -signal.SIGTERM)), 0)
    # One ended on its own: a server does not, so even a clean end is a failure to report.
    return (ended_first.returncode if ended_first is not None else 0) or 1


def _wait(child: subprocess.Popen) -> int:
    try:
        return child.wait(timeout=STOP_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait()


def _signal_all(children: list[subprocess.Popen], signum: int) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signum)
