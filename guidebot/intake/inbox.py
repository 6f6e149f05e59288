"""Storing callbacks durably and fast: many callbacks per commit, each acknowledged after it.

A callback handler hands its entry to the InboxWriter and waits. One flusher task takes every
entry queued so far, inserts them in a single transaction (duplicates ignored by the unique
dedupe key), commits, and only then releases the waiting handlers, which answer 200. If the
commit fails they answer 503 and WeCom retries. One fsync now covers a whole burst.

One entry the database refuses (a value it will not hold) never fails the others batched with
it: the batch is written again with each entry under its own savepoint, the others commit, and
only that entry's caller hears InboxRefused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from guidebot.clock import Clock
from guidebot.db.engine import upsert_insert
from guidebot.intake.models import InboxEvent, InboxStatus
from guidebot.wecom.events import Event, customer_key

log = logging.getLogger(__name__)


_CLOSE: Any = object()  # queued by stop(): everything before it is committed first
# json.dumps(..., sort_keys=True, ensure_ascii=False) builds a new encoder per call; this is it,
# built once. Keys stored by earlier versions stay valid: the text is the same.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode


class InboxUnavailable(Exception):
    """The entry could not be committed; the callback must not be acknowledged."""


class InboxRefused(Exception):
    """The database refuses this entry itself (not the batch, not the connection): retrying it
    cannot help, and the entries batched with it were committed without it."""


def _row_fault(exc: DBAPIError) -> bool:
    """Whether the database refused a row's values: SQLSTATE class 22 (data exception: too long,
    out of range) or 23 (a constraint). Anything else (a lost connection, a timeout, a missing
    table) is the whole batch's. asyncpg reports a data exception as a plain DBAPIError."""
    if isinstance(exc, DataError | IntegrityError):
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate[:2] in ("22", "23")


def dedupe_key(event: Event) -> str:
    """MsgId for messages; for events, a hash over every field.

    Customer events all come from `sys` with one-second CreateTimes, so the documented
    FromUserName+CreateTime key collides for distinct events. A WeCom retry repeats every field,
    so hashing all of them (order-independent) folds retries and nothing else.
    """
    msg_id = event.raw.get("MsgId")
    if event.msg_type != "event" and isinstance(msg_id, str) and msg_id.strip():
        return f"msg:{msg_id.strip()}"
    canonical = _CANONICAL_JSON(dict(event.raw))
    return "evt:" + hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class InboxEntry:
    dedupe_key: str
    kind: str
    customer_key: str | None
    payload: str

    @classmethod
    def of(cls, event: Event, plaintext: str) -> InboxEntry:
        return cls(dedupe_key(event), event.kind, customer_key(event), plaintext)


