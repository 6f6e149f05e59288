"""best_time: the learned hour (guidebot.contacts.reading_hours) on hand-built histories, and
the planner's placement on the due day (guidebot.sop.planner.place_at_best_hour), including
readings either side of local midnight, a window that ends at 24:00, a due time already past the
customer's hour, a DST change, and `sop simulate`'s account of it."""

from __future__ import annotations

import io
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from guidebot.contacts.reading_hours import (
    PRIOR_WEIGHT,
    estimate,
    posterior,
    smooth,
    utc_hour,
)
from guidebot.sop.cli import simulate_command
from guidebot.sop.loader import parse_playbook
from guidebot.sop.planner import place_at_best_hour, plan
from guidebot.sop.playbook import SendWindow

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
ZERO = [0] * 24
WINDOW = SendWindow(time(10), time(21))


def local(day: int, hour: int, minute: int = 0, zone: ZoneInfo = SHANGHAI) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=zone)


def counts_at(*instants: datetime) -> list[int]:
    counts = [0] * 24
    for instant in instants:
        counts[utc_hour(instant)] += 1
    return counts


def test_readings_either_side_of_midnight_are_one_hour_not_noon() -> None:
    # 23:40, 23:55, 00:10, 00:20 in Shanghai: UTC 15 and 16. A linear mean would say ~noon.
    reading = estimate(
        counts_at(local(9, 23, 40), local(9, 23, 55), local(10, 0, 10), local(10, 0, 20)),
        ZERO,
        ZERO,
    )
    assert reading is not None
    assert reading.local_hour(SHANGHAI) == 23  # a tie with 00:00 goes to the earlier hour
    # The smoothing wraps round the clock: 23:00 and 00:00 are neighbours.
    assert smooth([1.0] + [0.0] * 22 + [1.0])[0] == smooth([1.0] + [0.0] * 22 + [1.0])[23]


def test_a_customer_without_history_reads_like_their_store_then_like_themselves() -> None:
    store = counts_at(*[local(9, 11, 10)] * 6)  # the store's customers read at 11
    assert estimate(ZERO, store, store).local_hour(SHANGHAI) == 11  # the prior alone
    one = counts_at(local(9, 20, 10))
    assert estimate(one, store, store).local_hour(SHANGHAI) == 11  # one reading: still 11
    three = counts_at(local(9, 20, 10), local(10, 20, 5), local(11, 20, 30))
    assert estimate(three, store, store).local_hour(SHANGHAI) == 11  # 3/7 against 4/7
    five = counts_at(*[local(9 + d, 20, 10) for d in range(5)])
    mine = estimate(five, store, store)
    assert mine.local_hour(SHANGHAI) == 20 and mine.observations == 5
    # The posterior is the Dirichlet mean: (own + 4 x prior share) / (own total + 4).
    prior = [1 / 24] * 24
    mean = posterior(three, prior)
    assert abs(mean[12] - (3 + PRIOR_WEIGHT / 24) / (3 + PRIOR_WEIGHT)) < 1e-12
    assert abs(sum(mean) - 1) < 1e-12


def test_a_thin_store_leans_on_every_store_and_nothing_known_is_none() -> None:
    everyone = counts_at(*[local(9, 15, 0)] * 50)
    store = counts_at(local(9, 9, 0))  # one reading in this store, at 09:00
    assert estimate(ZERO, store, everyone).prior == "store"
    assert estimate(ZERO, store, everyone).local_hour(SHANGHAI) == 15
    assert estimate(ZERO, ZERO, everyone).prior == "all_stores"
    assert estimate(ZERO, ZERO, ZERO) is None


def scores_for(hour: int, zone: ZoneInfo = SHANGHAI) -> tuple[float, ...]:
    return estimate(counts_at(*[local(9, hour, 10, zone)] * 5), ZERO, ZERO).scores


def test_placed_at_the_hour_on_the_due_day_before_or_after_the_nominal_time() -> None:
    due = local(10, 15, 0)  # enroll + 1d at 15:00
    at, hour = place_at_best_hour(due, local(9, 15, 0), WINDOW, SHANGHAI, scores_for(20))
    assert (at, hour) == (local(10, 20, 0).astimezone(UTC), 20)
    at, hour = place_at_best_hour(due, local(9, 15, 0), WINDOW, SHANGHAI, scores_for(11))
    assert (at, hour) == (local(10, 11, 0).astimezone(UTC), 11)  # earlier than 15:00, same day


