"""The planner: due times in the store's zone, snapped into the window, DST-safe, in UTC.

Every expected instant is written out by hand (local time and the UTC it must equal).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from guidebot.sop.loader import load_playbook, parse_playbook
from guidebot.sop.planner import (
    PlannedStep,
    add_local,
    enrollment_instant,
    plan,
    snap_into_window,
)
from guidebot.sop.playbook import Playbook, SendWindow

ROOT = Path(__file__).resolve().parents[2]
SOP = ROOT / "sop"
TEMPLATES = Path(__file__).parent / "templates" / "messages"
SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def shipped(name: str) -> Playbook:
    loaded = load_playbook(SOP / f"{name}.yaml", ROOT / "templates" / "messages")
    assert loaded.enabled, loaded.errors
    assert loaded.playbook is not None
    return loaded.playbook


def playbook(steps: str, *, hours: str = "10:00-21:00", days: str = "mon-sun") -> Playbook:
    text = (
        "playbook: t\nversion: 1\ntrigger: {event: customer.added}\ntimezone: Asia/Shanghai\n"
        f'send_window: {{hours: "{hours}", days: {days}}}\nsteps:\n{steps}'
    )
    loaded = parse_playbook(text, "t.yaml", TEMPLATES)
    assert loaded.enabled, [str(e) for e in loaded.errors]
    assert loaded.playbook is not None
    return loaded.playbook


def by_id(planned: list[PlannedStep]) -> dict[str, PlannedStep]:
    return {p.step_id: p for p in planned}


# ---- the scenario: added Friday 20:55 in Shanghai, window 10:00-21:00 ----------------

FRIDAY_2055 = datetime(2025, 3, 7, 20, 55, tzinfo=SHANGHAI)  # = 2025-03-07 12:55 UTC


def test_shipped_first_contact_friday_2055() -> None:
    steps = by_id(plan(shipped("first_contact"), FRIDAY_2055, SHANGHAI))
    # The welcome goes at once (it is never snapped), expiring with the 20 s welcome code.
    assert steps["welcome"].due_at == utc(2025, 3, 7, 12, 55)
    assert steps["welcome"].expires_at == utc(2025, 3, 7, 12, 55, 20)
    # Day 1: Saturday 2025-03-08 20:55 Shanghai, inside 10:00-21:00.
    assert steps["day1_intro"].due_at == utc(2025, 3, 8, 12, 55)
    assert steps["day1_intro"].expires_at == utc(2025, 3, 9, 12, 55)


def test_shipped_follow_up_friday_2055() -> None:
    steps = by_id(plan(shipped("follow_up_7d"), FRIDAY_2055, SHANGHAI))
    # Day 3: Monday 2025-03-10 20:55 Shanghai; day 7: Friday 2025-03-14 20:55 Shanghai.
    assert steps["day3"].due_at == utc(2025, 3, 10, 12, 55)
    assert steps["day3"].expires_at == utc(2025, 3, 11, 12, 55)
    assert steps["day7"].due_at == utc(2025, 3, 14, 12, 55)
    assert steps["day7"].expires_at == utc(2025, 3, 16, 12, 55)


SCENARIO_STEPS = """\
  - {id: welcome, at: enroll, action: welcome, template: ok.j2, expire_after: 20s}
  - {id: day1, at: welcome + 1d, action: remind, template: ok.j2, expire_after: 1d}
  - {id: day3, at: enroll + 3d, action: guide_task, template: ok.j2, expire_after: 1d}
  - {id: day7, at: enroll + 7d, action: guide_task, template: ok.j2, expire_after: 2d}
  - {id: after_day1, at: day1 + 5m, action: guide_task, template: ok.j2, expire_after: 1h}
