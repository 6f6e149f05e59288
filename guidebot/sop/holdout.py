"""Holdouts and lift: what a playbook earned over doing nothing.

A playbook may say `holdout: 10%`. Each customer it enrolls is put in one of two groups:

* `treated` (处理组): the playbook runs as written;
* `holdout` (对照组): the customer is enrolled and logged (sop_enrollments.treatment_group), its
  goal is credited like anyone's, but no step that reaches the customer (welcome, guide_task)
  or the guide (guide_task, remind) is planned for it: no message, no guide task. Steps that
  do neither (tag) still run.

The group is `assign(playbook id, external_userid, share)`: the first 8 bytes of
sha256("<playbook id>\\x00<external_userid>") read as a fraction of 2**64, held out when below
the share. It names no version, so an edit keeps every customer in their group (unless the
share changes: raising it moves treated customers into the holdout, never the other way), and
it is the same on every machine (never Python's salted hash()).

Lift compares the goal's conversion of the two groups over enrollments whose goal is settled
(met, or its window over by the start of the UTC day), read from a rollup kept with each
enrollment and each goal credited (sop_goal_counts, per playbook, group and deadline day):
the difference of the rates, the relative lift, and a 95% interval for the difference by
Newcombe's hybrid score method (Wilson intervals of each rate combined; "method 10" of
Newcombe 1998), which keeps inside [-1, 1] and behaves at rates near 0 or 1 where the plain
normal (Wald) interval does not. Under MIN_PER_GROUP settled enrollments in either group the
figures are refused as 样本太少 / too few.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.db.engine import upsert_insert
from guidebot.sop.models import SopEnrollment, SopGoalCount

TREATED = "treated"
HOLDOUT = "holdout"
GROUP_NAMES = {TREATED: "处理组 / treated", HOLDOUT: "对照组 / held out"}
MAX_SHARE = 0.5  # at most half the customers held out: a playbook is meant to run
MIN_PER_GROUP = 30  # settled enrollments in each group before a lift is shown
Z95 = 1.959963984540054

_PERCENT = re.compile(r"(\d{1,2}(?:\.\d{1,2})?)\s*%")
# English, as every checker message; guidebot.sop.check_language gives it a code and Chinese.
HOLDOUT_HINT = "holdout is a percentage from 0% to 50% of the customers enrolled, such as '10%'"


def parse_share(text: str) -> float:
    """'10%' → 0.1; ValueError with a bilingual message otherwise."""
    match = _PERCENT.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r}: {HOLDOUT_HINT}")
    share = float(match.group(1)) / 100
    if share > MAX_SHARE:
        raise ValueError(
            f"{text!r}: at most 50% may be held out (the playbook must run for most customers)"
        )
    return share


def check_holdout(check: Any, node: Any) -> float | None:
    """`sop check` of the `holdout` key: the share, or None with the error reported."""
    if not isinstance(node.value, str) or isinstance(node.value, bool):
        # YAML reads 10% as text; a bare 10 is an integer, and a percentage needs its sign
        found = f"{node.value!r}: " if isinstance(node.value, int) else ""
        check.error(node, "holdout", f"{found}{HOLDOUT_HINT}")
        return None
    try:
        return parse_share(node.value)
    except ValueError as exc:
        check.error(node, "holdout", str(exc))
        return None


def format_share(share: float) -> str:
    return f"{share * 100:g}%"


def draw(playbook_id: str, external_userid: str) -> float:
    """The customer's fixed place in [0, 1) for this playbook, the same on every machine."""
    key = f"{playbook_id}\x00{external_userid}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64


def assign(playbook_id: str, external_userid: str, share: float) -> str | None:
    """`holdout`, `treated`, or None when the playbook holds nobody out."""
    if share <= 0:
        return None
    return HOLDOUT if draw(playbook_id, external_userid) < share else TREATED


# ---- lift ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arm:
    customers: int  # settled enrollments (goal met, or its window over)
    converted: int

    @property
    def rate(self) -> float | None:
        return self.converted / self.customers if self.customers else None

    def as_json(self) -> dict[str, Any]:
        return {"customers": self.customers, "converted": self.converted, "rate": self.rate}


@dataclass(frozen=True)
class Lift:
    treated: Arm
    held_out: Arm
    difference: float | None = None  # treated rate − held-out rate
    relative: float | None = None  # difference / held-out rate (None when that is 0)
    low: float | None = None  # 95% interval of the difference (Newcombe)
    high: float | None = None
    refused: str | None = None  # why no figures: 样本太少 / too few

    def as_json(self) -> dict[str, Any]:
        return {
            "treated": self.treated.as_json(),
            "held_out": self.held_out.as_json(),
            "difference": self.difference,
            "relative": self.relative,
            "ci95": [self.low, self.high] if self.low is not None else None,
            "method": "newcombe-hybrid-score",
            "min_per_group": MIN_PER_GROUP,
            "refused": self.refused,
        }


