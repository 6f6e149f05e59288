"""`python -m bench.welcome` runs end to end in a tiny configuration (one rate, 2 s at 5 adds/s).

Its own processes (the simulator, `guidebot serve`, on PostgreSQL also two instances behind its
round-robin front) stand up, learn the guides, take the adds and welcome every one; the
summary line the issue's goal is read from parses.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SUMMARY = re.compile(r"^welcomed_in_20s=(?P<share>\d\.\d{3}) p99=(?P<p99>\d+\.\d{2})$")
ROW = re.compile(r"^\s+5\s+(?P<adds>\d+)\s+(?P<late>\d+)\s+(?P<share>[\d.]+)%")


def run_bench(*args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "bench.welcome", "--smoke", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


def check_every_add_welcomed(lines: list[str]) -> None:
    summary = SUMMARY.match(lines[-1])
    assert summary, lines
    assert float(summary["share"]) == 1.0, lines
    assert 0 <= float(summary["p99"]) <= 20, lines
    [row] = [m for m in map(ROW.match, lines) if m]
    assert (int(row["adds"]), row["share"]) == (10, "100.0"), lines
    # guidebot counts the same welcomes itself, on /metrics (every instance's summed).
    own = "guidebot's own count (/metrics guidebot_welcome_seconds): 10 accepted, 10 within 20 s"
    assert any(line.strip().startswith(own) for line in lines), lines


PG_CPU = re.compile(r"; PostgreSQL CPU (?P<ms>\d+\.\d) ms an add")


def test_the_welcome_benchmark_runs_end_to_end_on_sqlite():
    lines = run_bench()
    check_every_add_welcomed(lines)
    assert not any(PG_CPU.search(line) for line in lines), lines


@pytest.mark.pg
def test_the_welcome_benchmark_runs_two_instances_on_postgresql(pg_url):
    lines = run_bench("--database-url", pg_url, "--instances", "2")
    check_every_add_welcomed(lines)
    assert any(line.strip().endswith("more than once: 0") for line in lines), lines
    # The database's share beside the server's: its processes here worked for these adds.
    [spent] = [float(m["ms"]) for m in map(PG_CPU.search, lines) if m]
    assert spent > 0, lines