"""


def test_friday_2055_with_steps_that_fall_outside_the_window() -> None:
    book = playbook(SCENARIO_STEPS)
    steps = by_id(plan(book, FRIDAY_2055, SHANGHAI))
    assert steps["welcome"].due_at == utc(2025, 3, 7, 12, 55)  # 20:55 Fri, at once
    assert steps["day1"].due_at == utc(2025, 3, 8, 12, 55)  # 20:55 Sat
    assert steps["day3"].due_at == utc(2025, 3, 10, 12, 55)  # 20:55 Mon
    assert steps["day7"].due_at == utc(2025, 3, 14, 12, 55)  # 20:55 Fri
    # day1 + 5 min = Sat 21:00, the window's end (exclusive): Sunday 10:00 Shanghai.
    assert steps["after_day1"].due_at == utc(2025, 3, 9, 2, 0)
    assert steps["after_day1"].expires_at == utc(2025, 3, 9, 3, 0)


def test_added_after_the_window_welcome_at_once_the_rest_snapped() -> None:
    book = playbook(SCENARIO_STEPS)
    added = datetime(2025, 3, 7, 21, 30, tzinfo=SHANGHAI)  # Friday 21:30, window closed
    steps = by_id(plan(book, added, SHANGHAI))
    assert steps["welcome"].due_at == utc(2025, 3, 7, 13, 30)  # not held until morning
    assert steps["day1"].due_at == utc(2025, 3, 9, 2, 0)  # Sat 21:30 -> Sun 10:00
    assert steps["day3"].due_at == utc(2025, 3, 11, 2, 0)  # Mon 21:30 -> Tue 10:00
    assert steps["day7"].due_at == utc(2025, 3, 15, 2, 0)  # Fri 21:30 -> Sat 10:00
    # Anchored on day1's snapped time: Sun 10:00 + 5 min.
    assert steps["after_day1"].due_at == utc(2025, 3, 9, 2, 5)


def test_weekday_window_moves_weekend_steps_to_monday() -> None:
    book = playbook(SCENARIO_STEPS, days="mon-fri")
    steps = by_id(plan(book, FRIDAY_2055, SHANGHAI))
    assert steps["day1"].due_at == utc(2025, 3, 10, 2, 0)  # Sat 20:55 -> Mon 10:00
    assert steps["day3"].due_at == utc(2025, 3, 10, 12, 55)  # Mon 20:55, open
    assert steps["day7"].due_at == utc(2025, 3, 14, 12, 55)  # Fri 20:55, open
    assert steps["after_day1"].due_at == utc(2025, 3, 10, 2, 5)  # Mon 10:00 + 5 min


def test_every_expiry_is_due_plus_expire_after() -> None:
    book = playbook(SCENARIO_STEPS, days="[tue, thu]")
    for item in plan(book, FRIDAY_2055, SHANGHAI):
        assert item.expires_at == item.due_at + book.step(item.step_id).expire_after
        assert item.due_at.tzinfo is UTC and item.expires_at.tzinfo is UTC


# ---- windows by days of the week ---------------------------------------------------------------

WINDOW = SendWindow(time(10), time(21), frozenset(range(7)))


def window(days: set[int], start: time = time(10), end: time = time(21)) -> SendWindow:
    return SendWindow(start, end, frozenset(days))


@pytest.mark.parametrize(
    ("local", "days", "expected_local"),
    [
        # inside: unchanged
        (datetime(2025, 3, 5, 12, 0), set(range(7)), datetime(2025, 3, 5, 12, 0)),
        # before the start: the same day's start
        (datetime(2025, 3, 5, 7, 15), set(range(7)), datetime(2025, 3, 5, 10, 0)),
        # at the end (exclusive): the next day's start
        (datetime(2025, 3, 5, 21, 0), set(range(7)), datetime(2025, 3, 6, 10, 0)),
        (datetime(2025, 3, 5, 20, 59, 59), set(range(7)), datetime(2025, 3, 5, 20, 59, 59)),
        # Saturday with mon-fri: Monday 10:00
        (datetime(2025, 3, 8, 12, 0), {0, 1, 2, 3, 4}, datetime(2025, 3, 10, 10, 0)),
        # Friday after hours with mon-fri: Monday 10:00
        (datetime(2025, 3, 7, 22, 0), {0, 1, 2, 3, 4}, datetime(2025, 3, 10, 10, 0)),
        # Monday with weekends only: Saturday 10:00
        (datetime(2025, 3, 10, 12, 0), {5, 6}, datetime(2025, 3, 15, 10, 0)),
        # Wednesday evening with only Wednesdays: next Wednesday
        (datetime(2025, 3, 5, 21, 30), {2}, datetime(2025, 3, 12, 10, 0)),
    ],
)
def test_snap_by_days(local: datetime, days: set[int], expected_local: datetime) -> None:
    got = snap_into_window(local.replace(tzinfo=SHANGHAI), window(days), SHANGHAI)
    assert got == expected_local.replace(tzinfo=SHANGHAI)
    assert got.tzinfo is UTC


def test_days_parse_ranges_lists_and_wraps() -> None:
    steps = "  - {id: a, at: enroll, action: guide_task, template: ok.j2, expire_after: 1d}\n"
    assert playbook(steps, days="mon-fri").send_window.days == {0, 1, 2, 3, 4}
    assert playbook(steps, days="[sat, sun]").send_window.days == {5, 6}
    assert playbook(steps, days='"mon-wed, fri"').send_window.days == {0, 1, 2, 4}
    assert playbook(steps, days="fri-mon").send_window.days == {4, 5, 6, 0}
    assert playbook(steps, days="Mon-Sun").send_window.days == set(range(7))
    all_day = playbook(steps, hours="00:00-24:00").send_window
    assert all_day.start == time(0) and all_day.end == time.max


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="tz-aware"):
        snap_into_window(datetime(2025, 3, 5, 12), WINDOW, SHANGHAI)
    with pytest.raises(ValueError, match="tz-aware"):
        plan(playbook(SCENARIO_STEPS), datetime(2025, 3, 5, 12), SHANGHAI)


# ---- DST: America/New_York springs forward 2025-03-09 02:00 -> 03:00, falls back 11-02 --------

DST_STEPS = """\
  - {id: welcome, at: enroll, action: welcome, template: ok.j2, expire_after: 20s}
  - {id: day1, at: welcome + 1d, action: remind, template: ok.j2, expire_after: 1d}
  - {id: day2, at: enroll + 2d, action: guide_task, template: ok.j2, expire_after: 6h}
  - {id: day3, at: enroll + 3d, action: guide_task, template: ok.j2, expire_after: 1d}
