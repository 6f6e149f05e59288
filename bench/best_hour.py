"""Does best_time pay? Simulated customers with hidden reading hours, one message each, placed
by the real planner with and without `best_time: true`.

    python -m bench.best_hour [--quick] [--customers N] [--seed S]

N customers (default 100,000; --quick 5,000) over 20 stores in Asia/Shanghai. Each store has a
peak hour (between 11:00 and 22:00); each customer a hidden reading hour: near their store's
peak for 60% of them, anywhere from 08:00 to 23:00 for the rest. A customer looks at WeChat at
their hour on 85% of days (give or take 40 minutes) and once more at a random waking hour on
half of them; a message is opened at their first look after it arrives.

History: each customer opened 0 to 8 earlier messages (0 for a fifth of them) at their looks,
fed one by one to guidebot.contacts.reading_hours (the customer's counts and their store's
prior, as `observe` keeps them). Then one message each: a playbook step `at: enroll`, in a
10:00-21:00 window, enrolled at a random time of a day (as the sop-behaviour scan does), planned
by guidebot.sop.planner.plan without and with the customer's scores.

Printed: the open-within-2h rate of each, split by how much history the customer had, the
planner's time per placement, and last `ratio=` with best_time over without.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import defaultdict
from datetime import datetime, timedelta
from datetime import time as wall
from zoneinfo import ZoneInfo

from guidebot.contacts.reading_hours import HOURS, estimate, utc_hour
from guidebot.sop.planner import plan
from guidebot.sop.playbook import (
    Audience,
    EnrollRule,
    Playbook,
    SendWindow,
    Step,
    Trigger,
)

ZONE = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 9, 1, tzinfo=ZONE)
STORES = 20
WITHIN = timedelta(hours=2)


def playbook(best_time: bool) -> Playbook:
    step = Step(
        id="nudge",
        anchor="enroll",
        offset=timedelta(0),
        action="guide_task",
        template="nudge.j2",
        expire_after=timedelta(days=1),
        best_time=best_time,
    )
    return Playbook(
        id="bench_best_hour",
        version=1,
        name="bench",
        source="bench",
        trigger=Trigger(event="repurchase_due", after=timedelta(days=30)),
        audience=Audience(),
        enroll=EnrollRule(),
        timezone=ZONE.key,
        send_window=SendWindow(wall(10), wall(21)),
        stop_when=frozenset(),
        goal=None,
        steps=(step,),
    )


class Customer:
    def __init__(self, rng: random.Random, store: int, peak: float) -> None:
        self.store = store
        if rng.random() < 0.6:
            self.hour = min(23.5, max(8.0, rng.gauss(peak, 1.0)))
        else:
            self.hour = rng.uniform(8.0, 23.5)

    def looks(self, rng: random.Random, day: datetime) -> list[datetime]:
        """When they look at WeChat on a local day (sorted)."""
        found = []
        if rng.random() < 0.85:
            found.append(day + timedelta(hours=self.hour + rng.gauss(0, 0.67)))
        if rng.random() < 0.5:
            found.append(day + timedelta(hours=rng.uniform(8.0, 23.5)))
        return sorted(found)

    def opened_at(self, rng: random.Random, sent: datetime) -> datetime | None:
        day = datetime.combine(sent.astimezone(ZONE).date(), wall(0), tzinfo=ZONE)
        for ahead in range(3):
            for look in self.looks(rng, day + timedelta(days=ahead)):
                if look >= sent:
                    return look
        return None


def simulate(customers: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    peaks = [rng.uniform(11.0, 22.0) for _ in range(STORES)]
    people = [Customer(rng, s, peaks[s]) for s in (rng.randrange(STORES) for _ in range(customers))]
    # History: earlier messages opened at their looks, counted per UTC hour as `observe` does.
    counts = [[0] * HOURS for _ in people]
    stores = [[0] * HOURS for _ in range(STORES)]
    everyone = [0] * HOURS
    for n, person in enumerate(people):
        opened = 0 if rng.random() < 0.2 else rng.randint(1, 8)
        for k in range(opened):
            sent = START + timedelta(days=3 * k, hours=rng.uniform(10.0, 21.0))
            at = person.opened_at(rng, sent)
            if at is None:
                continue
            hour = utc_hour(at)
            counts[n][hour] += 1
            stores[person.store][hour] += 1
            everyone[hour] += 1
    plain, best = playbook(False), playbook(True)
    hits: dict[str, dict[str, list[int]]] = {
        "without": defaultdict(list),
        "with": defaultdict(list),
    }
    spent = 0.0
    day = START + timedelta(days=40)
    for n, person in enumerate(people):
        enrolled = day + timedelta(days=rng.randrange(7), hours=rng.uniform(0, 24))
        reading = estimate(counts[n], stores[person.store], everyone)
        began = time.perf_counter()
        [placed] = plan(best, enrolled, ZONE, reading.scores if reading else None)
        spent += time.perf_counter() - began
        [nominal] = plan(plain, enrolled, ZONE)
        history = sum(counts[n])
        band = "0" if history == 0 else "1-3" if history <= 3 else "4+"
        # The same looks decide both: the customer's day does not know which message is sent.
        state = rng.getstate()
        for name, due in (("without", nominal.due_at), ("with", placed.due_at)):
            rng.setstate(state)
            opened = person.opened_at(rng, due)
            hit = int(opened is not None and opened - due <= WITHIN)
            hits[name]["all"].append(hit)
            hits[name][band].append(hit)
    return {"hits": hits, "per_placement_us": spent / len(people) * 1e6}


def rate(values: list[int]) -> float:
    return sum(values) / len(values) if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 customers")
    parser.add_argument("--customers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    customers = args.customers or (5_000 if args.quick else 100_000)
    began = time.perf_counter()
    result = simulate(customers, args.seed)
    hits = result["hits"]
    print(f"customers={customers} stores={STORES} seed={args.seed}")
    for band in ("0", "1-3", "4+", "all"):
        without, with_ = hits["without"][band], hits["with"][band]
        print(
            f"history={band:>3} customers={len(without):>7} "
            f"open_within_2h without={rate(without):.3f} with={rate(with_):.3f}"
        )
    print(f"placement={result['per_placement_us']:.0f}us each")
    print(f"elapsed={time.perf_counter() - began:.1f}s")
    print(f"ratio={rate(hits['with']['all']) / max(rate(hits['without']['all']), 1e-9):.2f}")


if __name__ == "__main__":
    main()
