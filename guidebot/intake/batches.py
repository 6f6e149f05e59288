"""The inbox worker's batches: events handled in one transaction.

On SQLite the process has one connection, and each transaction's BEGIN and COMMIT (the WAL
write of every page it touched) was most of an event's cost in a burst. So the worker
(guidebot.intake.worker, `_run_batched`) gathers the next events (`next_chunk`), reads what
their handlers need from WeCom first (the routers' `before` callbacks, with no transaction
open), and handles them together, and what must wait for the commit (failures to record,
after-commit work) waits for the batch's.

A batch first runs without a savepoint per event: nearly every event succeeds, and an event's
savepoint (SQLAlchemy's nested transaction, and SQLite's SAVEPOINT, which makes FTS5 write its
pending words out as a new segment) cost about a tenth of an add; its events' done-marks are
one statement before the commit. If one event fails, or another worker finished it first (the
done-marks find it done), the whole transaction rolls back and the batch runs again
`careful`: a savepoint and a done-mark each, so the one that fails rolls back alone. Nothing
left the process in the first run (WeCom is read before the transaction, and an event whose
handler calls WeCom itself runs alone and careful), so running its events again repeats
nothing outside the database.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.intake.router import Data, Dispatcher
from guidebot.wecom.events import Event, EventParseError, parse_event

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    customer_key: str | None
    payload: str
    attempts: int
    lease_until: datetime | None = None


@dataclass(slots=True)
class Batch:
    """Events handled in one transaction: BEGIN and COMMIT (SQLite's WAL write of every page
    touched) paid once per batch, not per event. What must wait for the commit waits for the
    batch's: the failures to record, the after-commit work."""

    session: AsyncSession
    careful: bool = True  # a savepoint per event (else one failure spoils the whole batch)
    done: list[int] = field(default_factory=list)  # not careful: to mark done as it commits
    after_commit: list[tuple[Callable[[], Awaitable[Any]], Event]] = field(default_factory=list)
    failures: list[tuple[Claimed, str, bool]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Ready:
    """A claimed event made ready for a batch: parsed once (or why it could not be), and what
    its `before` callbacks fetched."""

    row: Claimed
    parsed: Event | EventParseError
    fetched: Data
    calls_out: bool = False  # its handler calls WeCom itself: it runs alone, and never twice


def parsed_event(row: Claimed) -> Event | EventParseError:
    try:
        return parse_event(row.payload)
    except EventParseError as exc:
        return exc


class Reads:
    """The `before` reads (WeCom, no transaction open) of a claim's events, started ahead of
    the batches that need them, `ahead` at a time: a slow WeCom read then overlaps the next
    events' reads instead of holding up each batch in turn. (One after another, eight reads
    slowed to 3 s kept a burst's events waiting 24 s; PostgreSQL's worker, before its events
    went in batches, read for eight customers at once.) Each event is parsed here, once."""

    def __init__(
        self,
        rows: list[Claimed],
        dispatcher: Dispatcher,
        resources: Mapping[str, Any],
        ahead: int,
    ) -> None:
        self._rows, self._dispatcher, self._resources = rows, dispatcher, resources
        self._ahead = max(1, ahead)
        self._parsed: list[Event | EventParseError] = []
        self._reads: dict[int, asyncio.Task[Data]] = {}

    def parsed(self, i: int) -> Event | EventParseError:
        self._start(i)
        return self._parsed[i]

    async def fetched(self, i: int) -> Data:
        """What event i's `before` callbacks read (their error, if one failed)."""
        self._start(i)
        return await self._reads.pop(i)

    def close(self) -> None:
        """Reads no batch will take (the worker stops, or the claim is handed back)."""
        for read in self._reads.values():
            if read.done():
                if not read.cancelled():
                    read.exception()  # seen: nothing is left to say it was never retrieved
            else:
                read.cancel()
        self._reads.clear()

    def _start(self, i: int) -> None:
        """Reads started for events i to i + ahead - 1, those not started yet."""
        until = min(len(self._rows), i + self._ahead)
        for n in range(len(self._parsed), until):
            row = self._rows[n]
            parsed = parsed_event(row)
            self._parsed.append(parsed)
            if not isinstance(parsed, EventParseError):
                data = {"inbox_id": row.id, **self._resources}
                read = self._dispatcher.fetch_before(parsed, data)
                self._reads[n] = asyncio.ensure_future(read)


async def next_chunk(
    rows: list[Claimed],
    i: int,
    reads: Reads,
    dispatcher: Dispatcher,
    policy: Any,  # guidebot.intake.worker.WorkerPolicy: batch_events, batch_seconds
    record_failure: Callable[[Claimed, str], Awaitable[None]],
) -> tuple[list[Ready], int]:
    """The next events to share a transaction, with what their `before` callbacks fetched
    (`reads`): up to batch_events of them, for up to batch_seconds. An event whose handler
    calls WeCom itself opens a batch, never joins one, so the connection is never held across
    the network for a batch's later events."""
    chunk: list[Ready] = []
    started = time.monotonic()
    while i < len(rows) and len(chunk) < policy.batch_events:
        row = rows[i]
        parsed = reads.parsed(i)
        # An unparseable event is parked alone (the worker's _process_row).
        calls_out = not isinstance(parsed, EventParseError) and dispatcher.calls_out(parsed)
        alone = calls_out or isinstance(parsed, EventParseError)
        if chunk and alone:
            break
        i += 1
        fetched: Data = {}
        if not isinstance(parsed, EventParseError):
            try:
                fetched = await reads.fetched(i - 1)
            except Exception as exc:
                log.warning("event %s (%s) failed: %s", row.id, parsed.kind, exc)
                await record_failure(row, f"{type(exc).__name__}: {exc}")
                continue
        chunk.append(Ready(row, parsed, fetched, calls_out))
        if alone or time.monotonic() - started >= policy.batch_seconds:
            break
    return chunk, i