class InboxWriter:
    def __init__(
        self,
        engine: AsyncEngine,
        clock: Clock,
        on_commit: Callable[[], None] = lambda: None,
        max_batch: int = 500,
        *,
        store_timeout: float = 3.0,
        max_backlog: int = 10_000,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._on_commit = on_commit
        self._max_batch = max_batch
        # WeCom gives up on a callback after 5 s: a database that hangs rather than fails must
        # still be answered 503 in time, and callbacks must not pile up in memory behind it.
        self._store_timeout = store_timeout
        self._max_backlog = max_backlog
        self._queue: asyncio.Queue[tuple[InboxEntry, asyncio.Future[None]]] = asyncio.Queue()
        # Callbacks handed in, and those whose commit is over (committed, refused or failed):
        # `quiet` waits for the second to reach what the first was when it was called.
        self._handed_in = 0
        self._settled = 0
        self._flushed = asyncio.Event()  # set, and replaced, as each commit is over
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # Built once (building it and its cache key cost 17 µs a commit, and at a livestream's
        # rate a commit holds a callback or two).
        self._insert = upsert_insert(engine.dialect.name)(
            InboxEvent.__table__
        ).on_conflict_do_nothing(index_elements=["dedupe_key"])

    async def store(self, entry: InboxEntry) -> None:
        """Return once the entry is committed (or was already there); else InboxUnavailable,
        or InboxRefused when the database will not hold this entry at all.

        After a timeout the entry may still be committed: WeCom's retry is then a duplicate,
        which the dedupe key folds.
        """
        if self._task is None or self._closing:
            raise InboxUnavailable("inbox writer is not running")
        if self._queue.qsize() >= self._max_backlog:
            raise InboxUnavailable(f"{self._max_backlog} callbacks already wait to be committed")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((entry, done))
        self._handed_in += 1
        try:
            async with asyncio.timeout(self._store_timeout):
                # Cancelling `done` on timeout is harmless: the flusher skips finished futures.
                await done
        except TimeoutError:
            raise InboxUnavailable(f"not committed within {self._store_timeout:g} s") from None

    async def quiet(self, patience: float = 0.05) -> None:
        """Wait (at most `patience` seconds) until the callbacks handed in before this call
        are committed (or refused).

        The inbox worker calls this before each batch: acknowledging callbacks within WeCom's
        timeout comes first, and on SQLite the two share one connection. Only those already in
        hand: waiting for no callback at all to wait let a steady stream of them (a
        livestream's 166 a second) hold each batch for the whole patience, a quarter of the
        worker's time (bench.welcome); one arriving now waits for one batch at most.
        """
        target = self._handed_in
        if self._settled >= target:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(patience):
                while self._settled < target:
                    await self._flushed.wait()

    def start(self) -> None:
        self._task = asyncio.create_task(self._flush_forever(), name="inbox-writer")

    async def stop(self) -> None:
        """Commit what was handed in so far, then stop; later callers get InboxUnavailable."""
        if self._task is None:
            return
        self._closing = True
        await self._queue.put(_CLOSE)
        await self._task
        self._task = None
        while not self._queue.empty():
            _, done = self._queue.get_nowait()
            if not done.done():
                done.set_exception(InboxUnavailable("shutting down"))
        self._settled = self._handed_in  # nothing is left to wait for
        self._flushed.set()

    async def _flush_forever(self) -> None:
        closing = False
        while not closing:
            batch = []
            first = await self._queue.get()
            if first is _CLOSE:
                return
            batch.append(first)
            while len(batch) < self._max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is _CLOSE:
                    closing = True
                    break
                batch.append(item)
            outcomes: list[BaseException | None]
            try:
                try:
                    await self._commit([entry for entry, _ in batch])
                    outcomes = [None] * len(batch)
                except DBAPIError as exc:
                    if not _row_fault(exc):
                        raise
                    # Perhaps one entry's fault: find out which, and commit the rest.
                    log.warning("inbox commit of %d callbacks refused: %s", len(batch), exc.orig)
                    outcomes = await self._commit_each([entry for entry, _ in batch])
            except Exception as exc:  # any failure: these callbacks must get a 503, not hang
                log.error("inbox commit failed for %d callbacks: %s", len(batch), exc)
                outcomes = [InboxUnavailable(str(exc)) for _ in batch]
            for (_, done), outcome in zip(batch, outcomes, strict=True):
                if done.done():
                    continue
                if outcome is None:
                    done.set_result(None)
                else:
                    done.set_exception(outcome)
            self._settled += len(batch)
            flushed, self._flushed = self._flushed, asyncio.Event()
            flushed.set()
            if None in outcomes:
                self._on_commit()

    def _rows(self, entries: list[InboxEntry]) -> list[dict[str, Any]]:
        now = self._clock.now()
        return [
            {
                "dedupe_key": e.dedupe_key,
                "kind": e.kind,
                "customer_key": e.customer_key,
                "payload": e.payload,
                "received_at": now,
                "status": InboxStatus.PENDING,
                "attempts": 0,
                "next_attempt_at": now,
            }
            for e in entries
        ]

    async def _commit(self, entries: list[InboxEntry]) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(self._insert, self._rows(entries))

    async def _commit_each(self, entries: list[InboxEntry]) -> list[BaseException | None]:
        """Each entry under its own savepoint, all in one commit: a refused entry fails alone.

        Returns, per entry, None (committed) or the InboxRefused its caller gets.
        """
        outcomes: list[BaseException | None] = []
        statement = self._insert
        async with self._engine.begin() as conn:
            for entry, row in zip(entries, self._rows(entries), strict=True):
                try:
                    async with conn.begin_nested():
                        await conn.execute(statement, row)
                except DBAPIError as exc:
                    if not _row_fault(exc):
                        raise
                    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
                    log.error(
                        "inbox entry %s (%s) refused: %s", entry.dedupe_key, entry.kind[:80], reason
                    )
                    outcomes.append(InboxRefused(reason))
                else:
                    outcomes.append(None)
        return outcomes
