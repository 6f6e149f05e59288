"""Cohorts: each definition (guidebot.metrics.cohorts) on hand-built histories, and the job,
the API, the report and the admin heat map on the real paths (adds through the simulator,
orders and refunds through POST /api/v1/orders)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from guidebot.cli import main
from guidebot.contacts.models import RelationEvent
from guidebot.metrics.cohorts import Event, member_figures, refresh_cohorts
from guidebot.metrics.models import CohortMember
from tests.harness import ADMIN
from tests.metrics.conftest import SHANGHAI, at

T0 = datetime(2026, 3, 9, 2, 0, tzinfo=UTC)


def d(days: float) -> datetime:
    return T0 + timedelta(days=days)


# ---- the definitions, on hand-built logs -----------------------------------------------------


def test_retention_counts_a_live_relation_with_any_guide_at_each_checkpoint() -> None:
    events = [
        Event(T0, "added", "g1"),
        # Day 3: transferred from g1 to g2: still ours (kept).
        Event(d(3), "transferred_out", "g1"),
        Event(d(3), "transferred_in", "g2"),
        # Day 20: deleted g2; day 45 added g3 again.
        Event(d(20), "lost", "g2"),
        Event(d(45), "added", "g3"),
    ]
    figures = member_figures(events, [], T0, d(100))
    assert [figures[k] for k in ("d1", "d7", "d30", "d90")] == [True, True, False, True]
    # Not yet due: None, and the next checkpoint is the one waiting.
    early = member_figures(events, [], T0, d(8))
    assert (early["d7"], early["d30"], early["next_due_at"]) == (True, None, d(30))
    # A removal by the guide ends the relation as a loss does.
    gone = member_figures([Event(T0, "added", "g1"), Event(d(0.5), "removed", "g1")], [], T0, d(2))
    assert gone["d1"] is False


def test_repurchase_counts_from_the_first_counted_order() -> None:
    added = [Event(T0, "added", "g1")]
    orders = [(d(-5), 1000), (d(2), 10000), (d(80), 5000), (d(200), 3000)]
    figures = member_figures(added, orders, T0, d(600))
    # The order before the add is not ours; first order day 2, second day 80 (78 days on).
    assert figures["first_order_at"] == d(2)
    assert (figures["r90"], figures["r180"], figures["r365"]) == (True, True, True)
    assert (figures["orders"], figures["gmv_fen"]) == (3, 18000)
    # The day-80 order refunded (so not counted): the next is 198 days after the first.
    refunded = [o for o in orders if o[0] != d(80)]
    figures = member_figures(added, refunded, T0, d(600))
    assert (figures["r90"], figures["r180"], figures["r365"]) == (False, False, True)
    # Only 100 days since the first order: 90 is due, 180 and 365 are not.
    figures = member_figures(added, refunded, T0, d(102))
    assert (figures["r90"], figures["r180"], figures["r365"]) == (False, None, None)
    assert figures["next_due_at"] == d(182)
    # No order: no repurchase figure at all.
    assert member_figures(added, [], T0, d(600))["r90"] is None


# ---- the job, the API, the report ------------------------------------------------------------


async def refresh(h) -> None:
    await refresh_cohorts(h.sessions, h.settings.timezone, h.clock.now())


async def member(h, ext: str) -> CohortMember:
    async with h.sessions() as session:
        return await session.get(CohortMember, ext, populate_existing=True)


async def log_event(h, kind: str, guide: str, ext: str, at_: datetime) -> None:
    """A relation log row as contacts writes it (a transfer's two ends)."""
    async with h.sessions() as session, session.begin():
        session.add(
            RelationEvent(
                occurred_at=at_,
                recorded_at=h.clock.now(),
                kind=kind,
                guide_userid=guide,
                store_id=None,
                external_userid=ext,
                source="api",
            )
        )


def order(order_id: str, ext: str, paid_at: datetime, **extra) -> dict:
    return {
        "order_id": order_id,
        "external_userid": ext,
        "amount": "100.00",
        "paid_at": paid_at.isoformat(),
        **extra,
    }


async def test_midnight_in_shanghai_is_the_next_days_cohort_and_the_next_week(h):
    # Sunday 2026-03-08 23:59 and Monday 00:01 in Shanghai are 15:59 and 16:01 UTC on Sunday:
    # one is the week of March 2, the other the week of March 9.
    h.set_time(datetime(2026, 3, 8, 23, 59, tzinfo=SHANGHAI))
    await h.add("g1", "wmc01")
    h.set_time(datetime(2026, 3, 9, 0, 1, tzinfo=SHANGHAI))
    await h.add("g1", "wmc02")
    await refresh(h)
    assert (await member(h, "wmc01")).add_day == date(2026, 3, 8)
    assert (await member(h, "wmc02")).add_day == date(2026, 3, 9)
    status, body = await h.api("GET", "/cohorts", params={"from": "2026-03-01", "to": "2026-03-15"})
    assert status == 200, body
    weeks = {row["period_start"]: row["members"] for row in body["cohorts"]}
    assert weeks == {"2026-03-02": 1, "2026-03-09": 1}
    # Adds that came through no 「联系我」 code have no channel: a word, not an empty id.
    status, body = await h.api("GET", "/cohorts", params={"by": "channel", "from": "2026-03-01"})
    assert {(row["key"], row["label"]) for row in body["cohorts"]} == {("", "（无）/ none")}


async def test_transfers_store_moves_and_refunds_across_the_pipeline(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")  # store 11
    await h.add("g2", "wmc02")  # store 12
    await h.add("g1", "wmc03")
    # wmc01 is handed over to g2 on day 2 (it stays in g1's and store 11's cohort).
    await log_event(h, "transferred_out", "g1", "wmc01", at(11, 10))
    await log_event(h, "transferred_in", "g2", "wmc01", at(11, 10))
    # wmc03 deletes g1 on day 3.
    h.set_time(at(12, 10))
    await h.lose("g1", "wmc03")
    # g1 moves to store 12 afterwards: the cohort keeps store 11.
    await h.move("g1", "王芳", 12)
    # Orders: wmc01 buys on day 1 and day 20; the second is refunded on day 25.
    await h.order(order("C-1", "wmc01", at(10, 12)), status=201)
    h.set_time(at(29, 12))
    await h.order(order("C-2", "wmc01", at(29, 12), amount="300.00"), status=201)
    await refresh(h)

    first = await member(h, "wmc01")
    assert (first.store_id, first.guide_userid, first.d1) == (11, "g1", True)
    assert first.d7 is True  # transferred, not lost
    assert (await member(h, "wmc03")).d7 is False

    status, body = await h.api(
        "GET", "/cohorts", params={"by": "store", "from": "2026-03-09", "to": "2026-03-09"}
    )
    assert status == 200
    by_store = {row["label"]: row for row in body["cohorts"]}
    assert set(by_store) == {"张江店", "徐汇店"}
    zhangjiang = by_store["张江店"]
    assert zhangjiang["members"] == 2
    assert zhangjiang["cells"]["d1"] == {"value": 1.0, "count": 2, "of": 2}
    assert zhangjiang["cells"]["d7"] == {"value": 0.5, "count": 1, "of": 2}
    assert zhangjiang["cells"]["d30"]["value"] is None  # not yet due

    status, body = await h.api(
        "GET", "/cohorts", params={"metric": "gmv", "by": "guide", "from": "2026-03-09"}
    )
    [g1] = [row for row in body["cohorts"] if row["key"] == "g1"]
    assert g1["label"] == "王芳"
    assert g1["cells"]["gmv_per_customer"]["value"] == "200.00"  # ¥400 over 2 members
    assert g1["cells"]["orders_per_customer"]["value"] == 1.0

    # By playbook: the one that enrolled them at the add, by its name.
    status, body = await h.api(
        "GET", "/cohorts", params={"by": "playbook", "from": "2026-03-09", "to": "2026-03-09"}
    )
    [by_playbook] = body["cohorts"]
    assert (by_playbook["key"], by_playbook["label"]) == ("week_sop", "测试欢迎与次日提醒")
    assert by_playbook["members"] == 3

    # The refund (OrderRefunded) takes the second order out of every figure.
    h.set_time(datetime(2026, 4, 3, 12, tzinfo=SHANGHAI))
    await h.order(order("C-2", "wmc01", at(29, 12), amount="300.00", status="refunded"), 200)
    await refresh(h)
    refunded = await member(h, "wmc01")
    assert (refunded.orders, refunded.gmv_fen) == (1, 10000)

    # Day 90 after the first order: repurchase within 90 days is due, and (refunded) no.
    h.set_time(datetime(2026, 6, 9, 12, tzinfo=SHANGHAI))
    await refresh(h)  # the checkpoint came due: no log change needed
    assert (await member(h, "wmc01")).r90 is False
    status, body = await h.api(
        "GET", "/cohorts", params={"metric": "repurchase", "period": "month", "from": "2026-03-01"}
    )
    [march] = body["cohorts"]
    assert march["period_start"] == "2026-03-01"
    assert march["cells"]["r90"] == {"value": 0.0, "count": 0, "of": 1}

    # The admin heat map shows the same table, shaded.
    page = await h.client.get(
        "/admin/cohorts", params={"by": "store", "from": "2026-03-01"}, headers=ADMIN
    )
    text = await page.text()
    assert page.status == 200 and "客户分群" in text and "张江店" in text
    assert "background: rgba(31, 111, 235" in text
    assert (
        "1日留存" in text and "按周" in text and "Cohorts" not in text and "Retention" not in text
    )
    page = await h.client.get(
        "/admin/cohorts",
        params={"by": "store", "from": "2026-03-01", "lang": "en"},
        headers=ADMIN,
    )
    text = await page.text()
    assert "Cohorts" in text and "Day 1 retention" in text and "By week" in text
    assert "客户分群" not in text and "留存" not in text and "按周" not in text


async def test_bad_cohort_queries_are_refused_in_both_languages(h):
    status, body = await h.api("GET", "/cohorts", params={"metric": "ltv"})
    assert status == 400 and "metric" in body["error"]["reason"]
    status, body = await h.api("GET", "/cohorts", params={"from": "2026-03-10", "to": "2026-03-01"})
    assert status == 422 and body["error"]["reason"].startswith("from 晚于 to")


async def test_refresh_is_incremental_and_idempotent(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await refresh(h)
    h.advance(timedelta(hours=1))
    await refresh(h)  # the overlap reads the last minutes before the previous run again
    before = (await member(h, "wmc01")).refreshed_at
    h.advance(timedelta(hours=1))
    await refresh(h)  # nothing changed, no checkpoint due: the member is not recomputed
    assert (await member(h, "wmc01")).refreshed_at == before
    h.set_time(at(10, 11))  # day 1 came due
    await refresh(h)
    assert (await member(h, "wmc01")).d1 is True
    async with h.sessions() as session:
        rows = (await session.execute(select(CohortMember))).scalars().all()
    assert len(rows) == 1


def test_report_cohorts_formats(monkeypatch, tmp_path, capsys) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'g.db'}"
    monkeypatch.setenv("GUIDEBOT_DATABASE_URL", url)
    assert main(["report", "cohorts", "--format", "csv", "--from", "2026-03-01"]) == 0
    assert capsys.readouterr().out.startswith("period_start,all,label,members,d1,d7,d30,d90")
    assert main(["report", "cohorts", "--metric", "gmv", "--format", "json"]) == 0
    assert '"metric": "gmv"' in capsys.readouterr().out
    assert main(["report", "cohorts", "--from", "2026-13-01"]) == 2


@pytest.mark.parametrize("fmt", ["table"])
def test_report_cohorts_table_has_both_languages(monkeypatch, tmp_path, capsys, fmt) -> None:
    monkeypatch.setenv("GUIDEBOT_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'g.db'}")
    assert main(["report", "cohorts", "--format", fmt]) == 0
    assert capsys.readouterr().out.startswith("期间 / period")
