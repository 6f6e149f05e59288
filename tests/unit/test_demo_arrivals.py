"""The demo's past customers do not depend on the minute the demo starts."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from guidebot.demo.arrivals import past_arrivals

FIRST = datetime(2026, 11, 2, 16, 0, tzinfo=UTC)  # midnight in Shanghai
DAYS = 35
WAYS = {f"g{n}": [{"config_id": f"{n}a"}, {"config_id": f"{n}b"}] for n in range(5)}


def history(now: datetime) -> dict[str, tuple]:
    arrivals = past_arrivals(random.Random(DAYS), FIRST, DAYS, now, WAYS)
    return {
        a.external_userid: (guide, a.at, a.way["config_id"], a.rng.random())
        for _, by_guide in arrivals
        for guide, arrived in by_guide
        for a in arrived
    }


def test_a_later_start_adds_todays_later_customers_and_changes_no_one_else():
    """Started at 15:30 or at 22:00 on the last day, the demo has the same customers with
    the same draws, but for today's who came after 15:30. (When the draws of a customer
    skipped as later than now were left out, everyone after them changed: the coupon's lift
    moved with the minute the demo started, and its interval crossed zero at some.)"""
    today = FIRST + timedelta(days=DAYS - 1)
    early = history(today + timedelta(hours=15.5))
    late = history(today + timedelta(hours=22))
    skipped = {ext: drawn for ext, drawn in late.items() if ext not in early}
    assert skipped and all(at >= today + timedelta(hours=15.5) for _, at, _, _ in skipped.values())
    # Some of today's skipped customers come before kept ones in the history's order, whose
    # draws are nonetheless unchanged.
    assert min(skipped) < max(early)
    assert {ext: late[ext] for ext in early} == early
