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

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from guidebot.metrics.kpi_model import Kpi
from guidebot.metrics.models import COUNTERS

# A new customer is retained for N days when no end event of theirs with the guide follows the
# add within N × 24 hours.
RETENTION_WINDOWS = {"d1": timedelta(days=1), "d7": timedelta(days=7)}
# How SOP task rows count (welcome_attempts, welcome_sent, tasks_due, tasks_done,
# tasks_on_time) is each action's `metric` hook: guidebot.sop.actions.
# Snapshot columns beside the guide_daily counters (guide_profile_daily: filled, active,
# groups_owned, in_group; guidebot.metrics.report.SNAPSHOT reads them in this order).
PROFILE_COLUMNS = ("profile_filled", "profile_active", "groups_owned", "group_customers")


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
        title_en="New customers",
        definition_zh=(
            "当地日内与导购建立的有效好友关系：客户添加导购（新增），或删除后再次添加（恢复）。转"
            "接来的客户不算新客。"
        ),
    ),
    Kpi(
        "lost_customers",
        "流失",
        "count",
        "Customers who deleted the guide (del_follow_user) on the local day.",
        "relation_events (lost)",
        plus=("lost",),
        title_en="Lost customers",
        definition_zh="当地日内删除导购的客户数（del_follow_user）。",
    ),
    Kpi(
        "removed_customers",
        "删除",
        "count",
        "Customers the guide deleted (del_external_contact) on the local day.",
        "relation_events (removed)",
        plus=("removed",),
        title_en="Removed customers",
        definition_zh="当地日内导购删除的客户数（del_external_contact）。",
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
        title_en="Net growth",
        definition_zh=(
            "新客 − 流失 − 删除。转入、转出都不计入，所以这是导购自己的增长，而不是客户数的变化。"
        ),
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
        title_en="Day-1 retention",
        definition_zh=(
            "D 日的新客中，已满 24 小时的那部分里，添加后 24 小时内没有流失、删除或转出的占比；计"
            "入 D 日。尚未满 24 小时的新客不计入分子和分母。"
        ),
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
        title_en="Day-7 retention",
        definition_zh=(
            "D 日的新客中，已满 7 天的那部分里，添加后 7 × 24 小时内没有流失、删除或转出的占比；"
            "计入 D 日。尚未满 7 天的新客不计入分子和分母。"
        ),
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
        title_en="Welcome delivery rate",
        definition_zh=(
            "欢迎语送达数 / 带有 WelcomeCode 的添加数，计入添加当日：已发送（或已发过，41051）的"
            "欢迎语任务，除以已有结果且带 WelcomeCode 的欢迎语任务（已发送、已完成、失败、过期、"
            "结果未知，或发送前被停止）。没有 WelcomeCode 的添加和仍在发送中的欢迎语不计入。"
        ),
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
        title_en="Tasks due",
        definition_zh=(
            "当地日到期、已送达导购的 SOP 任务（导购任务、提醒）：已发送、已完成或被导购"
            "跳过。引擎自行结束的任务（客户已离开而停止、停机后过期、失败）不计入；导购推迟的任务"
            "计入其重新出现的那一天。"
        ),
    ),
    Kpi(
        "tasks_done",
        "已完成",
        "count",
        "Of tasks_due, those done (the guide confirmed the mass send or marked the task done), "
        "credited to the day the task was due.",
        "sop_tasks (status done)",
        plus=("tasks_done",),
        title_en="Tasks done",
        definition_zh="到期任务中已完成的（导购确认了群发，或标记为完成），计入任务到期的那一天。",
    ),
    Kpi(
        "tasks_on_time",
        "按时完成",
        "count",
        "Of tasks_done, those completed no later than 24 hours after their due time.",
        "sop_tasks (completed_at <= due_at + 24 h)",
        plus=("tasks_on_time",),
        title_en="Tasks on time",
        definition_zh="已完成任务中，在到期后 24 小时内完成的。",
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
        title_en="Forwards",
        definition_zh=(
            "导购发给客户的内容：来自侧边栏，或客户已收到的群发；每个内容对每位客户计一次，计入导"
            "购首次发送该内容给该客户的当地日。重复发送、重复确认同一次发送都不再增加。"
        ),
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
        title_en="Unique opens",
        definition_zh=(
            "当地日内导购追踪链接的首次打开：每个内容、每位访客只计一次，计入访客最先打开的那位导"
            "购。访客是链接指名的客户，或带有 guidebot 签发并签名的访客 ID 的浏览器；其他人的打开"
            "只算打开次数，不算独立打开；同一客户端突发的大量新访客有上限。"
        ),
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
        title_en="Open rate",
        definition_zh=(
            "同一范围内的 独立打开 / 转发。周期之前转发、或被转传的链接在周期内被打开时，可能超过"
            " 100%。"
        ),
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
        title_en="Orders",
        definition_zh="归属于导购的订单：付款当地日 +1，退款当地日 −1。同一订单重复推送只计一次。",
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
        title_en="GMV",
        definition_zh="归属于导购的订单金额（元，两位小数）：付款当地日 +金额，退款当地日 −金额。",
    ),
    Kpi(
        "profile_completeness",
        "留资率",
        "rate",
        "Of the guide's active customers at the end of the period (each guide's last "
        "snapshot on or before its last day), the share whose relation has profile data: at "
        "least one remark mobile, or a non-empty description.",
        "relations (snapshots in guide_profile_daily)",
        plus=("profile_filled",),
        over=("profile_active",),
        title_en="Profile completeness",
        definition_zh=(
            "留资率：周期结束时导购的有效客户中（每位导购在最后一天或之前的最后一次快照），好友关"
            "系上有资料的占比：至少一个备注手机号，或非空的描述。"
        ),
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
        title_en="Groups owned",
        definition_zh=(
            "期末（各导购在末日或之前的最后一次快照）导购作为群主的有效客户群数；已解散的群不计入。"
        ),
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
        title_en="New group members",
        definition_zh=(
            "当地日内加入导购（当时为群主）的客户群的客户数（员工不计）；同一次入群无论企业微信通知几次只计一次；退群后再入群再计一次。"
        ),
    ),
    Kpi(
        "group_members_left",
        "退群",
        "count",
        "Customers who left a group the guide owned at the time, or were removed from it, on "
        "the local day (a departure the nightly sync found, on the day it found it).",
        "group_member_events (left, removed; customers)",
        plus=("group_left",),
        title_en="Group members left",
        definition_zh=(
            "当地日内退出导购（当时为群主）的客户群或被移出的客户数（夜间同步发现的退群，计在发现当日）。"
        ),
    ),
    Kpi(
        "group_net",
        "群净增",
        "count",
        "group_new_members - group_members_left.",
        "group_member_events",
        plus=("group_joined",),
        minus=("group_left",),
        title_en="Group net growth",
        definition_zh="新入群减退群：新入群人数 − 退群人数。",
    ),
    Kpi(
        "group_join_rate",
        "入群率",
        "rate",
        "Of the guide's active customers at the end of the period (each guide's last "
        "snapshot on or before its last day), the share in at least one of the brand's live "
        "customer groups, whoever owns it.",
        "relations, customer_group_members (snapshots in guide_profile_daily)",
        plus=("group_customers",),
        over=("profile_active",),
        title_en="Group join rate",
        definition_zh=(
            "入群率：期末（各导购在末日或之前的最后一次快照）导购的有效客户中，至少在品牌一个有效客户群里的比例，无论群主是谁。"
        ),
    ),
    Kpi(
        "group_opens",
        "群链接打开",
        "count",
        "Of unique_opens, those whose visitor came first by a tracked link the guide forwarded "
        "into a customer group from the sidebar (the link carries the group).",
        "content_open_visitors (chat_id)",
        plus=("group_opens",),
        title_en="Opens via group links",
        definition_zh="独立打开中，访客最先通过导购从侧边栏转发到客户群的追踪链接打开的（链接带有该群）。",
    ),
    Kpi(
        "group_orders",
        "群链接订单",
        "count",
        "Of orders, those attributed to a customer group (attribution group): a forward into a "
        "group the customer was in when it was sent, or the link of the guide's group mass send "
        "opened in a browser tied to the customer: +1 on the local day paid, -1 on the local day "
        "refunded.",
        "orders (attribution group), content_forwards (chat_id), customer_group_members, "
        "content_opens (via group), content_visitor_customers",
        plus=("group_orders",),
        title_en="Orders via group links",
        definition_zh=(
            "订单中，归属于客户群的订单（归属方式 群链接）：转发到客户群（发送时客户在群内）的"
            "内容，或导购社群群发中的链接在与该客户关联的浏览器中被打开：付款当地日 +1，退款当地日"
            " −1。"
        ),
    ),
    # WeCom's contact statistics (联系客户统计, get_user_behavior_data), read daily per guide by
    # guidebot.contacts.behavior: WeCom's counts of chats guidebot never sees, not our log.
    Kpi(
        "group_sends",
        "群发到群",
        "count",
        "Group mass sends (a playbook's group_message step) that reached WeCom for the guide as "
        "the groups' owner: one per step and occurrence, whatever the number of groups, credited "
        "to the local day it was due.",
        "sop_group_sends (action group_message)",
        plus=("group_sends",),
        title_en="Group sends",
        definition_zh=(
            "已送达企业微信、由导购作为群主发送的社群群发（剧本的「群发到客户群」步骤）：每个步骤每"
            "次触发计一次，不论群数，计入到期的当地日。"
        ),
    ),
    Kpi(
        "group_send_rate",
        "群发确认率",
        "rate",
        "Of group_sends, the share WeCom says the owner sent (get_groupmsg_task status 2), "
        "credited to the day the send was due.",
        "sop_group_sends (status done)",
        plus=("group_sends_done",),
        over=("group_sends",),
        title_en="Group send confirmation rate",
        definition_zh=(
            "群发到群中，企业微信显示群主已发送（get_groupmsg_task 状态 2）的占比，计入到期的"
            "当地日。"
        ),
    ),
    Kpi(
        "moments_assigned",
        "朋友圈任务",
        "count",
        "Moments tasks (a playbook's moment_task step) that reached WeCom for the guide, "
        "credited to the local day they were due. A task cancelled because HQ paused, retired "
        "or replaced the playbook before the guide published is not counted.",
        "sop_group_sends (action moment_task)",
        plus=("moments_assigned",),
        title_en="Moments tasks",
        definition_zh=(
            "已送达企业微信、分配给导购的朋友圈任务（剧本的「朋友圈任务」步骤），计入到期的当地日。"
            "导购发表前因总部暂停、下线或更换剧本版本而取消的任务不计入。"
        ),
    ),
    Kpi(
        "moments_published",
        "朋友圈已发表",
        "count",
        "Of moments_assigned, those WeCom says the guide published (get_moment_task "
        "publish_status 1), credited to the day the task was due.",
        "sop_group_sends (action moment_task, status done)",
        plus=("moments_published",),
        title_en="Moments published",
        definition_zh=(
            "朋友圈任务中，企业微信显示导购已发表（get_moment_task 的 publish_status 为 1）的数量，"
            "计入到期的当地日。"
        ),
    ),
    Kpi(
        "moment_publish_rate",
        "朋友圈发表率",
        "rate",
        "moments_published / moments_assigned over the same rows.",
        "sop_group_sends (action moment_task)",
        plus=("moments_published",),
        over=("moments_assigned",),
        title_en="Moments publish rate",
        definition_zh="朋友圈已发表 / 朋友圈任务（同一批任务）。",
    ),
    Kpi(
        "group_link_opens",
        "群发链接打开",
        "count",
        "Opens of the tracked links in the guide's group sends, on the local day opened: every "
        "open, since a link in a group names no customer.",
        "content_opens (via group)",
        plus=("group_link_opens",),
        title_en="Group link opens",
        definition_zh=(
            "导购社群群发中追踪链接的打开次数，计入打开的当地日：群里的链接不指向某位客户，所以每"
            "次打开都计。"
        ),
    ),
    Kpi(
        "moment_link_opens",
        "朋友圈链接打开",
        "count",
        "Opens of the tracked link in the guide's Moments posts, on the local day opened: every "
        "open.",
        "content_opens (via moment)",
        plus=("moment_link_opens",),
        title_en="Moments link opens",
        definition_zh="导购朋友圈中追踪链接的打开次数，计入打开的当地日：每次打开都计。",
    ),
    Kpi(
        "moment_orders",
        "朋友圈订单",
        "count",
        "Of orders, those attributed to the guide's Moments post (attribution moments): its link "
        "opened, within the attribution window before the order, in a browser tied to the "
        "customer alone (one that opened a link naming them by then): +1 on the local day paid, "
        "-1 on the local day refunded.",
        "orders (attribution moments), content_opens (via moment), content_visitor_customers",
        plus=("moment_orders",),
        title_en="Orders via Moments",
        definition_zh=(
            "订单中，归属于导购朋友圈的订单（归属方式 朋友圈）：下单前的归因窗口内，朋友圈链接在只"
            "与该客户关联的浏览器（此前打开过指名该客户的链接）中被打开：付款当地日 +1，退款当地日"
            " −1。"
        ),
    ),
    Kpi(
        "chats",
        "聊天",
        "count",
        "WeCom's chat_cnt: one-to-one chats with customers in which the guide sent at least one "
        "message, per China day (00:00 Asia/Shanghai), credited to the same date.",
        "WeCom get_user_behavior_data (chat_cnt), not our log",
        plus=("chats",),
        title_en="Chats",
        definition_zh=(
            "企业微信的 chat_cnt：导购至少发过一条消息的单聊客户数，按中国日（Asia/Shanghai 0 点"
            "起）计，计入同一日期。"
        ),
    ),
    Kpi(
        "messages",
        "消息",
        "count",
        "WeCom's message_cnt: messages the guide sent in one-to-one chats with customers, per "
        "China day, credited to the same date.",
        "WeCom get_user_behavior_data (message_cnt), not our log",
        plus=("messages",),
        title_en="Messages",
        definition_zh=(
            "企业微信的 message_cnt：导购在与客户单聊中发送的消息数，按中国日计，计入同一日期。"
        ),
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
        title_en="Reply rate",
        definition_zh=(
            "企业微信的 reply_percentage（客户发起的单聊中，导购当天回复的占比），按企业微信给出"
            "数值的天数取平均；当天没有客户发起聊天的日子不计入。企业微信不提供背后的计数，所以门"
            "店的回复率是其导购各天的平均，而不是聊天数之比。"
        ),
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
        title_en="Average first reply",
        definition_zh=(
            "企业微信的 avg_reply_time（从客户第一条消息到导购第一次回复的分钟数，取当天已回复的"
            "聊天），按企业微信给出数值的天数取平均。"
        ),
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
        title_en="Deleted or blocked",
        definition_zh=(
            "企业微信的 negative_feedback_cnt：删除或拉黑导购的客户数，按中国日计。它与“流失”不同"
            "：流失统计的是 guidebot 收到通知的删除，按门店当地日计。"
        ),
    ),
)

