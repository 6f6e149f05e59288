"""Our figures beside WeCom's get_user_behavior_data, against the simulated WeCom."""

from __future__ import annotations

from datetime import date, timedelta

from guidebot.contacts.behavior import spans
from tests.metrics.conftest import at


def test_periods_split_into_30_day_spans():
    assert spans(date(2026, 3, 1), date(2026, 3, 30)) == [(date(2026, 3, 1), date(2026, 3, 30))]
    assert spans(date(2026, 3, 1), date(2026, 5, 1)) == [
        (date(2026, 3, 1), date(2026, 3, 30)),
        (date(2026, 3, 31), date(2026, 4, 29)),
        (date(2026, 4, 30), date(2026, 5, 1)),
    ]


async def test_side_by_side_per_guide_per_day(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await h.add("g1", "wmc02")
    await h.add("g2", "wmc04")  # another guide: WeCom would sum it in if asked together
    h.set_time(at(10, 11))
    await h.lose("g1", "wmc02")
    h.set_time(at(10, 12))
    await h.remove("g1", "wmc01")  # the guide deleted: WeCom's negative feedback does not count it
    h.set_time(at(10, 9, month=4))
    await h.settle()

    status, body = await h.api(
        "GET", "/guides/g1/wecom-comparison", params={"from": "2026-03-01", "to": "2026-04-09"}
    )
    assert status == 200, body
    assert set(body) == {"guide", "from", "to", "days", "totals", "notes"}
    by_day = {d["day"]: d for d in body["days"]}
    assert len(by_day) == 40
    assert by_day["2026-03-09"]["ours"] == {"new_customers": 2, "lost_customers": 0}
    assert by_day["2026-03-09"]["wecom"] == {"new_contact_cnt": 2, "negative_feedback_cnt": 0}
    assert by_day["2026-03-10"]["ours"] == {"new_customers": 0, "lost_customers": 1}
    assert by_day["2026-03-10"]["wecom"] == {"new_contact_cnt": 0, "negative_feedback_cnt": 1}
    assert by_day["2026-03-10"]["difference"] == {"new_customers": 0, "lost_customers": 0}
    assert body["totals"] == {
        "ours": {"new_customers": 2, "lost_customers": 1},
        "wecom": {"new_contact_cnt": 2, "negative_feedback_cnt": 1},
    }
    assert any("180 days" in note for note in body["notes"])

    # One guide per call (WeCom sums userids), at most 30 days per call.
    calls = await h.calls("externalcontact/get_user_behavior_data")
    assert [c["body"]["userid"] for c in calls] == [["g1"], ["g1"]]
    for call in calls:
        assert call["answer"]["errcode"] == 0
        assert call["body"]["end_time"] - call["body"]["start_time"] <= 29 * 86_400


async def test_days_beyond_wecoms_180_days_are_not_asked(h):
    h.set_time(at(20, 10))
    status, body = await h.api(
        "GET", "/guides/g2/wecom-comparison", params={"from": "2025-09-15", "to": "2026-03-20"}
    )
    assert status == 200, body
    by_day = {d["day"]: d for d in body["days"]}
    first_kept = date(2026, 3, 20) - timedelta(days=180) + timedelta(days=1)  # 2025-09-22
    assert by_day["2025-09-21"]["wecom"] is None and by_day["2025-09-21"]["difference"] is None
    assert by_day[first_kept.isoformat()]["wecom"] == {
        "new_contact_cnt": 0,
        "negative_feedback_cnt": 0,
    }
    calls = await h.calls("externalcontact/get_user_behavior_data")
    assert len(calls) == 6 and all(c["answer"]["errcode"] == 0 for c in calls)  # 180 days

    # WeCom refusing is a 502 with its reason.
    await h.fault("externalcontact/get_user_behavior_data", 45009)
    status, body = await h.api("GET", "/guides/g2/wecom-comparison", params={"from": "2026-03-20"})
    assert status == 502 and "45009" in body["error"]["reason"]


async def test_a_token_refresh_midway_is_not_blocked_by_our_own_transaction(h):
    """On SQLite a transaction held open while WeCom answers holds the write lock, and the
    refresh that a 42001 forces must write the new token: it waited out the busy timeout and
    the comparison failed with a 500."""
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await h.settle()
    h.set_time(at(10, 9))
    await h.fault("externalcontact/get_user_behavior_data", 42001)
    status, body = await h.api(
        "GET", "/guides/g1/wecom-comparison", params={"from": "2026-03-09", "to": "2026-03-09"}
    )
    assert status == 200, body
    assert body["totals"]["wecom"] == {"new_contact_cnt": 1, "negative_feedback_cnt": 0}
    calls = await h.calls("externalcontact/get_user_behavior_data")
    assert [c["answer"]["errcode"] for c in calls] == [42001, 0]
