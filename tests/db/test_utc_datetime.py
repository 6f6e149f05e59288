"""UTCDateTime writes SQLite's text for an instant itself, the same text SQLAlchemy would.

On SQLite an instant is kept as SQLAlchemy's DATETIME text ('YYYY-MM-DD HH:MM:SS.ffffff', UTC),
and rows are found by comparing that text: a writer that differed by one character (a missing
'.000000', an offset left on) would make old and new rows compare wrongly. guidebot.db.base
writes it in one step (an add writes some sixty instants); here it is held to the decorator's own
composition through the dialect's formatter, for any instant in any offset.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import TypeDecorator
from sqlalchemy.dialects import postgresql, sqlite

from guidebot.db.base import UTCDateTime
from tests.fuzzing import examples

SQLITE = sqlite.dialect()
TYPE = UTCDateTime().dialect_impl(SQLITE)
WRITE = TYPE.bind_processor(SQLITE)
# What SQLAlchemy composes without the shortcut: the decorator, then SQLite's DATETIME.
COMPOSED = TypeDecorator.bind_processor(TYPE, SQLITE)

OFFSETS = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
INSTANTS = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=OFFSETS
)


def test_the_shortcut_is_taken_on_sqlite_only():
    assert WRITE is not COMPOSED
    assert WRITE.__qualname__.startswith("UTCDateTime.")
    pg = postgresql.asyncpg.dialect()
    assert (
        not UTCDateTime()
        .dialect_impl(pg)
        .bind_processor(pg)
        .__qualname__.startswith("UTCDateTime.")
    )


@settings(max_examples=examples(500))
@given(INSTANTS)
def test_the_text_is_sqlalchemys(instant):
    assert WRITE(instant) == COMPOSED(instant)


@pytest.mark.parametrize(
    "instant, text",
    [
        (datetime(2026, 12, 7, 1, 2, 3, tzinfo=UTC), "2026-12-07 01:02:03.000000"),
        (
            datetime(2026, 12, 7, 9, 2, 3, 45, tzinfo=timezone(timedelta(hours=8))),
            "2026-12-07 01:02:03.000045",
        ),
        (datetime(1, 1, 1, 23, tzinfo=timezone(timedelta(hours=-1))), "0001-01-02 00:00:00.000000"),
    ],
)
def test_known_texts(instant, text):
    assert WRITE(instant) == text == COMPOSED(instant)


def test_none_and_naive_as_before():
    assert WRITE(None) is None
    with pytest.raises(ValueError, match="naive"):
        WRITE(datetime(2026, 12, 7))
    with pytest.raises(ValueError, match="naive"):
        COMPOSED(datetime(2026, 12, 7))


@settings(max_examples=examples(200))
@given(st.lists(INSTANTS, min_size=1, max_size=4), st.lists(st.integers(0, 3), max_size=12))
def test_an_instant_written_again_is_the_same_text(instants, order):
    """The writer keeps the text of the instant it wrote last (an event binds its `now` again
    and again): written in any order, with repeats of the same objects, each is its own."""
    for i in [0, *order]:
        instant = instants[i % len(instants)]
        assert WRITE(instant) == COMPOSED(instant)