def wilson(converted: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion."""
    p = converted / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def lift(treated: Arm, held_out: Arm, minimum: int = MIN_PER_GROUP) -> Lift:
    """The lift of treated over held out, or refused under `minimum` in either group."""
    if treated.customers < minimum or held_out.customers < minimum:
        return Lift(
            treated,
            held_out,
            refused=(
                f"样本太少：每组至少 {minimum} 位已结算客户 / too few: at least {minimum} "
                "settled customers in each group"
            ),
        )
    p1, p2 = treated.rate or 0.0, held_out.rate or 0.0
    l1, u1 = wilson(treated.converted, treated.customers)
    l2, u2 = wilson(held_out.converted, held_out.customers)
    difference = p1 - p2
    low = difference - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = difference + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return Lift(
        treated,
        held_out,
        difference=difference,
        relative=difference / p2 if p2 else None,
        low=max(-1.0, low),
        high=min(1.0, high),
    )


async def count_goal(
    session: AsyncSession,
    playbook_id: str,
    group: str,
    deadline: datetime,
    *,
    enrolled: int = 0,
    met: int = 0,
) -> None:
    """Add to the lift's rollup (sop_goal_counts), in the caller's transaction."""
    table = SopGoalCount.__table__
    insert = upsert_insert(session.bind.dialect.name)(table)
    await session.execute(
        insert.values(
            playbook_id=playbook_id,
            treatment_group=group,
            deadline_day=deadline.astimezone(UTC).date(),
            enrolled=enrolled,
            met=met,
        ).on_conflict_do_update(
            index_elements=["playbook_id", "treatment_group", "deadline_day"],
            set_={
                "enrolled": table.c.enrolled + insert.excluded.enrolled,
                "met": table.c.met + insert.excluded.met,
            },
        )
    )


async def lift_by_playbook(session: AsyncSession, now: datetime) -> dict[str, Lift]:
    """Per playbook that held anyone out: its goal's lift over the enrollments settled by the
    start of `now`'s UTC day (goal met, or deadline on an earlier UTC day), from the rollup.
    Enrollments from before the playbook had a holdout carry no group and are left out."""
    today = now.astimezone(UTC).date()
    c = SopGoalCount
    settled = func.sum(case((c.deadline_day < today, c.enrolled), else_=c.met))
    rows = await session.execute(
        select(c.playbook_id, c.treatment_group, settled, func.sum(c.met)).group_by(
            c.playbook_id, c.treatment_group
        )
    )
    arms: dict[str, dict[str, Arm]] = {}
    for playbook_id, group, n, converted in rows.all():
        arms.setdefault(playbook_id, {})[group] = Arm(int(n or 0), int(converted or 0))
    return {pid: lift_of(groups) for pid, groups in arms.items()}


async def rebuild_goal_counts(session: AsyncSession) -> None:
    """The lift's rollup again from sop_enrollments (a repair, and what tests compare)."""
    await session.execute(delete(SopGoalCount))
    rows = await session.execute(
        select(
            SopEnrollment.playbook_id,
            SopEnrollment.treatment_group,
            SopEnrollment.goal_deadline,
            SopEnrollment.goal_met_at,
        ).where(
            SopEnrollment.treatment_group.is_not(None), SopEnrollment.goal_deadline.is_not(None)
        )
    )
    for playbook_id, group, deadline, met in rows.all():
        await count_goal(
            session, playbook_id, group, deadline, enrolled=1, met=int(met is not None)
        )


def lift_of(groups: Mapping[str, Arm]) -> Lift:
    empty = Arm(0, 0)
    return lift(groups.get(TREATED, empty), groups.get(HOLDOUT, empty))


def percent(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value * 100:+.1f}%" if signed else f"{value * 100:.1f}%"


def describe_lift(found: Lift) -> str:
    """One line for people: the rates, the lift and its interval, or why there is none."""
    t, h = found.treated, found.held_out
    rates = (
        f"处理组 treated {percent(t.rate)} ({t.converted}/{t.customers}) · "
        f"对照组 held out {percent(h.rate)} ({h.converted}/{h.customers})"
    )
    if found.refused:
        return f"{rates} · {found.refused}"
    relative = f" ({percent(found.relative, signed=True)} 相对 relative)" if found.relative else ""
    return (
        f"{rates} · 提升 lift {percent(found.difference, signed=True)}{relative} · "
        f"95% CI [{percent(found.low, signed=True)}, {percent(found.high, signed=True)}]"
    )
