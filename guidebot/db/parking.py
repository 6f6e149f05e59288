"""Parked rows: a periodic job never stops on one row it cannot handle.

A job that meets a row it cannot handle (an instant in year 9999 that no time zone can hold, a
setting an older version wrote) parks it: the row's work is rolled back to a savepoint, a
`parked_rows` record names the job, the table, the row's key, what the row is and why it failed,
the failure is logged, and the job carries on with the other rows. Jobs that walk a queue every
few seconds (the rollup's dirty rows, SOP tasks) skip the rows they parked (`unparked`), so a
bad row costs nothing and is logged once; a job that walks everything (the nightly
reconciliation) meets the row again next time and bumps its count. `isolating` does the work:
one savepoint for a whole batch as usual, row by row only in the run that met a bad row.

Operators see them with `guidebot jobs parked` and the `guidebot_parked_rows{job}` gauge, and
`guidebot jobs retry` hands them back to their job (after a fix, or to see whether it was a
passing thing). Only errors about the row are parked: a database or network error fails the
whole run as before (the job runs again at its next time), rather than parking every row.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    Text,
    UniqueConstraint,
    cast,
    delete,
    exists,
    func,
    select,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from guidebot.db.base import Base, BigId, UTCDateTime
from guidebot.db.engine import upsert_insert
from guidebot.telemetry import Telemetry

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

KEY_LENGTH = 200
TEXT_LIMIT = 2000  # characters of a reason or a detail kept


class ParkedRow(Base):
    __tablename__ = "parked_rows"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(String(64))  # the periodic job, as guidebot.app names it
    table_name: Mapped[str] = mapped_column(String(64))
    row_key: Mapped[str] = mapped_column(String(KEY_LENGTH))
    detail: Mapped[str | None] = mapped_column(Text)  # what the row is, for the operator
    reason: Mapped[str] = mapped_column(Text)  # the error, as the last failure had it
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    count: Mapped[int] = mapped_column(Integer, default=1)  # times parked

    __table_args__ = (UniqueConstraint("job", "table_name", "row_key"),)


# Errors of the database or the network, not of a row: the run fails and is tried again whole.
# (A ProgrammingError is a bug in a query, which every row would meet.)
_NOT_THE_ROW = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.ProgrammingError,
    sa_exc.TimeoutError,
    sa_exc.ResourceClosedError,
    OSError,  # connections, and TimeoutError
)


def is_row_error(exc: BaseException) -> bool:
    """Whether this failure is the row's (park it) rather than the database's (fail the run)."""
    if not isinstance(exc, Exception) or isinstance(exc, _NOT_THE_ROW):
        return False
    return not (isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated)


def is_outage(exc: BaseException) -> bool:
    """Whether this failure is the database being away (a restart, a dropped connection), which
    the same statements will get through once it is back; not a bug in them."""
    if isinstance(exc, sa_exc.ProgrammingError):
        return False
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, _NOT_THE_ROW)


def describe_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text[:TEXT_LIMIT]


async def park(
    session: AsyncSession,
    *,
    job: str,
    table: str,
    key: Any,
    reason: str,
    now: datetime,
    detail: str | None = None,
) -> None:
    """Record (or count again) the row as parked by the job, in the caller's transaction."""
    row_key = str(key)[:KEY_LENGTH]
    values = {
        "reason": reason[:TEXT_LIMIT],
        "detail": detail[:TEXT_LIMIT] if detail else None,
        "last_seen": now,
    }
    insert = upsert_insert(session.bind.dialect.name)(ParkedRow)
    await session.execute(
        insert.values(
            job=job, table_name=table, row_key=row_key, first_seen=now, count=1, **values
        ).on_conflict_do_update(
            index_elements=["job", "table_name", "row_key"],
            set_={**values, "count": ParkedRow.count + 1},
        )
    )
    log.error(
        "%s parked %s %s%s: %s (the job goes on with the other rows; see `guidebot jobs parked`)",
        job,
        table,
        row_key,
        f" ({detail})" if detail else "",
        reason,
    )


