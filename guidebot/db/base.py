"""The declarative Base every domain model builds on."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Integer,
    MetaData,
    TypeDecorator,
    literal,
)
from sqlalchemy.orm import DeclarativeBase

# Stable constraint names, so Alembic migrations are the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Ids of tables that grow without bound: BIGINT on PostgreSQL; on SQLite only an INTEGER
# PRIMARY KEY auto-increments.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# A value WeCom gives as 32 bits unsigned (a department's order, up to 2^32 - 1): BIGINT on
# PostgreSQL, whose INTEGER stops at 2^31 - 1; SQLite's INTEGER holds 64 bits already.
BigValue = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """An instant stored as UTC and always read back tz-aware.

    SQLite has no time zones and would hand back naive datetimes; refusing naive input here keeps
    "every instant is UTC" (architecture rule 8) true on both engines.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: store instants as tz-aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def bind_processor(self, dialect):
        """On SQLite, the text SQLAlchemy's DATETIME keeps ('YYYY-MM-DD HH:MM:SS.ffffff', in
        UTC) written in one step: through this decorator and the dialect's formatter it cost
        about 3 µs a value, and an add writes some sixty."""
        composed = super().bind_processor(dialect)
        if dialect.name != "sqlite" or _storage_format(self, dialect) != _SQLITE_DATETIME:
            return composed

        # The value this column wrote last and its text, swapped as one: a batch's rows and an
        # event's statements bind the same `now` again and again (about half the binds).
        last: list[tuple[Any, str | None]] = [(None, None)]

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            seen, text = last[0]
            if value is seen:
                return text
            if value.tzinfo is None:
                raise ValueError("naive datetime: store instants as tz-aware UTC")
            u = value.astimezone(UTC)
            text = _TEXT % (u.year, u.month, u.day, u.hour, u.minute, u.second, u.microsecond)
            last[0] = (value, text)
            return text

        return process


# SQLAlchemy's default text for a DATETIME on SQLite, and the same text with its fields in
# order, as UTCDateTime writes it (a tuple formats quicker than a dict).
_SQLITE_DATETIME = (
    "%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d"
)
_TEXT = "%04d-%02d-%02d %02d:%02d:%02d.%06d"


def _storage_format(decorator: TypeDecorator, dialect) -> str | None:
    return getattr(decorator.impl_instance.dialect_impl(dialect), "_storage_format", None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def constant(value: str):
    """`value` written into the statement as a literal, not bound as a parameter.

    SQLite prepares a statement again on every run when one of its parameters is compared
    with a column that a partial index's WHERE names (sop_enrollments' active runs,
    transfers' pending ones): the plan might depend on the value. Compared with the constant
    itself, the prepared statement is reused: the add's look (guidebot.contacts.add_look)
    took 170 µs a run with the status bound and 15 µs with it written in."""
    return literal(value, literal_execute=True)


def only_filters(column: Any, value: Any) -> ColumnElement[bool]:
    """`column = value` for a NOT NULL column, written so that no PostgreSQL index answers it
    (`IS NOT DISTINCT FROM`): it filters rows the statement finds by their key.

    Without statistics, PostgreSQL's planner takes any equality on a column to match one row
    in two hundred. Its first minute on a new database, after a restore, or before autovacuum
    has looked again at a table a livestream fills, it then read a list of task ids through
    the status index, every pending task of every customer, and a pair through the guide's
    relations, every customer of the guide: a cost that grew with each add (README,
    Benchmarks: welcome). SQLite's statements say so with hints (guidebot.db.queue)."""
    return column.is_not_distinct_from(value)
