"""Welcomes sent right after the commits that enrolled them, together when they come together.

A welcome is claimed, prepared and sent by `run_tasks(ids=...)`: three short transactions and
one WeCom call. When a livestream brings adds by the hundred a second, the welcomes of adds
committed while an earlier batch was on its way wait for it and then go as one batch: the same
three transactions for all of them, their calls made side by side. One add alone goes at once.

Whoever finds the lane idle drives it (inside the inbox worker's after-commit task, so the
worker's shutdown and `settle` see it); the others wait for their batch. If the driver is
cancelled (shutdown), the batches it had not finished are cancelled too: their rows stay
pending or claimed, and the tick (or its reaping) sends them, as after any interrupted run.
"""

from __future__ import annotations

import asyncio
import logging

from guidebot.db.one_hop import inline_statements
from guidebot.sop.context import SopRuntime
from guidebot.sop.tick import run_tasks

log = logging.getLogger(__name__)


class WelcomeLane:
    def __init__(self, sop: SopRuntime) -> None:
        self._sop = sop
        self._claimer: SopRuntime | None = None
        self._waiting: list[tuple[int, asyncio.Future[None]]] = []
        self._driving = False

    async def send(self, task_id: int) -> None:
        """Send the welcome task `task_id` (and any waiting beside it); return once it is done."""
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((task_id, done))
        if not self._driving:
            await self._drive()
        await done

    async def _drive(self) -> None:
        self._driving = True
        batch: list[tuple[int, asyncio.Future[None]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                ids = [task_id for task_id, _ in batch]
                try:
                    # Short transactions of point statements: on SQLite on the loop's thread.
                    with inline_statements():
                        await run_tasks(self._runtime(), self._sop.clock.now(), ids=ids)
                except Exception as exc:
                    for _, done in batch:
                        if not done.done():  # a waiter cancelled meanwhile took its own
                            done.set_exception(exc)
                else:
                    for _, done in batch:
                        if not done.done():
                            done.set_result(None)
                batch = []
        finally:
            self._driving = False
            for _, done in (*batch, *self._waiting):
                done.cancel()  # only when we were cancelled: the tick sends them instead
            self._waiting = []

    def _runtime(self) -> SopRuntime:
        # One claim identity for the lane (never taken for the tick's own), built once so its
        # compiled templates are kept.
        if self._claimer is None:
            self._claimer = self._sop.claimer()
        return self._claimer
