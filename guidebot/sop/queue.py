"""The SOP engine's use of the leased queue (guidebot.db.queue) over `sop_tasks`.

A tick claims due `pending` rows as `claimed` under a lease; `prepare` then takes only the rows
still claimed by its claimer, so a row is prepared once at most, and a claim taken back from
under a claimer is harmless. Rows are never taken back once `sending` (rule 6: what may have
reached WeCom is reconciled, not retried).

Three ways a claim goes back to `pending` without being prepared:
* its lease lapsed (its claimer died before any WeCom call): `reap_claims`, every tick; at
  start-up on SQLite, every claim (`everything`: the one process that could hold one is dead);
* a run in this process failed between its transactions (the database went away): its rows
  are handed back at the next tick of any claimer here (`release_failed_runs`), and this
  instance's claims older than STRANDED_CLAIM are too (`release_stranded_claims`), rather
  than waiting out the lease (a welcome's code lives 20 s);
* a row the engine cannot decide is parked (guidebot.db.parking) and its claim released.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from guidebot.db.parking import unparked
from guidebot.db.queue import LeasedQueue, Strays
from guidebot.sop.context import SopRuntime
from guidebot.sop.models import SopTask, TaskStatus

log = logging.getLogger(__name__)

# A tick holds claimed rows this long before another claimer may take them back (the
# default; GUIDEBOT_CLAIM_LEASE_SECONDS sets it, see SopRuntime.claim_lease).
CLAIM_LEASE = timedelta(minutes=2)
# Rows the task runner cannot decide are parked under this job (guidebot.db.parking) and not
# claimed again until `guidebot jobs retry` hands them back.
TICK_JOB = "sop-tick"
TASKS_TABLE = SopTask.__tablename__
# Claiming and preparing a row take milliseconds; a claim of ours older than this was stranded
# (the database went away between the two, say) and nobody will prepare it. Waiting out
# the claim lease (2 minutes by default) would hold a welcome past its code's 20 s.
STRANDED_CLAIM = timedelta(seconds=10)

TASK_QUEUE = LeasedQueue(
    SopTask.__table__,
    pending=TaskStatus.PENDING,
    claimed=TaskStatus.CLAIMED,
    stamp=lambda now: {"updated_at": now},
)
# Rows claimed by a run in this process that then failed. Process-wide: any claimer's next
# tick gives them back.
FAILED_RUNS = Strays()


async def claim(
    runtime: SopRuntime,
    now: datetime,
    *,
    limit: int | None = None,
    ids: Sequence[int] | None = None,
) -> list[int]:
    """Claim due pending rows (or exactly `ids`, whatever their due time) under a lease."""
    table = SopTask.__table__
    where = [unparked(TICK_JOB, TASKS_TABLE, table.c.id)]
    order_by: tuple = ()
    if ids is None:
        where.append(table.c.due_at <= now)
        order_by = (table.c.due_at, table.c.id)
        limit = limit or runtime.batch_size
    async with runtime.sessions() as session, session.begin():
        rows = await TASK_QUEUE.claim(
            session,
            owner=runtime.owner,
            now=now,
            lease=runtime.claim_lease,
            where=where,
            order_by=order_by,
            limit=limit if ids is None else None,
            ids=ids,
            values={"claimed_by": runtime.owner},
        )
    return sorted(row for (row,) in rows)


async def reap_claims(runtime: SopRuntime, now: datetime, *, everything: bool = False) -> int:
    """Claimed rows whose lease lapsed are due (`everything`: every claim, whoever holds it)."""
    async with runtime.sessions() as session, session.begin():
        return await TASK_QUEUE.reap(session, now, everything=everything)


async def release_failed_runs(runtime: SopRuntime, now: datetime) -> int:
    """Give back the rows failed runs in this process left claimed."""
    if not FAILED_RUNS:
        return 0
    taken = FAILED_RUNS.take()
    released = 0
    async with runtime.sessions() as session, session.begin():
        for owner, rows in taken.items():
            released += await TASK_QUEUE.release(session, rows, owner=owner, now=now)
    FAILED_RUNS.forget(taken)
    return released


async def release_stranded_claims(runtime: SopRuntime, now: datetime) -> int:
    """This instance's claims older than STRANDED_CLAIM go back to `pending`."""
    async with runtime.sessions() as session, session.begin():
        released = await TASK_QUEUE.reap(
            session, now, owner=runtime.owner, stranded=(runtime.claim_lease, STRANDED_CLAIM)
        )
    if released:
        log.warning("sop: %d stranded claim(s) of this instance made due again", released)
    return released


__all__ = [
    "CLAIM_LEASE",
    "FAILED_RUNS",
    "STRANDED_CLAIM",
    "TASKS_TABLE",
    "TASK_QUEUE",
    "TICK_JOB",
    "claim",
    "reap_claims",
    "release_failed_runs",
    "release_stranded_claims",
]