KPI_BY_NAME: dict[str, Kpi] = {k.name: k for k in KPIS}
KPI_NAMES: tuple[str, ...] = tuple(k.name for k in KPIS)
TOTAL_COLUMNS: tuple[str, ...] = COUNTERS + PROFILE_COLUMNS


def empty_totals() -> dict[str, int]:
    return dict.fromkeys(TOTAL_COLUMNS, 0)


_TOTALS = frozenset(TOTAL_COLUMNS)


def add_totals(into: dict[str, int], other: Mapping[str, int]) -> dict[str, int]:
    """`other`'s total columns added into `into`, which then holds every total column."""
    if len(into) < len(TOTAL_COLUMNS):
        for column in TOTAL_COLUMNS:
            into.setdefault(column, 0)
    # Only what `other` holds: a brand's 10,000 guides' totals are added twice per page.
    for column, value in other.items():
        if value and column in _TOTALS:
            into[column] += int(value)
    return into


def evaluate(totals: Mapping[str, int], names: Iterable[str] | None = None) -> dict[str, Any]:
    """Every KPI from summed counters, by name, in KPIS order; only `names`, when given (a
    page of 10,000 guides that shows six of them need not work out the other thirty)."""
    chosen = KPIS if names is None else [KPI_BY_NAME[name] for name in names]
    return {k.name: k.value(totals) for k in chosen}


def columns_of(names: Iterable[str]) -> set[str]:
    """The total columns the named KPIs are worked out from."""
    wanted: set[str] = set()
    for name in names:
        kpi = KPI_BY_NAME[name]
        wanted.update(kpi.plus, kpi.minus, kpi.over)
    return wanted


def sort_key(kpi: Kpi, value: Any) -> float:
    """For ranking: bigger is better (smaller, for a KPI where lower is better); a rate with
    no denominator ranks last."""
    if value is None:
        return float("-inf")
    return -float(value) if kpi.lower_is_better else float(value)
