"""The group steps in the playbook language: a cron playbook of group_message and moment_task
loads with its filters; a library item is required (the golden cases cover the errors)."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

from guidebot.sop.cli import simulate_command
from guidebot.sop.loader import load_playbook
from guidebot.sop.playbook import StepTargets
from guidebot.sop.studio import timeline
from tests.sop_language.test_golden import TEMPLATES

VALID = Path(__file__).parent / "valid" / "group_steps.yaml"


def test_a_cron_playbook_of_group_steps_loads_with_its_filters() -> None:
    loaded = load_playbook(VALID, TEMPLATES)
    assert not loaded.errors and not loaded.warnings
    weekly, post = loaded.playbook.steps
    assert (weekly.action, weekly.content, weekly.template) == (
        "group_message",
        "weekly-picks",
        None,
    )
    assert weekly.targets == StepTargets(stores=frozenset({"SH001"}), names=("*VIP*",))
    assert weekly.expire_after == timedelta(days=1)  # the group steps' default
    assert post.targets == StepTargets(
        stores=frozenset({"SH001"}), guides=frozenset({"zhangsan", "lisi"})
    )
    assert post.expire_after == timedelta(days=2)


def test_the_group_filter_picks_by_store_owner_and_name() -> None:
    targets = StepTargets(stores=frozenset({"SH001"}), names=("*VIP*",))
    assert targets.picks_group("SH001", "zhangsan", "静安 VIP 群")
    assert not targets.picks_group("SH002", "zhangsan", "静安 VIP 群")
    assert not targets.picks_group("SH001", "zhangsan", "快闪群")
    assert StepTargets(owners=frozenset({"lisi"})).picks_group(None, "lisi", None)


def test_sop_simulate_shows_each_group_step_with_its_targets() -> None:
    out, err = io.StringIO(), io.StringIO()
    code = simulate_command(str(VALID), added_at="2026-03-13 09:00", out=out, err=err)
    # Group steps go to owners and guides, never per customer: no per-customer cap to state.
    assert "daily cap" not in out.getvalue()
    text = out.getvalue()
    assert code == 0, err.getvalue()
    assert "1. weekly · group_message" in text
    assert "groups   stores SH001; name *VIP* (live groups)" in text
    assert "one group mass send per owner" in text
    assert "2. post · moment_task" in text
    assert "guides   stores SH001; guides lisi, zhangsan (active guides)" in text
    assert "due      2026-03-13 11:00:00 Fri" in text  # the cron run at 10:00, plus 1h


def test_the_studio_timeline_reads_a_group_playbook() -> None:
    loaded = load_playbook(VALID, TEMPLATES)
    steps = [row for row in timeline(loaded.playbook) if row["kind"] == "step"]
    assert [(row["id"], row["action"]) for row in steps] == [
        ("weekly", "group_message"),
        ("post", "moment_task"),
    ]
    assert steps[0]["detail"] == "expire_after 1d; stores SH001; name *VIP*"


def test_the_label_filter_picks_groups_carrying_any_of_its_labels() -> None:
    targets = StepTargets(labels=frozenset({"VIP", "老客"}), names=("*群",))
    assert targets.picks_group(None, "g1", "张江群", ("VIP",))
    assert targets.picks_group(None, "g1", "张江群", ("快闪", "老客"))
    assert not targets.picks_group(None, "g1", "张江群", ())
    assert not targets.picks_group(None, "g1", "张江", ("VIP",))  # the name must match too
    assert targets.describe() == "name *群; labels VIP or 老客"