"""


def test_new_york_across_the_march_change_keeps_local_times() -> None:
    book = playbook(DST_STEPS, hours="09:00-18:00")
    added = datetime(2025, 3, 7, 17, 0, tzinfo=NEW_YORK)  # Friday 17:00 EST = 22:00 UTC
    steps = by_id(plan(book, added, NEW_YORK))
    assert steps["welcome"].due_at == utc(2025, 3, 7, 22, 0)
    assert steps["day1"].due_at == utc(2025, 3, 8, 22, 0)  # Sat 17:00 EST
    assert steps["day2"].due_at == utc(2025, 3, 9, 21, 0)  # Sun 17:00 EDT (one hour earlier UTC)
    assert steps["day2"].expires_at == utc(2025, 3, 10, 3, 0)  # 6 h of elapsed time
    assert steps["day3"].due_at == utc(2025, 3, 10, 21, 0)  # Mon 17:00 EDT


def test_window_opening_inside_the_spring_gap_opens_when_the_clock_jumps() -> None:
    # 02:30 does not exist on 2025-03-09 in New York; the first instant at or after it is
    # 03:00 EDT = 07:00 UTC.
    gap = window(set(range(7)), start=time(2, 30), end=time(5, 0))
    got = snap_into_window(utc(2025, 3, 9, 6, 0), gap, NEW_YORK)  # 01:00 EST
    assert got == utc(2025, 3, 9, 7, 0)
    assert got.astimezone(NEW_YORK).hour == 3


def test_window_in_the_repeated_autumn_hour() -> None:
    # 2025-11-02: 01:00-02:00 happens twice (EDT, then EST).
    repeated = window(set(range(7)), start=time(1, 30), end=time(5, 0))
    first_pass = utc(2025, 11, 2, 5, 0)  # 01:00 EDT
    assert snap_into_window(first_pass, repeated, NEW_YORK) == utc(2025, 11, 2, 5, 30)
    second_pass = utc(2025, 11, 2, 6, 10)  # 01:10 EST, the second 01:10
    assert snap_into_window(second_pass, repeated, NEW_YORK) == utc(2025, 11, 2, 6, 30)
    inside = utc(2025, 11, 2, 6, 45)  # 01:45 EST
    assert snap_into_window(inside, repeated, NEW_YORK) == inside


def test_wall_clock_offset_into_the_gap_lands_when_the_clock_jumps() -> None:
    saturday_0230 = datetime(2025, 3, 8, 2, 30, tzinfo=NEW_YORK)  # 07:30 UTC
    # Sunday 02:30 does not exist; the first instant after it is 03:00 EDT = 07:00 UTC.
    assert add_local(saturday_0230, timedelta(days=1), NEW_YORK) == utc(2025, 3, 9, 7, 0)
    # In the repeated hour, the first occurrence: Sat 2025-11-01 01:30 EDT + 1d = 01:30 EDT.
    before_fall_back = datetime(2025, 11, 1, 1, 30, tzinfo=NEW_YORK)
    assert add_local(before_fall_back, timedelta(days=1), NEW_YORK) == utc(2025, 11, 2, 5, 30)
    # Hours are wall-clock too: Saturday 02:30 + 2h = 04:30 EST.
    assert add_local(saturday_0230, timedelta(hours=2), NEW_YORK) == utc(2025, 3, 8, 9, 30)


# ---- when date and cron triggers enroll ----------------------------------------------------------


def test_birthday_enrolls_at_midnight_and_runs_at_the_window_start() -> None:
    book = shipped("birthday")
    event = datetime(2025, 6, 15, 15, 0, tzinfo=SHANGHAI)
    enrolled = enrollment_instant(book.trigger, event, SHANGHAI)
    assert enrolled == utc(2025, 6, 14, 16, 0)  # 2025-06-15 00:00 Shanghai
    (greeting,) = plan(book, enrolled, SHANGHAI)
    assert greeting.due_at == utc(2025, 6, 15, 2, 0)  # 10:00 Shanghai that morning
    assert greeting.expires_at == utc(2025, 6, 15, 12, 0)  # 20:00 Shanghai


def test_weekly_cron_enrolls_at_the_next_monday_10_00() -> None:
    book = shipped("weekly_new_arrivals")
    enrolled = enrollment_instant(book.trigger, FRIDAY_2055, SHANGHAI)
    assert enrolled == utc(2025, 3, 10, 2, 0)  # Monday 2025-03-10 10:00 Shanghai
    (task,) = plan(book, enrolled, SHANGHAI)
    assert task.due_at == enrolled
    assert task.expires_at == utc(2025, 3, 12, 2, 0)


def test_customer_added_enrolls_at_the_event() -> None:
    book = shipped("first_contact")
    assert enrollment_instant(book.trigger, FRIDAY_2055, SHANGHAI) == utc(2025, 3, 7, 12, 55)
