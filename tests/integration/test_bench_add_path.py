"""`python -m bench.add_path` runs end to end in a tiny configuration (5 events of each kind).

The app and the simulator stand up in its one process, every add is welcomed (it raises if one
is not), and each kind's row and the ratio line parse: a first-seen delete, an add and a delete
each cost more statements than the worker's floor, an unhandled event. (A delete of a pair with
running enrollments cost more than an add until its reads were folded: at five events they are
even.)
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROW = re.compile(
    r"^(?P<kind>unhandled|first-seen|add|delete)\s+(?P<cpu>\d+\.\d\d) ms\s+(?P<statements>\d+\.\d)"
    r"\s+(?P<sqlalchemy>\d+\.\d)$"
)


def test_the_add_path_benchmark_runs_end_to_end():
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "bench.add_path", "--events", "5"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    rows = {m["kind"]: m for m in map(ROW.match, lines) if m}
    assert set(rows) == {"unhandled", "first-seen", "add", "delete"}, lines
    statements = {kind: float(row["statements"]) for kind, row in rows.items()}
    others = min(statements["first-seen"], statements["add"], statements["delete"])
    assert 1 <= statements["unhandled"] < others, lines
    assert all(float(row["cpu"]) > 0 for row in rows.values()), lines
    assert re.fullmatch(r"ratio=\d+\.\d", lines[-1]), lines
