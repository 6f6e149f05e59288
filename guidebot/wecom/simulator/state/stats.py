"""Each member's contact figures (联系客户统计)."""

from __future__ import annotations

from typing import Any

from ..records import DAY, day_start
from .core import StateCore

__all__ = ["StatsState"]


class StatsState(StateCore):
    """Contact statistics."""

    def behavior_data(self, userids: set[str], start: int, end: int) -> list[dict[str, Any]]:
        first, last = day_start(start), day_start(min(end, self.now()))
        days: dict[int, dict[str, Any]] = {}
        stat_time = first
        while stat_time <= last:
            days[stat_time] = {
                "stat_time": stat_time,
                "chat_cnt": 0,
                "message_cnt": 0,
                "negative_feedback_cnt": 0,
                "new_apply_cnt": 0,
                "new_contact_cnt": 0,
            }
            stat_time += DAY  # China time has no DST
        for when, kind, userid, _ in self.contact_log:
            day = days.get(day_start(when))
            if day is not None and userid in userids:
                field_name = "new_contact_cnt" if kind == "new_contact" else "negative_feedback_cnt"
                day[field_name] += 1
        return list(days.values())