async def park_apart(
    sessions: Callable[[], AsyncSession],
    exc: Exception,
    *,
    job: str,
    table: str,
    key: Any,
    now: datetime,
    detail: str | None = None,
) -> None:
    """Park a row whose work failed outside any transaction, in a transaction of its own. A
    failure that is not the row's (the database, the network) is raised again: that run fails."""
    if not is_row_error(exc):
        raise exc
    async with sessions() as session, session.begin():
        await park(
            session,
            job=job,
            table=table,
            key=key,
            reason=describe_error(exc),
            now=now,
            detail=detail,
        )


async def isolating(
    session: AsyncSession,
    items: Sequence[T],
    work: Callable[[Sequence[T]], Awaitable[R]],
    *,
    job: str,
    table: str | Callable[[T], str],
    key: Callable[[T], Any],
    now: datetime,
    detail: Callable[[T], str] | None = None,
    on_failure: Callable[[T, Exception], Awaitable[None]] | None = None,
) -> tuple[list[R], list[T]]:
    """Run `work(items)` as one batch under a savepoint; if a row breaks it, run `work([item])`
    for each item alone, each under its own savepoint, and park those that fail alone (or hand
    them to `on_failure`, in the transaction, instead).

    (the results of the batches that succeeded, the items that failed). The batch is the usual
    path and costs one savepoint; one row at a time is only for the run that met a bad row."""
    if not items:
        return [], []
    try:
        async with session.begin_nested():
            result = await work(items)
    except Exception as exc:
        if not is_row_error(exc):
            raise
        batch_error = exc
    else:
        return [result], []
    results: list[R] = []
    failed: list[T] = []
    for item in items:
        if len(items) == 1:
            error = batch_error  # no need to run it again to know
        else:
            try:
                async with session.begin_nested():
                    result = await work([item])
            except Exception as exc:
                if not is_row_error(exc):
                    raise
                error = exc
            else:
                results.append(result)
                continue
        failed.append(item)
        if on_failure is not None:
            await on_failure(item, error)
            continue
        await _park_failure(
            session,
            error,
            job=job,
            table=table(item) if callable(table) else table,
            key=key(item),
            now=now,
            detail=detail(item) if detail is not None else None,
        )
    return results, failed


async def _park_failure(
    session: AsyncSession,
    exc: Exception,
    *,
    job: str,
    table: str,
    key: Any,
    now: datetime,
    detail: str | None,
) -> None:
    log.debug("%s: %s %s failed", job, table, key, exc_info=exc)
    reason = describe_error(exc)
    await park(session, job=job, table=table, key=key, reason=reason, now=now, detail=detail)


def unparked(job: str, table: str, key_column: ColumnElement[Any]) -> ColumnElement[bool]:
    """A WHERE clause for a job's queue: rows the job has not parked."""
    return ~exists().where(
        ParkedRow.job == job,
        ParkedRow.table_name == table,
        ParkedRow.row_key == cast(key_column, String),
    )


async def parked_rows(session: AsyncSession, job: str | None = None) -> list[ParkedRow]:
    query = select(ParkedRow).order_by(ParkedRow.job, ParkedRow.first_seen, ParkedRow.id)
    if job is not None:
        query = query.where(ParkedRow.job == job)
    return list(await session.scalars(query))


async def parked_counts(session: AsyncSession) -> dict[str, int]:
    """Parked rows per job (the gauge)."""
    rows = await session.execute(
        select(ParkedRow.job, func.count()).group_by(ParkedRow.job).order_by(ParkedRow.job)
    )
    return {job: int(count) for job, count in rows}


async def parked_backlog(telemetry: Telemetry, session: AsyncSession, now: datetime) -> None:
    """The /metrics gauge of parked rows per job (a reader for Telemetry.measure_with)."""
    telemetry.set_parked(await parked_counts(session))


async def retry(
    session: AsyncSession, *, ids: Sequence[int] | None = None, job: str | None = None
) -> int:
    """Hand parked rows back to their jobs (the next run tries them again). The number."""
    query = delete(ParkedRow)
    if ids is not None:
        query = query.where(ParkedRow.id.in_(list(ids)))
    if job is not None:
        query = query.where(ParkedRow.job == job)
    return (await session.execute(query)).rowcount


__all__ = [
    "ParkedRow",
    "describe_error",
    "is_row_error",
    "isolating",
    "park",
    "parked_counts",
    "parked_rows",
    "retry",
    "unparked",
]
