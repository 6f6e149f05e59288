"""The SOP side of the demo's month of history: a playbook with a holdout whose lift shows, the
behaviour scan run as the days pass, and each day's stage counts.

* `demo_playbook_dir`: the shipped playbooks and their templates copied into a scratch folder,
  with one more, `demo_coupon` (新客首单券): a customer.added playbook holding half its
  customers out, goal order.paid within 7 days. Half, so a month of demo customers gives both
  groups enough settled customers for the lift (guidebot.sop.holdout's minimum) and the shipped
  playbooks stay as they are.
* `purchase_odds`: the demo's customers are simulated; a customer the coupon reached buys more
  often than one held out, so the lift HQ reads is the one the simulation put there (the real
  lift is what a brand's own customers do).
* `day_done`: what the jobs would have done at the end of a past day: the `sop-behaviour` scan
  as of then (repurchase_30d fires for first orders 30 days old) and the day's stage counts.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path

from guidebot.contacts.lifecycle import snapshot_stages
from guidebot.sop.behaviour_scan import sop_behaviour
from guidebot.sop.context import SopRuntime
from guidebot.sop.holdout import HOLDOUT, assign
from guidebot.sop.loader import templates_dir_for
from guidebot.sop.playbook import Playbook

COUPON = "demo_coupon"
COUPON_YAML = """\
# 演示用：新客首单券，一半客户留作对照组，看券是否真的带来首单。
playbook: demo_coupon
version: 1
name: 新客首单券（演示）
trigger:
  event: customer.added
enroll:
  once_per: customer
timezone: Asia/Shanghai
send_window:
  hours: "10:00-21:00"
  days: mon-sun
stop_when: [contact.lost, contact.removed, order.paid]
goal:
  event: order.paid
  within: 7d
holdout: 50%
steps:
  - id: coupon
    name: 首单券
    at: enroll + 1d
    action: guide_task
    template: follow_up_day3.j2
    expire_after: 1d
    best_time: true
"""
BASE_ODDS = 0.3  # of a customer who opened a link, the share who buy (guidebot.demo)


def demo_playbook_dir(shipped: Path, extra: Mapping[str, str] | None = None) -> Path:
    """A scratch `sop/` (with `templates/messages` beside it) holding the shipped playbooks,
    the demo's coupon and the `extra` playbooks (id → text: the demo's community playbook,
    guidebot.sop.demo_groups); the caller removes its parent when the demo ends."""
    root = Path(tempfile.mkdtemp(prefix="guidebot-demo-"))
    sop = root / "sop"
    sop.mkdir()
    for path in sorted(Path(shipped).glob("*.y*ml")):
        shutil.copy(path, sop / path.name)
    templates = templates_dir_for(Path(shipped))
    if templates.is_dir():
        shutil.copytree(templates, root / "templates" / "messages")
    (sop / f"{COUPON}.yaml").write_text(COUPON_YAML, encoding="utf-8")
    for playbook_id, text in (extra or {}).items():
        (sop / f"{playbook_id}.yaml").write_text(text, encoding="utf-8")
    return sop


def purchase_odds(playbooks: list[Playbook], customer: str) -> float:
    """How likely the demo's customer buys after an open: more when the coupon reached them."""
    if not any(p.id == COUPON for p in playbooks):
        return BASE_ODDS
    held_out = assign(COUPON, customer, 0.5) == HOLDOUT
    return BASE_ODDS / 2 if held_out else BASE_ODDS * 1.5


async def day_done(sop: SopRuntime, day: date, end: datetime) -> int:
    """The behaviour scan as of `end` and the day's stage counts; the customers enrolled."""
    report = await sop_behaviour(sop, end)
    async with sop.sessions() as session, session.begin():
        await snapshot_stages(session, day)
    return report.enrolled
