"""`guidebot report playbooks`: each playbook's goal, and what its holdout says it earned.

Reads the playbook files (GUIDEBOT_SOP_DIR) for names, goals and holdout shares, and
sop_enrollments (GUIDEBOT_DATABASE_URL) for the goal counts and the lift
(guidebot.sop.holdout): one grouped scan of the enrollments, no WeCom settings needed.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from guidebot.config import database_url_from_env
from guidebot.db.migrate import open_database, prepare_database
from guidebot.sop.cli import default_sop_dir
from guidebot.sop.holdout import Lift, describe_lift, format_share, lift_by_playbook, lift_of
from guidebot.sop.loader import load_directory, templates_dir_for
from guidebot.sop.playbook import format_duration
from guidebot.sop.queries import goal_outcomes

CSV_COLUMNS = (
    *("playbook", "name", "goal", "met", "open", "missed", "holdout", "treated_rate"),
    *("held_out_rate", "difference", "relative", "ci95_low", "ci95_high", "refused"),
)


@dataclass(frozen=True)
class PlaybookLine:
    id: str
    name: str
    goal: str | None  # "order.paid within 14d"
    counts: dict[str, int]  # met, open, missed
    holdout: float
    lift: Lift | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "goal": self.goal,
            **self.counts,
            "holdout": self.holdout,
            "lift": self.lift.as_json() if self.lift is not None else None,
        }


async def playbook_lines(url: str, now: datetime) -> list[PlaybookLine]:
    sop_dir = default_sop_dir()
    loaded = await asyncio.to_thread(load_directory, sop_dir, templates_dir_for(sop_dir))
    async with open_database(url, prepare=False, pool_size=1) as sessions, sessions() as session:
        goals = await goal_outcomes(session, now)
        lifts = await lift_by_playbook(session, now)
    lines = []
    for item in loaded:
        playbook = item.playbook
        if playbook is None:
            continue
        goal = playbook.goal
        counts = goals.get((playbook.id, goal.event)) if goal else None
        lines.append(
            PlaybookLine(
                id=playbook.id,
                name=playbook.name,
                goal=f"{goal.event} within {format_duration(goal.within)}" if goal else None,
                counts=counts or {"met": 0, "open": 0, "missed": 0},
                holdout=playbook.holdout,
                lift=lifts.get(playbook.id, lift_of({})) if playbook.holdout and goal else None,
            )
        )
    return lines


def format_lines(lines: list[PlaybookLine], fmt: str) -> str:
    if fmt == "json":
        document = {"playbooks": [line.as_json() for line in lines]}
        return json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for line in lines:
            lift = line.lift.as_json() if line.lift else {}
            ci = lift.get("ci95") or [None, None]
            writer.writerow(
                [
                    line.id,
                    line.name,
                    line.goal or "",
                    *line.counts.values(),
                    line.holdout,
                    (lift.get("treated") or {}).get("rate"),
                    (lift.get("held_out") or {}).get("rate"),
                    lift.get("difference"),
                    lift.get("relative"),
                    *ci,
                    lift.get("refused") or "",
                ]
            )
        return buffer.getvalue()
    out = ["剧本 / playbook · 目标 goal · 达成 met / 进行中 open / 未达成 missed · 对照组 holdout"]
    for line in lines:
        counts = line.counts
        out.append(
            f"{line.name} ({line.id}) · {line.goal or '无目标 / no goal'} · "
            f"{counts['met']} / {counts['open']} / {counts['missed']}"
        )
        if line.lift is not None:
            out.append(f"  对照组 holdout {format_share(line.holdout)}: {describe_lift(line.lift)}")
    return "\n".join(out) + "\n"


def report_playbooks_command(*, fmt: str) -> int:
    url = database_url_from_env()
    prepare_database(url)
    lines = asyncio.run(playbook_lines(url, datetime.now(UTC)))
    sys.stdout.write(format_lines(lines, fmt))
    return 0
