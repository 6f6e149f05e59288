"""Every guide KPI, defined once: its name, its written definition, its source, its formula.

A KPI is computed from sums of guide_daily counters (guidebot.metrics.models.COUNTERS) over
the rows that match (a guide, a store, everyone; a period): a count is a signed sum of counters,
a rate is the ratio of two such sums. Rates are never averaged: a store's day-7 retention is the
store's kept customers over the store's new customers, not the mean of its guides' rates.
profile_completeness, groups_owned and group_join_rate are the exception in kind, not in rule:
they sum the last snapshot (guide_profile_daily) of each guide on or before the end of the
period. The service figures
(chats .. negative_feedback) are WeCom's, read daily (guidebot.contacts.behavior): WeCom gives a
daily reply rate and first-reply time without the counts behind them, so those two average the
days WeCom reported one (summed daily values over the days counted, still a ratio of sums).

The README's "Guide performance numbers" table repeats these definitions word for word (a test
checks it), so what a figure means is written in exactly one place in the code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from guidebot.metrics.models import COUNTERS

# A new customer is retained for N days when no end event of theirs with the guide follows the
# add within N × 24 hours.
RETENTION_WINDOWS = {"d1": timedelta(days=1), "d7": timedelta(days=7)}
# How SOP task rows count (welcome_attempts, welcome_sent, tasks_due, tasks_done,
# tasks_on_time) is each action's `metric` hook: guidebot.sop.actions.
# Snapshot columns beside the guide_daily counters (guide_profile_daily: filled, active,
# groups_owned, in_group; guidebot.metrics.report.SNAPSHOT reads them in this order).
PROFILE_COLUMNS = ("profile_filled", "profile_active", "groups_owned", "group_customers")


@dataclass(frozen=True, slots=True)
class Kpi:
    name: str
    label: str  # the short Chinese label in guides' reports
    kind: str  # "count", "rate", "money" or "minutes" (an average)
    definition: str
    source: str
    plus: tuple[str, ...]
    minus: tuple[str, ...] = ()
    over: tuple[str, ...] = ()  # a rate's (or an average's) denominator
    scale: int = 1  # the numerator's unit: reply_pct_x100 is in hundredths of a percent
    lower_is_better: bool = False  # for ranking: fewer minutes to answer is better

    def numerator(self, totals: Mapping[str, int]) -> int:
        return sum(totals.get(c, 0) for c in self.plus) - sum(totals.get(c, 0) for c in self.minus)

    def value(self, totals: Mapping[str, int]) -> Any:
        number = self.numerator(totals)
        if self.kind in ("rate", "minutes"):
            base = sum(totals.get(c, 0) for c in self.over) * self.scale
            return round(number / base, 4 if self.kind == "rate" else 1) if base else None
        if self.kind == "money":
            return yuan(number)
        return number


def yuan(fen: int) -> str:
    """Integer fen as a yuan decimal string with 2 places: 12345 -> "123.45"."""
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


KPIS: tuple[Kpi, ...] = (
    Kpi(
        "new_customers",
        "新客",
        "count",
        "Relations that became active with the guide on the local day: the customer added the "
        "guide (added) or added them again after an end (reactivated). Customers transferred in "
        "are not new customers.",
        "relation_events (added, reactivated)",
        plus=("added", "reactivated"),
    ),
    Kpi(
        "lost_customers",
        "流失",
        "count",
        "Customers who deleted the guide (del_follow_user) on the local day.",
        "relation_events (lost)",
        plus=("lost",),
    ),
    Kpi(
        "removed_customers",
        "删除",
        "count",
        "Customers the guide deleted (del_external_contact) on the local day.",
        "relation_events (removed)",
        plus=("removed",),
    ),
    Kpi(
        "net_growth",
        "净增",
        "count",
        "new_customers - lost_customers - removed_customers. Transfers in and out count in "
        "neither, so this is the guide's own growth, not the change in their customer count.",
        "relation_events",
        plus=("added", "reactivated"),
        minus=("lost", "removed"),
    ),
    Kpi(
        "day1_retention",
        "次日留存",
        "rate",
        "Of the new customers of day D whose first 24 hours have passed, the share with no "
        "lost, removed or transferred_out event with the guide within 24 hours of the add; "
        "credited to day D. New customers whose 24 hours are still running are in neither part.",
        "relation_events",
        plus=("d1_kept",),
        over=("d1_cohort",),
    ),
    Kpi(
        "day7_retention",
        "7日留存",
        "rate",
        "Of the new customers of day D whose first 7 days have passed, the share with no lost, "
        "removed or transferred_out event with the guide within 7 × 24 hours of the add; "
        "credited to day D. New customers whose 7 days are still running are in neither part.",
        "relation_events",
        plus=("d7_kept",),
        over=("d7_cohort",),
    ),
    Kpi(
        "welcome_rate",
        "欢迎语送达",
        "rate",
        "Welcomes delivered / adds that carried a WelcomeCode, credited to the day of the add: "
        "welcome tasks sent (or already sent, 41051) over settled welcome tasks that had a code "
        "(sent, done, failed, expired, unknown, or stopped before sending). Adds without a code "
        "and welcomes still in flight are in neither part.",
        "sop_tasks (action welcome)",
        plus=("welcome_sent",),
        over=("welcome_attempts",),
    ),
    Kpi(
        "tasks_due",
        "任务",
        "count",
        "Guide-facing SOP tasks (guide_task, remind) due on the local day that reached the "
        "guide: sent, done, or skipped by the guide. Tasks the engine settled on its own "
        "(stopped because the customer left, expired after an outage, failed) are not counted; "
        "a task the guide put off (snoozed) counts on the day it comes back.",
        "sop_tasks (action guide_task, remind)",
        plus=("tasks_due",),
    ),
    Kpi(
        "tasks_done",
        "已完成",
        "count",
        "Of tasks_due, those done (the guide confirmed the mass send or marked the task done), "
        "credited to the day the task was due.",
        "sop_tasks (status done)",
        plus=("tasks_done",),
    ),
    Kpi(
        "tasks_on_time",
        "按时完成",
        "count",
        "Of tasks_done, those completed no later than 24 hours after their due time.",
        "sop_tasks (completed_at <= due_at + 24 h)",
        plus=("tasks_on_time",),
    ),
    Kpi(
        "forwards",
        "转发",
        "count",
        "Content items the guide sent to customers, from the sidebar or a mass send the customer "
        "received: one per item per customer, credited to the local day the guide first sent that "
        "item to that customer. Sending it again, or confirming one send twice, adds nothing.",
        "content_forwards",
        plus=("forwards",),
    ),
    Kpi(
        "unique_opens",
        "打开",
        "count",
        "First opens on the local day of the guide's tracked links: one per content item and "
        "visitor, ever, credited to the guide whose link the visitor opened first. A visitor is "
        "the customer the link names, else a browser with a visitor id guidebot issued and "
        "signed; opens by anyone else are opens, never unique opens, and one client's burst of "
        "new visitors is capped.",
        "content_open_visitors",
        plus=("unique_opens",),
    ),
    Kpi(
        "open_rate",
        "打开率",
        "rate",
        "unique_opens / forwards over the same rows. It can exceed 1 when links forwarded before "
        "the period, or passed on, are opened in it.",
        "content_open_visitors, content_forwards",
        plus=("unique_opens",),
        over=("forwards",),
    ),
    Kpi(
        "orders",
        "订单",
        "count",
        "Orders attributed to the guide: +1 on the local day paid, -1 on the local day "
        "refunded. An order posted twice counts once.",
        "orders",
        plus=("orders_paid",),
        minus=("orders_refunded",),
    ),
    Kpi(
        "gmv",
        "GMV",
        "money",
        "The amounts of the orders attributed to the guide, in yuan as a decimal string: "
        "+amount on the local day paid, -amount on the local day refunded.",
        "orders",
        plus=("gmv_paid_fen",),
        minus=("gmv_refunded_fen",),
    ),
    Kpi(
        "profile_completeness",
        "留资率",
        "rate",
        "留资率: of the guide's active customers at the end of the period (each guide's last "
        "snapshot on or before its last day), the share whose relation has profile data: at "
        "least one remark mobile, or a non-empty description.",
        "relations (snapshots in guide_profile_daily)",
        plus=("profile_filled",),
        over=("profile_active",),
    ),
    # Customer groups (guidebot.groups): the membership log of the groups the guide owns, and
    # snapshots of the groups owned and of the guide's customers in any group.
    Kpi(
        "groups_owned",
        "群数",
        "count",
        "Live customer groups the guide owns at the end of the period (each guide's last "
        "snapshot on or before its last day); a dismissed group no longer counts.",
        "customer_groups (snapshots in guide_profile_daily)",
        plus=("groups_owned",),
    ),
    Kpi(
        "group_new_members",
        "新入群",
        "count",
        "Customers who joined a group the guide owned at the time, on the local day they joined "
        "(employees are not counted). Each join counts once however often WeCom told us; a "
        "customer who leaves and joins again counts again.",
        "group_member_events (joined, customers)",
        plus=("group_joined",),
    ),
    Kpi(
        "group_members_left",
        "退群",
        "count",
        "Customers who left a group the guide owned at the time, or were removed from it, on "
        "the local day (a departure the nightly sync found, on the day it found it).",
        "group_member_events (left, removed; customers)",
        plus=("group_left",),
    ),
    Kpi(
        "group_net",
        "群净增",
        "count",
        "group_new_members - group_members_left.",
        "group_member_events",
        plus=("group_joined",),
        minus=("group_left",),
    ),
    Kpi(
        "group_join_rate",
        "入群率",
        "rate",
        "入群率: of the guide's active customers at the end of the period (each guide's last "
        "snapshot on or before its last day), the share in at least one of the brand's live "
        "customer groups, whoever owns it.",
        "relations, customer_group_members (snapshots in guide_profile_daily)",
        plus=("group_customers",),
        over=("profile_active",),
    ),
    # WeCom's contact statistics (联系客户统计, get_user_behavior_data), read daily per guide by
    # guidebot.contacts.behavior: WeCom's counts of chats guidebot never sees, not our log.
    Kpi(
        "chats",
        "聊天",
        "count",
        "WeCom's chat_cnt: one-to-one chats with customers in which the guide sent at least one "
        "message, per China day (00:00 Asia/Shanghai), credited to the same date.",
        "WeCom get_user_behavior_data (chat_cnt), not our log",
        plus=("chats",),
    ),
    Kpi(
        "messages",
        "消息",
        "count",
        "WeCom's message_cnt: messages the guide sent in one-to-one chats with customers, per "
        "China day, credited to the same date.",
        "WeCom get_user_behavior_data (message_cnt), not our log",
        plus=("messages",),
    ),
    Kpi(
        "reply_rate",
        "回复率",
        "rate",
        "WeCom's reply_percentage (of the chats a customer started, the share the guide answered "
        "the same day) averaged over the days WeCom gave one; days without a chat a customer "
        "started are in neither part. WeCom gives no counts behind it, so a store's rate is the "
        "mean of its guides' days, not a ratio of chats.",
        "WeCom get_user_behavior_data (reply_percentage), not our log",
        plus=("reply_pct_x100",),
        over=("reply_days",),
        scale=10_000,
    ),
    Kpi(
        "avg_reply_minutes",
        "平均首次回复(分钟)",
        "minutes",
        "WeCom's avg_reply_time (minutes from a customer's first message to the guide's first "
        "answer, over the chats answered that day) averaged over the days WeCom gave one.",
        "WeCom get_user_behavior_data (avg_reply_time), not our log",
        plus=("reply_minutes",),
        over=("reply_time_days",),
        lower_is_better=True,
    ),
    Kpi(
        "negative_feedback",
        "删除/拉黑",
        "count",
        "WeCom's negative_feedback_cnt: customers who deleted or blocked the guide, per China "
        "day. It differs from lost_customers, which counts the deletions guidebot was told of "
        "on the store's local day.",
        "WeCom get_user_behavior_data (negative_feedback_cnt), not our log",
        plus=("negative_feedback",),
        lower_is_better=True,
    ),
)

KPI_BY_NAME: dict[str, Kpi] = {k.name: k for k in KPIS}
KPI_NAMES: tuple[str, ...] = tuple(k.name for k in KPIS)
TOTAL_COLUMNS: tuple[str, ...] = COUNTERS + PROFILE_COLUMNS


def empty_totals() -> dict[str, int]:
    return dict.fromkeys(TOTAL_COLUMNS, 0)


def add_totals(into: dict[str, int], other: Mapping[str, int]) -> dict[str, int]:
    for column in TOTAL_COLUMNS:
        into[column] = into.get(column, 0) + int(other.get(column) or 0)
    return into


def evaluate(totals: Mapping[str, int]) -> dict[str, Any]:
    """Every KPI from summed counters, by name, in KPIS order."""
    return {k.name: k.value(totals) for k in KPIS}


def sort_key(kpi: Kpi, value: Any) -> float:
    """For ranking: bigger is better (smaller, for a KPI where lower is better); a rate with
    no denominator ranks last."""
    if value is None:
        return float("-inf")
    return -float(value) if kpi.lower_is_better else float(value)
