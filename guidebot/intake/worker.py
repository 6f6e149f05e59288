"""The inbox worker: claims stored callbacks and runs them through the dispatcher.

One customer's events are handled in arrival order: an event waits while an earlier event of
the same customer is pending or being processed. Different customers run concurrently, and the
events of the last few seconds are taken before older ones (guidebot.intake.claims).
Failures retry with backoff; an event that keeps failing is parked as `failed` with its error
and does not block the customer's later events. On PostgreSQL several instances claim with
FOR UPDATE SKIP LOCKED and a lease; on SQLite one process claims.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextvars import ContextVar
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.clock import Clock
from guidebot.db.direct import Direct, SavepointSkipped, without_savepoints
from guidebot.db.one_hop import inline_statements
from guidebot.db.queue import Strays, claim_owner
from guidebot.events import collect_after_commit
from guidebot.intake.batches import Batch, Claimed, Reads, Ready, next_chunk, parsed_event
from guidebot.intake.claims import INBOX_QUEUE, claim_due
from guidebot.intake.models import InboxEvent, InboxStatus
from guidebot.intake.policy import Burst, WorkerPolicy
from guidebot.intake.router import UNHANDLED, Data, Dispatcher, Next
from guidebot.logs import log_context
from guidebot.wecom.events import Event, EventParseError

log = logging.getLogger(__name__)

_LEASE_MARGIN = timedelta(seconds=5)
_FETCHED = "_fetched_before"  # in an event's data: its `before` callbacks already ran

_INBOX = InboxEvent.__table__
_NOT_DONE = _INBOX.c.status != InboxStatus.DONE
_DONE = {
    "status": InboxStatus.DONE,
    "processed_at": bindparam("now"),
    "lease_owner": None,
    "lease_until": None,
    "last_error": None,
}
# Built once, as a Core statement: building a statement and its cache key, and the ORM's bulk
# UPDATE path, cost more than running it, and this runs once per event.
_MARK_DONE = Direct(
    update(_INBOX).where(_INBOX.c.id == bindparam("event_id"), _NOT_DONE).values(**_DONE)
)
# A batch's events that ran without savepoints, marked done together before it commits.
_MARK_ALL_DONE = Direct(
    update(_INBOX)
    .where(_INBOX.c.id.in_(bindparam("event_ids", expanding=True)), _NOT_DONE)
    .values(**_DONE)
)


# The batch whose transaction the current event joins, if any: each lane's own (a context
# variable, as several lanes run at once on PostgreSQL).
_BATCH: ContextVar[Batch | None] = ContextVar("guidebot_inbox_batch", default=None)


class AlreadyProcessed(Exception):
    """Another worker finished this event first; this run's changes are rolled back."""


class _Spoiled(Exception):
    """An event of a batch run without savepoints failed, or was finished elsewhere: the
    batch's transaction rolls back and it runs again, a savepoint each (intake.batches)."""


@contextlib.asynccontextmanager
async def _optimistic() -> AsyncIterator[None]:
    """An event of a batch that is not careful: no savepoint of its own, nor any of the
    blocks it runs (db.direct.savepoint); a failure in one spoils the batch (_errors)."""
    with without_savepoints():
        yield


class InboxWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        dispatcher: Dispatcher,
        clock: Clock,
        *,
        resources: Mapping[str, Any] | None = None,
        policy: WorkerPolicy | None = None,
        owner: str | None = None,
        before_batch: Callable[[], Awaitable[Any]] | None = None,
        yield_to: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        self.sessions = sessions
        self.dispatcher = dispatcher
        self.clock = clock
        self.resources = dict(resources or {})
        self.policy = policy or WorkerPolicy()
        self.owner = owner or claim_owner()  # host:pid:random, as the SOP claimers
        self._wake = asyncio.Event()
        self._quiet = asyncio.Event()  # no pass with events in hand, no welcome on its way
        self._quiet.set()
        self._passes = 0
        self._stopping = False
        self._before_batch = before_batch
        # Awaited before each event: lets callbacks waiting to be acknowledged go first.
        self.yield_to = yield_to
        self._task: asyncio.Task[None] | None = None
        dispatcher.check_wiring(
            extra_names=[
                *self.resources,
                "session",
                "inbox_id",
                "attempts",
                "lease_until",
            ]
        )
        self._after_commit_tasks: set[asyncio.Task[Any]] = set()
        # Events we claimed and no longer hold whose outcome could not be written (the
        # database failed even for that): id -> whether it was attempted. They are handed
        # back as soon as the database answers, not left to wait out their lease.
        self._orphans = Strays()
        self._next_reap: datetime | None = None
        self._burst = Burst(self.policy)
        # The worker's outer middlewares, outermost first: errors -> dedupe -> what the
        # handlers take from outside (before the transaction) -> database session.
        self._pipeline: Next = partial(
            self._errors,
            partial(self._dedupe, partial(self._fetch, partial(self._session, self._feed))),
        )

    # -- running ----------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def quiet(self, patience: float) -> None:
        """Wait (at most `patience` seconds) until no event is in hand and no welcome this
        worker started is on its way: bookkeeping that gives way goes in the gaps
        (guidebot.periodic.take_turn)."""
        if not self._quiet.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._quiet.wait(), patience)

    def _note_quiet(self, _task: Any = None) -> None:
        if not self._passes and not self._after_commit_tasks:
            self._quiet.set()

    def busy(self) -> bool:
        """Whether the worker is in a burst of adds (policy.Burst). Background bookkeeping gives
        way to it (guidebot.scheduler)."""
        return bool(self._burst)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run_forever(), name=f"inbox-{self.owner}")

    async def stop(self, grace: float = 10.0) -> None:
        """Finish the event in hand, hand back the rest of the batch, then stop.

        Cancelling a handler mid-transaction would leave a connection to be torn down while
        it may hold SQLite's write lock; stopping between events avoids that.
        """
        self._stopping = True
        self._wake.set()
        if self._task:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except TimeoutError:
                log.warning("inbox worker did not stop within %.0f s; cancelling it", grace)
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        if self._after_commit_tasks:
            await asyncio.wait(self._after_commit_tasks, timeout=grace)

    async def _run_forever(self) -> None:
        while not self._stopping:
            # Cleared before the look, not after it: a wake-up from a commit that lands while
            # this pass finds nothing must keep the worker from sleeping out the poll.
            self._wake.clear()
            try:
                handled = await self.run_once()
            except Exception:
                log.exception("inbox worker pass failed; retrying")
                handled = 0
            if handled:
                continue
            if self._stopping:
                break
            # Real time: a background loop's idle poll (a fake clock moves when slept on).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.policy.poll_interval)

    async def drain(self, max_passes: int = 1000) -> int:
        """Process until nothing is due (tests and `inbox replay`)."""
        total = 0
        for _ in range(max_passes):
            handled = await self.run_once()
            if not handled:
                break
            total += handled
        return total

    async def run_once(self) -> int:
        self._passes += 1
        try:
            return await self._run_pass()
        finally:
            self._passes -= 1
            self._note_quiet()

    async def _run_pass(self) -> int:
        await self._hand_back_orphans()
        await self._reclaim_expired_leases()
        claimed = await self._claim()
        self._burst.note(len(claimed))
        if not claimed:
            return 0
        self._quiet.clear()
        if self._before_batch is not None:
            try:
                await self._before_batch()
            except Exception as exc:  # the handlers will meet the same trouble and retry
                log.debug("before-batch preparation failed: %s", exc)
        groups: dict[str, list[Claimed]] = defaultdict(list)
        for row in claimed:
            groups[row.customer_key or f"#{row.id}"].append(row)
        gate = asyncio.Semaphore(self.policy.concurrency)

        unprocessed: list[int] = []

        async def run_group(rows: list[Claimed]) -> None:
            async with gate:
                for n, row in enumerate(rows):
                    if self._stopping:
                        unprocessed.append(row.id)
                        continue
                    try:
                        if self.yield_to is not None:
                            await self.yield_to()
                        await self._process(row)
                    except Exception:
                        # Not even the failure could be recorded (the database is gone): this
                        # event and the customer's later ones stay ours until handed back.
                        log.exception("event %s: outcome not recorded; handing it back", row.id)
                        self._orphans.add(self.owner, [row.id])
                        later = [later.id for later in rows[n + 1 :]]
                        self._orphans.add(self.owner, later, attempted=False)
                        return

        if self.policy.batch_events > 1:
            # Batches, each customer's events in order in one lane; on PostgreSQL several lanes
            # at once over different customers, so their round trips to the database overlap.
            lanes: list[list[Claimed]] = [
                [] for _ in range(min(self.policy.concurrency, len(groups)))
            ]
            for n, rows in enumerate(groups.values()):
                lanes[n % len(lanes)].extend(rows)
            await asyncio.gather(*(self._run_batched(lane, unprocessed) for lane in lanes))
        else:
            await asyncio.gather(*(run_group(rows) for rows in groups.values()))
        if unprocessed:
            try:
                await self._release(unprocessed)
            except Exception:
                self._orphans.add(self.owner, unprocessed, attempted=False)
                raise
        return len(claimed) - len(unprocessed)

    async def _run_batched(self, rows: list[Claimed], unprocessed: list[int]) -> None:
        reads = Reads(rows, self.dispatcher, self.resources, self.policy.reads_ahead)
        try:
            await self._run_batches(rows, unprocessed, reads)
        finally:
            reads.close()

    async def _run_batches(self, rows: list[Claimed], unprocessed: list[int], reads: Reads) -> None:
        i, chunk, careful = 0, [], False
        while chunk or i < len(rows):
            if self._stopping:
                unprocessed.extend([r.row.id for r in chunk] + [row.id for row in rows[i:]])
                return
            if not chunk:
                chunk, i = await next_chunk(
                    rows, i, reads, self.dispatcher, self.policy, self._record_failure
                )
                if not chunk:
                    continue
                careful = any(ready.calls_out for ready in chunk)
            if self.yield_to is not None:
                await self.yield_to()
            taken, started = 0, time.monotonic()
            try:
                # The batch's statements are short point reads and writes under the write lock
                # it holds: on SQLite they run on the loop's thread (db.one_hop).
                with inline_statements():
                    async with self.sessions() as session, session.begin():
                        batch = Batch(session, careful)
                        in_batch = _BATCH.set(batch)
                        try:
                            # The callbacks wait for this connection: hold it so long at
                            # most, and leave the rest of the chunk to the next transaction.
                            while taken < len(chunk) and (
                                not taken
                                or time.monotonic() - started < self.policy.batch_hold_seconds
                            ):
                                if taken:  # inline statements never yield: let the loop run
                                    await asyncio.sleep(0)
                                ready = chunk[taken]
                                taken += 1
                                await self._process(ready.row, ready)
                            await self._mark_batch_done(batch)
                        finally:
                            _BATCH.reset(in_batch)
            except _Spoiled as spoiled:
                log.info("a batch of %d events runs again, a savepoint each: %s", taken, spoiled)
                careful = True
                continue
            except Exception:
                # The batch rolled back (the database is gone): its events and the ones after
                # stay ours until handed back, as a failed single event's do.
                log.exception("a batch of %d events was not committed; handing them back", taken)
                self._orphans.add(self.owner, [r.row.id for r in chunk[:taken]])
                later = [r.row.id for r in chunk[taken:]] + [row.id for row in rows[i:]]
                self._orphans.add(self.owner, later, attempted=False)
                return
            for n, (row, error, park) in enumerate(batch.failures):
                try:
                    await self._record_failure(row, error, park=park)
                except Exception:
                    self._orphans.add(self.owner, [r.id for r, _, _ in batch.failures[n:]])
                    raise
            for work, event in batch.after_commit:
                self._start_after_commit(work, event)
            chunk = chunk[taken:]  # what the hold left: not yet tried, so not careful
            careful = any(ready.calls_out for ready in chunk)

    # -- claiming ---------------------------------------------------------------------------

    async def _claim(self) -> list[Claimed]:
        async with self.sessions() as session, session.begin():
            rows = await claim_due(
                session,
                owner=self.owner,
                now=self.clock.now(),
                lease=self.policy.lease,
                limit=self.policy.batch_size,
                fresh_first=self.policy.fresh_first,
            )
        return sorted((Claimed(*row) for row in rows), key=lambda row: row.id)

    async def _release(self, ids: list[int]) -> None:
        """Give claimed events back untouched (claiming counted an attempt; undo it)."""
        async with self.sessions() as session, session.begin():
            await INBOX_QUEUE.release(
                session, ids, owner=self.owner, now=self.clock.now(), undo_attempt=True
            )

    async def _hand_back_orphans(self) -> None:
        """Make events whose outcome was lost with the database due again (see run_group)."""
        if not self._orphans:
            return
        taken = self._orphans.take()
        now = self.clock.now()
        async with self.sessions() as session, session.begin():
            for owner, rows in taken.items():
                tried = [id_ for id_, attempted in rows.items() if attempted]
                untried = [id_ for id_, attempted in rows.items() if not attempted]
                await INBOX_QUEUE.release(
                    session, tried, owner=owner, now=now, values={"next_attempt_at": now}
                )
                # Claiming counted an attempt that never happened; undo it.
                await INBOX_QUEUE.release(session, untried, owner=owner, now=now, undo_attempt=True)
        self._orphans.forget(taken)
        count = sum(len(rows) for rows in taken.values())
        log.info("handed back %d event(s) whose outcome was not recorded", count)

    async def recover_after_crash(self) -> None:
        """On SQLite one process owns the inbox: whatever it was processing when it died is due."""
        async with self.sessions() as session, session.begin():
            await INBOX_QUEUE.reap(session, self.clock.now(), everything=True)

    async def _reclaim_expired_leases(self) -> None:
        now = self.clock.now()
        if self._next_reap is not None and now < self._next_reap:
            return
        async with self.sessions() as session, session.begin():
            await INBOX_QUEUE.reap(session, now)
        self._next_reap = now + self.policy.reap_every

    # -- processing -------------------------------------------------------------------------

    async def _process(self, row: Claimed, ready: Ready | None = None) -> None:
        with log_context(event_id=row.id):  # every log line about this event names it
            await self._process_row(row, ready)

    async def _process_row(self, row: Claimed, ready: Ready | None = None) -> None:
        parsed = ready.parsed if ready is not None else parsed_event(row)
        if isinstance(parsed, EventParseError):  # stored by an older version, perhaps
            await self._fail(row, f"unparseable: {parsed}", park=True)  # never retried
            return
        event, fetched = parsed, ready.fetched if ready is not None else None
        data = {
            "inbox_id": row.id,
            "attempts": row.attempts,
            "lease_until": row.lease_until,
            **self.resources,
        }
        if fetched is not None:  # a batch's: fetched before its transaction opened
            data |= fetched
            data[_FETCHED] = True
        await self._pipeline(event, data)

    async def _feed(self, event: Event, data: Data) -> Any:
        return await self.dispatcher.feed(event, **data)

    async def _fetch(self, call: Next, event: Event, data: Data) -> Any:
        if data.pop(_FETCHED, False):
            return await call(event, data)
        return await call(event, data | await self.dispatcher.fetch_before(event, data))

    async def _errors(self, call: Next, event: Event, data: Data) -> Any:
        try:
            return await call(event, data)
        except (Exception, SavepointSkipped) as exc:
            batch = _BATCH.get()
            if batch is not None and not batch.careful:
                # Failed, or finished elsewhere, with no savepoint of its own: the whole batch
                # rolls back and runs again, careful.
                why = f"{type(exc).__name__}: {exc}"
                raise _Spoiled(f"event {data['inbox_id']} ({event.kind}): {why}") from exc
            if isinstance(exc, AlreadyProcessed):
                return UNHANDLED
            log.warning("event %s (%s) failed: %s", data["inbox_id"], event.kind, exc)
            row = Claimed(data["inbox_id"], None, "", data["attempts"])
            await self._fail(row, f"{type(exc).__name__}: {exc}")
            return UNHANDLED

    async def _dedupe(self, call: Next, event: Event, data: Data) -> Any:
        """Skip an event someone else has handled since we claimed it.

        While our lease holds, no other worker can have taken the event, so nothing needs
        checking; once it has run out, another instance may have claimed and finished it.
        """
        lease_until = data.get("lease_until")
        if lease_until is None or self.clock.now() >= lease_until - _LEASE_MARGIN:
            look = select(InboxEvent.status, InboxEvent.lease_owner).where(
                InboxEvent.id == data["inbox_id"]
            )
            batch = _BATCH.get()
            if batch is not None:
                row = (await batch.session.execute(look)).one_or_none()
            else:
                async with self.sessions() as session:
                    row = (await session.execute(look)).one_or_none()
            if row is None or row.status == InboxStatus.DONE or row.lease_owner != self.owner:
                return UNHANDLED
        return await call(event, data)

    async def _session(self, call: Next, event: Event, data: Data) -> Any:
        # Work a handler must do only once its changes are durable (the welcome message: it
        # must go within seconds, and only if the enrollment that records it was committed).
        after_commit: list[Callable[[], Awaitable[Any]]] = []
        batch = _BATCH.get()
        if batch is not None:
            return await self._in_batch(batch, call, event, data)
        async with self.sessions() as session, session.begin():
            # Handlers and the domains' subscribers hand it over with events.after_commit.
            collect_after_commit(session, after_commit)
            result = await call(event, {**data, "session": session})
            # Marking done in the handler's own transaction makes its effects exactly-once:
            # if someone else already finished the event, all of this run rolls back.
            marked = await _MARK_DONE.execute(
                session, {"event_id": data["inbox_id"], "now": self.clock.now()}
            )
            if marked.rowcount != 1:
                raise AlreadyProcessed()
        for work in after_commit:
            self._start_after_commit(work, event)
        return result

    async def _in_batch(self, batch: Batch, call: Next, event: Event, data: Data) -> Any:
        """The event in the batch's transaction; in a careful batch under a savepoint, so that
        if it fails, or someone else finished it, only its own changes roll back."""
        session = batch.session
        if not self.dispatcher.handles(event):
            # No domain takes it: nothing but the done-mark to write, or to roll back.
            await self._mark_done(batch, data["inbox_id"])
            return UNHANDLED
        after_commit: list[Callable[[], Awaitable[Any]]] = []
        collect_after_commit(session, after_commit)
        async with session.begin_nested() if batch.careful else _optimistic():
            result = await call(event, {**data, "session": session})
            await self._mark_done(batch, data["inbox_id"])
        batch.after_commit.extend((work, event) for work in after_commit)
        return result

    async def _mark_done(self, batch: Batch, event_id: int) -> None:
        if not batch.careful:  # with the batch's others, in one statement (_mark_batch_done)
            batch.done.append(event_id)
            return
        marked = await _MARK_DONE.execute(
            batch.session, {"event_id": event_id, "now": self.clock.now()}
        )
        if marked.rowcount != 1:
            raise AlreadyProcessed()

    async def _mark_batch_done(self, batch: Batch) -> None:
        """Before the batch commits: its events that ran without savepoints, done. One that
        is done already was finished elsewhere meanwhile: the batch runs again, careful."""
        if not batch.done:
            return
        marked = await _MARK_ALL_DONE.execute(
            batch.session, {"event_ids": batch.done, "now": self.clock.now()}
        )
        if marked.rowcount != len(batch.done):
            missed = len(batch.done) - marked.rowcount
            raise _Spoiled(f"{missed} of its events were finished elsewhere")

    def _start_after_commit(self, work: Callable[[], Awaitable[Any]], event: Event) -> None:
        task = asyncio.create_task(self._run_after_commit(work, event))
        self._after_commit_tasks.add(task)
        self._quiet.clear()
        task.add_done_callback(self._after_commit_tasks.discard)
        task.add_done_callback(self._note_quiet)

    async def _run_after_commit(self, work: Callable[[], Awaitable[Any]], event: Event) -> None:
        try:
            await work()
        except Exception:
            # The event is done; follow-up work keeps its own state and its own retries.
            log.exception("after-commit work for %s failed", event.kind)

    async def settle(self) -> None:
        """Wait for after-commit work started so far (tests)."""
        while self._after_commit_tasks:
            await asyncio.gather(*list(self._after_commit_tasks), return_exceptions=True)

    async def _fail(self, row: Claimed, error: str, *, park: bool = False) -> None:
        batch = _BATCH.get()
        if batch is not None:  # recorded once the batch's transaction is over
            batch.failures.append((row, error, park))
        else:
            await self._record_failure(row, error, park=park)

    async def _record_failure(self, row: Claimed, error: str, *, park: bool = False) -> None:
        park = park or row.attempts >= self.policy.max_attempts
        values: dict[str, Any] = {"last_error": error[:2000], "lease_owner": None}
        if park:
            values |= {"status": InboxStatus.FAILED, "lease_until": None}
            log.error(
                "event %s parked as failed after %d attempts: %s", row.id, row.attempts, error
            )
        else:
            values |= {
                "status": InboxStatus.PENDING,
                "lease_until": None,
                "next_attempt_at": self.clock.now() + self.policy.backoff(row.attempts),
            }
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(InboxEvent)
                .where(InboxEvent.id == row.id, InboxEvent.status != InboxStatus.DONE)
                .values(**values)
            )
