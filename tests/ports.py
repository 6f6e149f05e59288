"""Ports for the servers tests start, in-process or as child processes.

A port from bind(0) lies in Linux's ephemeral range (32768-60999). Once the probe releases
it, any outgoing connection (to PostgreSQL, to the simulator) may take it as its local port
before our server binds it, and the server then exits with EADDRINUSE while another process
answers on that port. So ports are drawn below that range, and never handed out twice in one
run. Under pytest-xdist each worker draws from its own slice of that range, so two workers
never hand out the same port.
"""

from __future__ import annotations

import os
import random

from bench.callbacks import bindable  # the benchmarks probe a port the same way

_LOW, _HIGH = 20000, 32000  # below the ephemeral range


def _slice(low: int, high: int) -> tuple[int, int]:
    """This process's share of [low, high): all of it, or one worker's part under xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2:
        return low, high
    width = (high - low) // count
    first = low + int(worker[2:]) * width
    return first, first + width


_LOW, _HIGH = _slice(_LOW, _HIGH)
_handed_out: set[int] = set()


def free_port(count: int = 1) -> int:
    """The first of `count` consecutive ports that are free now and new to this run."""
    for _ in range(1000):
        first = random.randrange(_LOW, _HIGH - count)
        ports = range(first, first + count)
        if _handed_out.isdisjoint(ports) and all(bindable(p) for p in ports):
            _handed_out.update(ports)
            return first
    raise RuntimeError(f"no {count} free consecutive ports in {_LOW}-{_HIGH}")
