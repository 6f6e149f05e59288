"""One leased queue over a table of work rows: claim, release, reap (architecture rule 5).

The inbox (`inbox_events`) and the SOP engine (`sop_tasks`) both keep their work as rows with
a status, a lease owner, a lease end and an attempt count. Claiming moves due rows from the
queue's pending status to its claimed one under a lease; on PostgreSQL several instances claim
at once with SELECT ... FOR UPDATE SKIP LOCKED, so no row is taken twice; on SQLite one
process claims (its transactions hold the write lock from BEGIN) and a conditional UPDATE
settles the rest. What the claimer then does with a row is its own business; this module only
hands rows out and takes them back:

* `release`: a claimer gives back rows it holds (untouched, or with new values);
* `reap`: claims whose lease lapsed (their claimer died) are due again; with `everything`, every
  claim (SQLite at start-up: the one process that could hold one is gone); with `stranded`,
  only the owner's claims older than that (a run that failed between two transactions);
* `Strays`: rows a run in this process claimed and could not settle (the database went away
  between its transactions), handed back at the next pass instead of waiting out the lease.

Every call takes the caller's session: the caller owns the transaction. A statement that names
its rows by id finds them by id: on SQLite it says so (`NOT INDEXED`, which leaves the rowid),
because SQLite, without statistics, would otherwise walk every row in the pending status for a
list of two ids or more, and the pending rows of `sop_tasks` are every future step of every
customer. The queue's table therefore has an integer primary key (SQLite's rowid). PostgreSQL,
without statistics (a new database's first minute, a restore) did the same; there the status is
compared in a form no index answers (`db.base.only_filters`).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.db.base import only_filters

# SQLite's table hint for a statement naming its rows by id: no index, so the rowid is used.
BY_ID = "NOT INDEXED"


def is_postgres(session: AsyncSession) -> bool:
    return session.bind.dialect.name == "postgresql"


def claim_owner() -> str:
    """A claimer's name, host:pid:random, so a claim in any table names the instance holding it
    (the inbox worker's and the SOP claimers' alike)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class LeasedQueue:
    """A table's rows as a queue. `stamp(now)` are values written with every change of hands
    (e.g. {"updated_at": now}); the column names are the table's."""

    table: Table
    pending: str
    claimed: str
    stamp: Callable[[datetime], Mapping[str, Any]] = lambda now: {}
    id_column: str = "id"
    status_column: str = "status"
    owner_column: str = "lease_owner"
    until_column: str = "lease_until"
    attempts_column: str = "attempts"

    def _col(self, name: str) -> Any:
        return self.table.c[name]

    @property
    def ids(self) -> Any:
        return self._col(self.id_column)

    @property
    def status(self) -> Any:
        return self._col(self.status_column)

    @property
    def owner(self) -> Any:
        return self._col(self.owner_column)

    @property
    def until(self) -> Any:
        return self._col(self.until_column)

    @property
    def attempts(self) -> Any:
        return self._col(self.attempts_column)

    def _back(self, now: datetime) -> dict[str, Any]:
        return {
            self.status_column: self.pending,
            self.owner_column: None,
            self.until_column: None,
            **self.stamp(now),
        }

    async def claim(
        self,
        session: AsyncSession,
        *,
        owner: str,
        now: datetime,
        lease: timedelta,
        where: Sequence[ColumnElement[bool]] = (),
        order_by: Sequence[Any] = (),
        limit: int | None = None,
        ids: Sequence[int] | None = None,
        values: Mapping[str, Any] | None = None,
        returning: Sequence[Any] = (),
    ) -> list[Row[Any]]:
        """Claim pending rows matching `where` (and among `ids`, when given; in `order_by`, at
        most `limit`) for `owner` until now + lease, counting an attempt; `values` are written
        too. The claimed rows' `returning` columns (their ids when none are named)."""
        picking = select(self.ids).where(*where)
        if ids is not None:
            picking = picking.where(
                self.ids.in_(list(ids)), only_filters(self.status, self.pending)
            ).with_hint(self.table, BY_ID, "sqlite")
        else:
            picking = picking.where(self.status == self.pending)
        if order_by:
            picking = picking.order_by(*order_by)
        if limit is not None:
            picking = picking.limit(limit)
        if is_postgres(session):
            picking = picking.with_for_update(skip_locked=True, of=self.table)
        picked = list(await session.scalars(picking))
        if not picked:
            return []
        result = await session.execute(
            update(self.table)
            .with_hint(BY_ID, dialect_name="sqlite")
            .where(self.ids.in_(picked), only_filters(self.status, self.pending))
            .values(
                {
                    self.status_column: self.claimed,
                    self.owner_column: owner,
                    self.until_column: now + lease,
                    self.attempts_column: self.attempts + 1,
                    **self.stamp(now),
                    **(values or {}),
                }
            )
            .returning(*(returning or (self.ids,)))
        )
        return list(result)

    async def release(
        self,
        session: AsyncSession,
        ids: Iterable[int],
        *,
        owner: str,
        now: datetime,
        undo_attempt: bool = False,
        values: Mapping[str, Any] | None = None,
    ) -> int:
        """Give back rows `owner` still holds: pending again, with `values`; `undo_attempt`
        when the claim's attempt never happened. The number given back."""
        wanted = sorted(set(ids))
        if not wanted:
            return 0
        back = self._back(now) | dict(values or {})
        if undo_attempt:
            back[self.attempts_column] = self.attempts - 1
        result = await session.execute(
            update(self.table)
            .with_hint(BY_ID, dialect_name="sqlite")
            .where(
                self.ids.in_(wanted),
                only_filters(self.status, self.claimed),
                only_filters(self.owner, owner),
            )
            .values(back)
        )
        return result.rowcount

    async def reap(
        self,
        session: AsyncSession,
        now: datetime,
        *,
        everything: bool = False,
        owner: str | None = None,
        stranded: tuple[timedelta, timedelta] | None = None,
    ) -> int:
        """Claims whose lease lapsed are pending again; the number reaped.

        `everything`: every claim, whoever holds it. `owner` with `stranded=(lease, age)`: that
        owner's claims taken more than `age` ago under a `lease`, lapsed or not. Safe for a
        claim still in hand as long as its claimer goes on only with rows still claimed by it.
        """
        query = update(self.table).where(self.status == self.claimed)
        if owner is not None:
            query = query.where(self.owner == owner)
        if stranded is not None:
            lease, age = stranded
            query = query.where(self.until < now + lease - age)
        elif not everything:
            query = query.where(self.until < now)
        result = await session.execute(query.values(self._back(now)))
        return result.rowcount


@dataclass
class Strays:
    """Rows runs in this process claimed and could not settle: owner -> {row id: whether its
    attempt happened}. Kept to be handed back at the next pass (`take`, then `forget`)."""

    rows: dict[str, dict[int, bool]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(self.rows.values())

    def add(self, owner: str, ids: Iterable[int], *, attempted: bool = True) -> None:
        held = self.rows.setdefault(owner, {})
        for id_ in ids:
            held[id_] = attempted

    def take(self) -> dict[str, dict[int, bool]]:
        """A snapshot of what is to hand back now (`forget` it once handed back)."""
        return {owner: dict(held) for owner, held in self.rows.items() if held}

    def forget(self, taken: Mapping[str, Mapping[int, bool]]) -> None:
        for owner, held in taken.items():
            mine = self.rows.get(owner, {})
            for id_ in held:
                mine.pop(id_, None)
            if not mine:
                self.rows.pop(owner, None)


__all__ = ["BY_ID", "LeasedQueue", "Strays", "is_postgres"]
