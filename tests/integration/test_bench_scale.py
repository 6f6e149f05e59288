"""`bench.scale` in a tiny configuration (3 guides, 430 days) on both engines: its report has
every read before and after, the sizes, the rows pruned per table, and the KPIs it read before
pruning equal those after it with the rollups rebuilt from what is left. No timing is asserted."""

from __future__ import annotations

import random
import re

import pytest

from bench import scale, scale_data

READS = set(scale.reads(scale_data.Plan(3, 430), random.Random(1)))


async def check_report(url: str | None, tmp_path, capsys) -> None:
    report = await scale.run(3, 430, url, 1, tmp_path)
    plan = scale_data.Plan(3, 430)
    adds = plan.count("adds")
    assert report.rows["customers"] == report.rows["relations"] == adds
    assert report.rows["sop_tasks"] == 2 * adds
    assert report.rows["inbox_events"] == adds
    assert report.rows["content_opens"] == plan.count("opens")
    assert set(report.latencies_before) == set(report.latencies_after) == READS
    assert all(0 < p50 <= p95 for p50, p95 in report.latencies_before.values())
    assert report.size_before > 0 and report.size_after > 0
    # The month past the 400-day periods goes: callbacks' plaintext (30 days), tasks, bot
    # replies and opens past 400 days; the year inside them stays.
    assert 0 < report.pruned["inbox"] < adds
    for table in ("tasks", "bot_replies", "opens"):
        assert 0 < report.pruned[table] < report.rows[scale.PRUNED_TABLES[table]] / 4, table
    # What pruning must not move, read through the API before and after (with the rollups
    # rebuilt from the logs left): every day's HQ figures and the leaderboard.
    assert report.kpis_before == report.kpis_after
    added = sum(
        day["metrics"]["new_customers"]
        for path, body in report.kpis_before.items()
        if "/metrics" in path
        for day in body["days"]
    )
    assert added > adds * 0.9
    scale.show(report)
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"ratio=\d+\.\d{3}", lines[-1]), lines
    assert any("KPIs" in line and line.endswith("equal") for line in lines), lines


async def test_the_scale_benchmark_reports_on_sqlite(tmp_path, capsys):
    await check_report(None, tmp_path, capsys)


@pytest.mark.pg
async def test_the_scale_benchmark_reports_on_postgresql(pg_url, tmp_path, capsys):
    await check_report(pg_url, tmp_path, capsys)
