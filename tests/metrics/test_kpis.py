"""KPI definitions: one place in code, the same words in the README; ratios of sums."""

from __future__ import annotations

from pathlib import Path

from guidebot.metrics.kpis import KPI_NAMES, KPIS, add_totals, empty_totals, evaluate, yuan

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
