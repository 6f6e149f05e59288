"""The studio's timeline as HQ reads it: each behaviour trigger's summary in Chinese and English
(the same facts in both), and offsets and durations exactly as the file writes them rather than
seconds turned back into text."""

from __future__ import annotations

from datetime import timedelta

import pytest

from guidebot import i18n
from guidebot.sop.loader import templates_dir_for
from guidebot.sop.playbook import GroupFilter, Trigger
from guidebot.sop.studio import check_text, timeline
from guidebot.sop.trigger_words import trigger_summary, written_values
from tests.harness import REPO

DAYS_3 = timedelta(days=3)


@pytest.mark.parametrize(
    ("trigger", "zh", "en"),
    [
        (
            Trigger(event="content.opened", item="spring-lookbook"),
            "内容「spring-lookbook」",
            "content “spring-lookbook”",
        ),
        (
            Trigger(event="content.opened", tag="新品"),
            "带标签「新品」的内容",
            "content tagged “新品”",
        ),
        (
            Trigger(event="opened_no_order", after=DAYS_3),
            "打开后 3d 内未下单",
            "no order within 3d of opening",
        ),
        (
            Trigger(event="opened_no_order", item="lookbook", after=DAYS_3),
            "内容「lookbook」 · 打开后 3d 内未下单",
            "content “lookbook” · no order within 3d of opening",
        ),
        (Trigger(event="silent", after=timedelta(days=14)), "14d 无互动", "no contact for 14d"),
        (
            Trigger(event="repurchase_due", after=timedelta(days=30), orders=2),
            "上次下单 30d 后 · 恰好 2 单",
            "30d after the last order · exactly 2 orders",
        ),
        (
            Trigger(event="repurchase_due", after=timedelta(days=30)),
            "上次下单 30d 后",
            "30d after the last order",
        ),
        (
            Trigger(event="stage.changed", from_stage="first_purchase", to_stage="repeat_buyer"),
            "首购 → 复购",
            "First purchase → Repeat buyer",
        ),
        (
            Trigger(event="stage.changed", from_stage="new", to_stage=None),
            "新客 → 任意阶段",
            "New → any stage",
        ),
        (
            Trigger(
                event="group.joined",
                group=GroupFilter(
                    first_join=True, group_names=("张江*", "VIP*"), join_ways=frozenset({"qr"})
                ),
            ),
            "仅首次入群、群名为「张江*」或「VIP*」、入群方式为 qr",
            "first join only, group named “张江*” or “VIP*”, joined by qr",
        ),
        (Trigger(event="group.joined", group=GroupFilter()), "任意客户群", "any group"),
        (Trigger(event="tag.added", tag="VIP"), "标签「VIP」", "tag “VIP”"),
        (Trigger(event="customer.added"), None, None),
    ],
)
def test_each_trigger_is_summed_up_in_both_languages(trigger, zh, en):
    assert trigger_summary(trigger, i18n.ZH) == zh
    assert trigger_summary(trigger, i18n.EN) == en


def test_the_wait_is_shown_as_the_file_writes_it():
    trigger = Trigger(event="silent", after=timedelta(hours=36))
    assert trigger_summary(trigger, i18n.EN) == "no contact for 1d12h"  # from seconds
    written = {"trigger.after": "36h"}
    assert trigger_summary(trigger, i18n.ZH, written) == "36h 无互动"


FILE = """
playbook: repurchase_30d
version: 1
name: 首购 30 天回购提醒
trigger:
  event: repurchase_due
  after: 720h
  orders: 1
enroll: {once_per: customer}
timezone: Asia/Shanghai
send_window: {hours: "10:00-21:00", days: mon-sun}
stop_when: [contact.lost]
goal: {event: order.paid, within: 336h}
steps:
  - id: remind
    name: 回购提醒
    at: enroll
    action: guide_task
    template: repurchase_30d.j2
    expire_after: 48h
  - id: again
    at: remind   +   90m
    action: guide_task
    template: repurchase_30d.j2
    expire_after: 1d
"""


def test_written_values_are_the_file_s_own_text():
    assert written_values(FILE) == {
        "trigger.after": "720h",
        "goal.within": "336h",
        "steps.remind.at": "enroll",
        "steps.remind.expire_after": "48h",
        "steps.again.at": "remind + 90m",  # spacing made even, nothing else
        "steps.again.expire_after": "1d",
    }
    assert written_values("steps: [") == {}  # broken YAML: nothing, never an error
    assert written_values("- a list") == {}


def test_the_timeline_shows_offsets_and_durations_as_written():
    loaded = check_text(FILE, "repurchase_30d", templates_dir_for(REPO / "sop"))
    assert loaded.playbook is not None, loaded.errors
    plain = timeline(loaded.playbook, i18n.ZH)
    written = timeline(loaded.playbook, i18n.ZH, written_values(FILE))
    steps = {e["id"]: e for e in written if e["kind"] == "step"}
    assert steps["again"]["at"] == "remind + 90m"
    assert steps["remind"]["detail"] == "expire_after 48h"
    assert {e["kind"]: e["value"] for e in written}["goal"] == "336h"
    assert written[0]["value"] == "上次下单 720h 后 · 恰好 1 单"
    # Without the text, the same facts from the seconds (what the API gave before).
    assert {e["id"]: e for e in plain if e["kind"] == "step"}["remind"]["detail"] == (
        "expire_after 2d"
    )
    assert plain[0]["value"] == "上次下单 30d 后 · 恰好 1 单"
