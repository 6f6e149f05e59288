"""KPI definitions: one place in code, the same words in the README; ratios of sums."""

from __future__ import annotations

from pathlib import Path

from guidebot.metrics.kpi_model import yuan
from guidebot.metrics.kpis import KPI_NAMES, KPIS, add_totals, empty_totals, evaluate

README = Path(__file__).resolve().parents[2] / "README.md"
DESIGN_NAMES = [
    "new_customers",
    "lost_customers",
    "removed_customers",
    "net_growth",
    "day1_retention",
    "day7_retention",
    "welcome_rate",
    "tasks_due",
    "tasks_done",
    "tasks_on_time",
    "forwards",
    "unique_opens",
    "open_rate",
    "orders",
    "gmv",
    "profile_completeness",
    "groups_owned",
    "group_new_members",
    "group_members_left",
    "group_net",
    "group_join_rate",
    "group_opens",
    "group_orders",
    "group_sends",
    "group_send_rate",
    "moments_assigned",
    "moments_published",
    "moment_publish_rate",
    "group_link_opens",
    "moment_link_opens",
    "moment_orders",
    "chats",
    "messages",
    "reply_rate",
    "avg_reply_minutes",
    "negative_feedback",
]


def test_the_names_are_designs_and_the_readme_repeats_each_definition():
    assert list(KPI_NAMES) == DESIGN_NAMES
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Guide performance numbers") :]
    for kpi in KPIS:
        assert f"| `{kpi.name}` | {kpi.definition} | {kpi.source} |" in section, kpi.name


def test_rates_are_ratios_of_sums_not_averages_of_rates():
    # Guide A kept 1 of 1, guide B kept 1 of 9: the store kept 2 of 10, not (100% + 11%) / 2.
    a = add_totals(empty_totals(), {"d7_cohort": 1, "d7_kept": 1})
    b = add_totals(empty_totals(), {"d7_cohort": 9, "d7_kept": 1})
    store = add_totals(add_totals(empty_totals(), a), b)
    assert evaluate(store)["day7_retention"] == 0.2
    assert evaluate(empty_totals())["day7_retention"] is None


def test_signed_sums_and_money():
    totals = add_totals(
        empty_totals(),
        {
            "added": 3,
            "reactivated": 1,
            "lost": 2,
            "removed": 1,
            "transferred_in": 5,
            "transferred_out": 4,
            "orders_paid": 2,
            "orders_refunded": 1,
            "gmv_paid_fen": 29_900 + 8_850,
            "gmv_refunded_fen": 29_900,
        },
    )
    values = evaluate(totals)
    assert (values["new_customers"], values["net_growth"]) == (4, 1)  # transfers not counted
    assert (values["orders"], values["gmv"]) == (1, "88.50")
    assert (yuan(0), yuan(5), yuan(-29_900), yuan(123_456)) == (
        "0.00",
        "0.05",
        "-299.00",
        "1234.56",
    )


def test_wecoms_daily_reply_figures_average_over_the_days_it_gave_one():
    # WeCom said 60.25% and 100% on two days and nothing on a third (no chat a customer began);
    # 30 and 10 minutes to the first answer on two days.
    days = [
        {"reply_days": 1, "reply_pct_x100": 6025, "reply_time_days": 1, "reply_minutes": 30},
        {"reply_days": 1, "reply_pct_x100": 10_000, "reply_time_days": 1, "reply_minutes": 10},
        {"chats": 2, "messages": 5},
    ]
    totals = empty_totals()
    for day in days:
        add_totals(totals, day)
    values = evaluate(totals)
    assert values["reply_rate"] == 0.8013  # (60.25% + 100%) / 2 = 80.125%
    assert values["avg_reply_minutes"] == 20.0
    assert (values["chats"], values["messages"]) == (2, 5)
    assert evaluate(empty_totals())["reply_rate"] is None
    assert evaluate(empty_totals())["avg_reply_minutes"] is None
