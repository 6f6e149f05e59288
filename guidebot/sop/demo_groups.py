"""The demo's community playbook (`guidebot demo`): each week a group message to the store VIP
groups (the groups HQ labelled VIP) and a Moments task for two guides of each store, run through
the real engine: the occurrence planned as the `sop-triggers` job plans one, the rows sent by
the `sop-group-steps` job's own functions, WeCom asked what the owners and guides did.

* `vip_weekly_yaml`: the playbook, which the demo writes beside the shipped ones (for the
  guides it names). Its send window is the whole day, so the demo's occurrence goes out
  whenever the demo starts.
* `this_week`: the occurrence the demo starts with: the cron's last run if it fired within the
  trigger job's look-back (the same occurrence the job would plan: planned once), else now.
* `send_all`: the due rows sent, a few Moments tasks a run as the job does (WeCom takes 10 a
  minute); `settle`: WeCom asked about every sent row now (the demo's people just acted).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from guidebot.sop.context import SopRuntime
from guidebot.sop.group_results import poll
from guidebot.sop.group_sends import GroupStepReport, run_due
from guidebot.sop.jobs import latest_cron_occurrence, plan_groups
from guidebot.sop.playbook import Playbook
from guidebot.sop.timing import zone_named

VIP_WEEKLY = "demo_vip_weekly"
VIP_LABEL = "VIP"
VIP_WEEKLY_YAML = """\
# 演示用：每周一给门店 VIP 群（HQ 打了「{label}」标签的群）群发本周搭配，并请各店两位导购发朋友圈。
playbook: {playbook}
version: 1
name: VIP群每周搭配（演示）
trigger:
  event: cron
  cron: "0 10 * * mon"
timezone: Asia/Shanghai
send_window:
  hours: "00:00-24:00"
steps:
  - id: vip_weekly
    name: VIP群本周搭配
    at: enroll
    action: group_message
    content: weekly-lookbook
    groups:
      labels: [{label}]
  - id: moments
    name: 朋友圈：本周搭配
    at: enroll
    action: moment_task
    content: weekly-lookbook
    guides:
      guides: [{guides}]
"""


def vip_weekly_yaml(guides: Sequence[str]) -> str:
    """The demo's playbook, its Moments task for these guides (at most 10: WeCom creates 10
    Moments tasks a minute)."""
    return VIP_WEEKLY_YAML.format(playbook=VIP_WEEKLY, label=VIP_LABEL, guides=", ".join(guides))


async def this_week(sop: SopRuntime, playbook: Playbook, now: datetime) -> datetime:
    """Plan the demo's occurrence (once, whoever plans it); the instant it fired."""
    assert playbook.trigger.cron is not None
    zone = zone_named(playbook.timezone, sop.settings.timezone)
    fired = latest_cron_occurrence(playbook.trigger.cron, zone, now) or now
    await plan_groups(sop, playbook, fired, now)
    return fired


async def send_all(sop: SopRuntime, rounds: int = 4) -> GroupStepReport:
    """Run the due rows as the job would, a few rounds (its Moments batch is 5 a run)."""
    report = GroupStepReport()
    for _ in range(rounds):
        before = report.sent + report.failed + report.expired
        await run_due(sop, report)
        if report.sent + report.failed + report.expired == before:
            break
    return report


async def settle(sop: SopRuntime) -> GroupStepReport:
    """Ask WeCom about every sent row now."""
    return await poll(sop, every=timedelta(0))


__all__ = ["VIP_LABEL", "VIP_WEEKLY", "send_all", "settle", "this_week", "vip_weekly_yaml"]
