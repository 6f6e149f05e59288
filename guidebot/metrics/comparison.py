"""Our figures beside WeCom's get_user_behavior_data, per guide and per day.

WeCom's "联系客户统计" has its own definitions and limits, so the two rarely agree exactly:
at most 100 userids per call and the figures of several userids come back summed (so we call
once per guide), at most 30 days per call (longer periods are split), only the last 180 days are
kept, and its days are China days (00:00 Asia/Shanghai) while ours are the store's local days.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.behavior import oldest_day, read_days
from guidebot.metrics import kpis
from guidebot.metrics.report import Period, Scope, counter_totals
from guidebot.wecom.client import WeComClient

OURS = ("new_customers", "lost_customers")
THEIRS = ("new_contact_cnt", "negative_feedback_cnt")

NOTES = (
    "new_customers counts adds and re-adds (relation_events added + reactivated) on the store's "
    "local day; WeCom's new_contact_cnt counts new contacts on the China day (00:00 "
    "Asia/Shanghai) by its own rules, e.g. 免验证 adds the guide has not confirmed yet.",
    "lost_customers counts customers who deleted the guide (del_follow_user); WeCom's "
    "negative_feedback_cnt counts customers who deleted or blocked the member.",
    "Ours come from guidebot's own event log as received: callbacks missed while guidebot was "
    "down are only logged when the nightly reconciliation finds them, under the day it ran.",
    "WeCom keeps the last 180 days only (older days show wecom: null), answers at most 30 days "
    "per call (longer periods are split) and sums several userids, so it is asked per guide.",
)


async def wecom_days(
    wecom: WeComClient, userid: str, period: Period, now: datetime
) -> dict[date, dict[str, int]]:
    """WeCom's behaviour data for one guide, per China day, for the days it still keeps
    (read as the daily behavior-sync job reads it: guidebot.contacts.behavior)."""
    first = max(period.first, oldest_day(now))
    found = await read_days(wecom, userid, first, period.last) if first <= period.last else {}
    return {day: {name: values[name] for name in THEIRS} for day, values in found.items()}


async def compare(
    session: AsyncSession, userid: str, period: Period, theirs: dict[date, dict[str, int]]
) -> dict[str, Any]:
    """Our figures beside WeCom's (`wecom_days`, asked first: on SQLite a transaction held
    open while WeCom answers would hold the write lock an access-token refresh needs)."""
    ours_by_day = await counter_totals(session, Scope(guide=userid), period, group="day")
    days = []
    total_ours = dict.fromkeys(OURS, 0)
    total_theirs = dict.fromkeys(THEIRS, 0)
    for day in period.days():
        values = kpis.evaluate(kpis.add_totals(kpis.empty_totals(), ours_by_day.get(day, {})))
        ours = {name: values[name] for name in OURS}
        wecom_day = theirs.get(day)
        for name in OURS:
            total_ours[name] += ours[name]
        if wecom_day is not None:
            for name in THEIRS:
                total_theirs[name] += wecom_day[name]
        days.append(
            {
                "day": day.isoformat(),
                "ours": ours,
                "wecom": wecom_day,
                "difference": (
                    {
                        "new_customers": ours["new_customers"] - wecom_day["new_contact_cnt"],
                        "lost_customers": ours["lost_customers"]
                        - wecom_day["negative_feedback_cnt"],
                    }
                    if wecom_day is not None
                    else None
                ),
            }
        )
    return {
        "guide": userid,
        **period.as_json(),
        "days": days,
        "totals": {"ours": total_ours, "wecom": total_theirs},
        "notes": list(NOTES),
    }
