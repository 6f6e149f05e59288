"""Who arrived in the demo's past days: each customer's guide, instant, store code and draws.

Seeded, so every demo has the same history. A customer of today later than now is skipped, and
skipping one must not move anyone else's draws (or the history, its lift and its cohorts, would
depend on the minute the demo starts): each customer's own draws come from a generator of their
own, seeded from the history's, and the history's draws are made whether or not one is skipped.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True, slots=True)
class Arrival:
    external_userid: str
    at: datetime
    way: dict[str, Any]  # the store code they scanned
    rng: random.Random  # their own draws: name, opens, purchases


def past_arrivals(
    rng: random.Random,
    first: datetime,
    days: int,
    now: datetime,
    ways_by_guide: dict[str, list[dict[str, Any]]],
) -> Iterator[tuple[datetime, list[tuple[str, list[Arrival]]]]]:
    """Each day from `first` (midnight, the demo's zone), each guide's customers of that day
    who arrived before `now`. The last week busy, the weeks before it quieter."""
    serial = 0
    for offset in range(days, 0, -1):
        day = first + timedelta(days=days - offset)
        by_guide = []
        for userid, ways in ways_by_guide.items():
            arrived = []
            for _ in range(rng.randint(1, 4) if offset <= 7 else rng.randint(0, 1)):
                serial += 1
                at = day + timedelta(hours=rng.uniform(10, 21))
                way = rng.choice(ways)
                own = random.Random(rng.random())
                if at < now:
                    arrived.append(Arrival(f"wmweek{serial:05d}", at, way, own))
            by_guide.append((userid, arrived))
        yield day, by_guide