def test_an_hour_outside_the_window_takes_the_best_the_window_allows() -> None:
    # Reads at 22:10: the window shuts at 21:00, and no hour in it scores: the nearest, 20:00.
    at, hour = place_at_best_hour(
        local(10, 10, 0), local(9, 12, 0), WINDOW, SHANGHAI, scores_for(22)
    )
    assert hour == 20 and at == local(10, 20, 0).astimezone(UTC)
    # A window that ends at 24:00 keeps a 23:00 reader on the same date, not the next.
    late = SendWindow(time(10), time.max)
    at, hour = place_at_best_hour(local(10, 10, 0), local(9, 12, 0), late, SHANGHAI, scores_for(23))
    assert at == local(10, 23, 0).astimezone(UTC)


def test_an_hour_already_past_moves_to_the_next_open_day() -> None:
    # Enrolled at 21:30 with the step at enroll: today's 20:00 is gone, tomorrow's is taken.
    enrolled = local(10, 21, 30)
    window = SendWindow(time(10), time(22), frozenset({0, 1, 2, 3, 4}))  # mon-fri
    at, hour = place_at_best_hour(enrolled, enrolled, window, SHANGHAI, scores_for(20))
    assert hour == 20 and at == local(11, 20, 0).astimezone(UTC)
    # 2026-03-13 is a Friday: the next open day after it is Monday the 16th.
    friday = local(13, 21, 30)
    at, _ = place_at_best_hour(friday, friday, window, SHANGHAI, scores_for(20))
    assert at == local(16, 20, 0).astimezone(UTC)


def test_across_a_dst_change_the_local_hour_is_kept() -> None:
    # New York springs forward on 2026-03-08; readings learned in EST at 19:10 (UTC 0).
    scores = estimate(counts_at(*[local(5, 19, 10, NEW_YORK)] * 4), ZERO, ZERO).scores
    at, hour = place_at_best_hour(
        local(9, 10, 0, NEW_YORK), local(8, 10, 0, NEW_YORK), WINDOW, NEW_YORK, scores
    )
    # UTC hours are what was stored: after the change UTC 0 is 20:00 local.
    assert hour == 20 and at == local(9, 20, 0, NEW_YORK).astimezone(UTC)


PLAYBOOK = """
playbook: reorder
version: 1
trigger: {event: repurchase_due, after: 30d}
timezone: Asia/Shanghai
send_window: {hours: "10:00-21:00"}
steps:
  - {id: nudge, at: enroll + 1d, action: guide_task, template: ok.j2, expire_after: 1d,
     best_time: true}
  - {id: later, at: nudge + 2d, action: guide_task, template: ok.j2, expire_after: 1d}
"""


def test_the_planner_places_only_best_time_steps_and_anchors_follow() -> None:
    loaded = parse_playbook(
        PLAYBOOK, "reorder.yaml", Path(__file__).parent / "templates" / "messages"
    )
    book = loaded.playbook
    assert book is not None, loaded.errors
    assert book.step("nudge").best_time and not book.step("later").best_time
    enrolled = local(9, 12, 0)
    plain = plan(book, enrolled, SHANGHAI)
    assert [p.due_at for p in plain] == [
        local(10, 12, 0).astimezone(UTC),
        local(12, 12, 0).astimezone(UTC),
    ]
    placed = plan(book, enrolled, SHANGHAI, scores_for(19))
    assert placed[0].due_at == local(10, 19, 0).astimezone(UTC) and placed[0].best_hour == 19
    assert placed[0].expires_at == placed[0].due_at + timedelta(days=1)
    assert placed[1].due_at == local(12, 19, 0).astimezone(UTC)  # `nudge + 2d`: from 19:00
    assert placed[1].best_hour is None


def test_sop_simulate_says_the_hour_and_why(tmp_path) -> None:
    sop = tmp_path / "sop"
    (sop.parent / "templates" / "messages").mkdir(parents=True)
    (sop.parent / "templates" / "messages" / "ok.j2").write_text("您好", encoding="utf-8")
    sop.mkdir()
    (sop / "reorder.yaml").write_text(PLAYBOOK, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    code = simulate_command(
        str(sop / "reorder.yaml"),
        added_at="2026-03-09T12:00:00+08:00",
        reads_at="22:10,22:40,21:50",
        out=out,
        err=err,
    )
    assert code == 0, err.getvalue()
    text = out.getvalue()
    assert "best_time: placed at 20:00" in text
    assert "learned 22:00 from 3 reading(s)" in text
    assert "outside the window 10:00-21:00" in text
    out = io.StringIO()
    simulate_command(
        str(sop / "reorder.yaml"), added_at="2026-03-09T12:00:00+08:00", out=out, err=err
    )
    assert "no readings given (--reads-at" in out.getvalue()
    assert simulate_command(str(sop / "reorder.yaml"), reads_at="8pm", out=out, err=err) == 2
    assert "--reads-at: expected times such as 20:10,21:05" in err.getvalue()
