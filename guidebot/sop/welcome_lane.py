"""Welcomes sent right after the commits that enrolled them, together when they come together.

A welcome the add's transaction inserted as a plain pending row is claimed, prepared and sent
by `run_tasks(ids=...)`: three short transactions and one WeCom call. Most adds do better: the
add knew everything the welcome's text needs (the customer's name from the profile it just
wrote, the guide's and the store's from its look), so its row went in already claimed by this
lane (`claim`, guidebot.sop.enroll_batch) and the lane was handed the row and its text to
render (`Drafted`). The lane renders it off the loop, marks it `sending` in one statement
guarded as prepare's checks are (still claimed by us: no stop closed it; not expired), and
calls WeCom: one transaction before the call instead of three, and nothing read back. A row
the guard or its template turns away goes the whole way (`run_claimed`), which settles it as
the tick would.

When a livestream brings adds by the hundred a second, the welcomes of adds committed while an
earlier batch was on its way wait for it and then go as one batch: the same transactions for
all of them, their calls made side by side. One add alone goes at once.

Whoever finds the lane idle drives it (inside the inbox worker's after-commit task, so the
worker's shutdown and `settle` see it); the others wait for their batch. If the driver is
cancelled (shutdown), the batches it had not finished are cancelled too: their rows stay
pending or claimed, and the tick (or its reaping) sends them, as after any interrupted run.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, or_, update

from guidebot.db.base import constant, only_filters
from guidebot.db.direct import Direct
from guidebot.db.one_hop import inline_statements
from guidebot.events import PairNames, StoreRef
from guidebot.sop.actions import action_for
from guidebot.sop.actions.base import Prepared, TickReport
from guidebot.sop.context import SopRuntime
from guidebot.sop.enroll_batch import WelcomeClaim
from guidebot.sop.execute import execute
from guidebot.sop.messages import message_for
from guidebot.sop.models import SopTask, TaskStatus
from guidebot.sop.prepare import SEND_LEASE, prepared_from
from guidebot.sop.queue import FAILED_RUNS
from guidebot.sop.templates import render_off_loop
from guidebot.sop.tick import run_claimed, run_tasks

log = logging.getLogger(__name__)

_TASKS = SopTask.__table__
# Built once: prepare's send-time checks for a row the add claimed for us a moment ago. A stop
# since then closed it (it is no longer claimed); an expired one is left to prepare to settle.
_MARK_SENDING = Direct(
    update(_TASKS)
    .where(
        _TASKS.c.id == bindparam("b_id"),
        only_filters(_TASKS.c.status, constant(TaskStatus.CLAIMED)),
        only_filters(_TASKS.c.lease_owner, bindparam("b_owner")),
        or_(_TASKS.c.expires_at.is_(None), _TASKS.c.expires_at >= bindparam("b_now")),
    )
    .values(
        status=TaskStatus.SENDING,
        lease_until=bindparam("b_until"),
        sent_at=bindparam("b_now"),
        message=bindparam("b_message"),
        updated_at=bindparam("b_now"),
    )
)


@dataclass
class Drafted:
    """A welcome the add inserted claimed for the lane: the row ready but for its text, and
    the text (`row.message`), or the template and variables it renders from."""

    row: Prepared
    render: tuple[str, dict[str, Any]] | None


@dataclass(frozen=True)
class Undrafted:
    """A welcome the add claimed for the lane whose text could not be drafted with it: the
    lane prepares it as the tick would, and it meets the same error there."""

    id: int


def draft_welcome(
    runtime: SopRuntime,
    row: dict[str, Any],
    settings: dict[str, Any],
    relation: Any,
    names: PairNames,
    store: StoreRef | None,
) -> Drafted:
    """The welcome's row as the add inserted it (with its id) and its enrollment's settings,
    its text from what the add knew: the same variables prepare would read back
    (guidebot.sop.messages)."""
    task = SimpleNamespace(**row)
    action = action_for(task.action)
    assert action is not None
    known_store = store is not None and store.id is not None and store.name is not None
    message, render = message_for(
        runtime,
        action,
        task,  # type: ignore[arg-type]
        SimpleNamespace(settings=settings),  # type: ignore[arg-type]
        SimpleNamespace(name=names.customer),  # type: ignore[arg-type]
        SimpleNamespace(name=names.guide),  # type: ignore[arg-type]
        SimpleNamespace(name=store.name, code=store.code) if known_store else None,  # type: ignore[union-attr,arg-type]
        relation,
    )
    return Drafted(prepared_from(task, settings, message), render)


# What the lane is handed: a pending row's id, or a row the add claimed for it.
Welcome = int | Drafted | Undrafted


class WelcomeLane:
    def __init__(self, sop: SopRuntime) -> None:
        self._sop = sop
        # One claim identity for the lane (never taken for the tick's own), built once so its
        # compiled templates are kept.
        self._claimer = sop.claimer()
        self._waiting: list[tuple[Welcome, asyncio.Future[None]]] = []
        self._driving = False

    def claim(self, now: datetime) -> WelcomeClaim:
        """How an add's transaction inserts a welcome already claimed for this lane."""
        return WelcomeClaim(self._claimer.owner, now + self._claimer.claim_lease)

    async def send(self, task: Welcome) -> None:
        """Send the welcome task `task` (a pending row's id, or a row the add claimed for us),
        and any waiting beside it; return once it is done."""
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((task, done))
        if not self._driving:
            await self._drive()
        await done

    async def _drive(self) -> None:
        self._driving = True
        batch: list[tuple[Welcome, asyncio.Future[None]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    # Short transactions of point statements: on SQLite on the loop's thread.
                    with inline_statements():
                        await self._run([task for task, _ in batch])
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

    async def _run(self, tasks: list[Welcome]) -> None:
        runtime, now = self._claimer, self._sop.clock.now()
        drafted = [task for task in tasks if isinstance(task, Drafted)]
        # Ours already, to prepare as the tick would: not drafted, or turned away by the guard.
        claimed = [task.id for task in tasks if isinstance(task, Undrafted)]
        pending = [task for task in tasks if isinstance(task, int)]
        report = TickReport()
        if drafted:
            claimed += await self._send_drafted(runtime, drafted, now, report)
        if claimed:
            await run_claimed(runtime, claimed, now, report)
        if pending:
            await run_tasks(runtime, now, ids=pending)

    async def _send_drafted(
        self, runtime: SopRuntime, drafted: list[Drafted], now: datetime, report: TickReport
    ) -> list[int]:
        """Mark the drafts `sending` and send them; the ids the guard or the template turned
        away (still claimed by us)."""
        ids = [draft.row.id for draft in drafted]
        try:
            texts = await render_off_loop(
                runtime.env, [draft.render for draft in drafted if draft.render is not None]
            )
            rendered = iter(texts)
            ready: list[Prepared] = []
            turned_away: list[int] = []
            async with runtime.sessions() as session, session.begin():
                for draft in drafted:
                    message = draft.row.message if draft.render is None else next(rendered)
                    if isinstance(message, Exception):  # prepare settles it, with why
                        turned_away.append(draft.row.id)
                        continue
                    marked = await _MARK_SENDING.execute(
                        session,
                        {
                            "b_id": draft.row.id,
                            "b_owner": runtime.owner,
                            "b_now": now,
                            "b_until": now + SEND_LEASE,
                            "b_message": message,
                        },
                    )
                    if marked.rowcount == 1:
                        ready.append(replace(draft.row, message=message))
                    else:
                        turned_away.append(draft.row.id)
            report.sending += len(ready)
        except BaseException:
            FAILED_RUNS.add(runtime.owner, ids)  # still claimed by us: the next tick gives back
            raise
        if ready:
            await execute(runtime, ready, now, report)
        return turned_away


__all__ = ["Drafted", "Undrafted", "Welcome", "WelcomeLane", "draft_welcome"]
