"""What a domain declares of its periodic work, without the scheduler that runs it: the job
(`PeriodicJob`, beside the code it runs, in the domain's jobs.py) and the turn a job that gives
way takes between its transactions (`take_turn`). guidebot.scheduler runs them on APScheduler;
no domain imports it.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

Job = Callable[[], Awaitable[None]]
Quiet = Callable[[float], Awaitable[Any]]

# Set while a job that gives way runs: what it awaits between its transactions (`take_turn`).
_TURN: contextvars.ContextVar[Quiet | None] = contextvars.ContextVar("guidebot_turn", default=None)
# How long a job waits for the add path at most, each time: never starved, only put behind.
TURN_PATIENCE = 1.0


async def take_turn() -> None:
    """Between two transactions of bookkeeping that gives way (rollups, pruning): let the add
    in hand and the welcome it started finish first. On SQLite they share one connection, and
    an add goes through several short transactions: each would otherwise queue behind one of
    ours. Nothing outside a job that gives way waits here."""
    quiet = _TURN.get()
    if quiet is not None:
        await quiet(TURN_PATIENCE)


@contextmanager
def giving_way(quiet: Quiet | None) -> Iterator[None]:
    """Within it, take_turn waits on `quiet` (the scheduler runs a job that gives way in it;
    None: a job that does not, whose take_turn returns at once)."""
    token = _TURN.set(quiet)
    try:
        yield
    finally:
        _TURN.reset(token)


@dataclass(frozen=True, slots=True)
class FixedJob:
    id: str
    run: Job
    every_seconds: float | None = None  # either an interval...
    cron: str | None = None  # ...or a crontab line in the scheduler's time zone
    gives_way: bool = False  # skips its ticks during a burst of adds (GiveWay)


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    """A job as the domain that runs it declares it (in its jobs.py, beside the code): the
    callable's parameters name the resources it needs (sessions, wecom, clock, settings,
    sop, ...), which whoever schedules it hands over by name (`bind`)."""

    id: str
    run: Callable[..., Awaitable[Any]]
    every_seconds: float | None = None  # either an interval...
    cron: str | None = None  # ...or a crontab line in the scheduler's time zone
    # Bookkeeping that can wait (rollups, pruning): during a burst of adds it skips its ticks,
    # for at most GiveWay.longest, so the welcomes have the process (and SQLite's connection).
    gives_way: bool = False

    def bind(self, resources: Mapping[str, Any]) -> FixedJob:
        params = inspect.signature(self.run).parameters.values()
        names = [p.name for p in params if p.default is inspect.Parameter.empty]
        missing = [name for name in names if name not in resources]
        if missing:
            raise LookupError(f"job {self.id} needs {', '.join(missing)}, which no one provides")
        run = partial(self.run, **{name: resources[name] for name in names})
        return FixedJob(self.id, run, self.every_seconds, self.cron, self.gives_way)
