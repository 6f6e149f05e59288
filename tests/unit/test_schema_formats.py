"""Dates and times without an offset are read in a zone the schema does not know: near the
ends of the years the API takes, they may be UTC instants outside them."""

from __future__ import annotations

import pytest

from guidebot.web.formats import _date_or_time


@pytest.mark.parametrize("value", ["1970-01-01", "1970-01-01T05:00", "9998-12-31"])
def test_a_local_date_or_time_within_a_day_of_the_ends_is_refused(value):
    # 1970-01-01 in Shanghai is 1969-12-31T16:00Z, which no answer's date-time could show.
    assert "years 1970 to 9998" in (_date_or_time(value, "'valid_to'") or "")


@pytest.mark.parametrize(
    "value", ["1970-01-02", "9998-12-30", "2026-03-09T10:00", "1970-01-01T00:00+00:00"]
)
def test_dates_and_instants_inside_the_window_are_taken(value):
    assert _date_or_time(value, "'valid_to'") is None
