"""Time as the engine reads it: zones, send windows, local days, readable durations.

Every instant is stored in UTC (architecture rule 8); days and windows are the customer's store's.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from guidebot.sop.planner import snap_into_window
from guidebot.sop.playbook import SendWindow

log = logging.getLogger(__name__)


def zone_named(name: str | None, default: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or default)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown time zone %r; using %s", name, default)
        return ZoneInfo(default)


def human_duration(delta: timedelta) -> str:
    seconds = int(max(delta, timedelta(0)).total_seconds())
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m" if minutes else f"{seconds}s"


def window_to_json(window: SendWindow | None) -> dict[str, Any] | None:
    if window is None:
        return None
    return {
        "start": window.start.strftime("%H:%M:%S"),
        "end": window.end.strftime("%H:%M:%S"),
        "days": sorted(window.days),
    }


def window_from_json(data: dict[str, Any] | None) -> SendWindow | None:
    if not data:
        return None
    return SendWindow(
        time.fromisoformat(data["start"]),
        time.fromisoformat(data["end"]),
        frozenset(int(d) for d in data.get("days", range(7))),
    )


def next_window_day(
    now: datetime, window: SendWindow | None, zone: ZoneInfo, at: time = time(0)
) -> datetime:
    """The first moment of the customer's next local day, from `at` on that day (a best_time
    step keeps its hour), that lies in the send window."""
    local = now.astimezone(zone)
    tomorrow = datetime.combine(local.date() + timedelta(days=1), at, tzinfo=zone)
    if window is None:
        return tomorrow.astimezone(UTC)
    return snap_into_window(tomorrow, window, zone).astimezone(UTC)


def local_day_bounds(instant: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    day = instant.astimezone(zone).date()
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)
