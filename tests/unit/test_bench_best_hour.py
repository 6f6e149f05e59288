"""bench.best_hour on a few simulated customers: best_time opens more messages within 2 hours
than the planned time (the benchmark's own figures, not a timing)."""

from __future__ import annotations

from bench.best_hour import rate, simulate


def test_best_time_beats_the_planned_time_on_simulated_readers() -> None:
    hits = simulate(600, seed=3)["hits"]
    assert len(hits["with"]["all"]) == len(hits["without"]["all"]) == 600
    assert rate(hits["with"]["all"]) > 1.5 * rate(hits["without"]["all"])
    # Customers with history gain more than those read only through their store.
    assert rate(hits["with"]["4+"]) > rate(hits["with"]["0"])
