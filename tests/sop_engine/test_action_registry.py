"""The step actions: one module each, found by the registry, and what `sop check` and the
schema's name lists say of them agrees with what each action says of itself."""

from __future__ import annotations

from guidebot.sop.actions import STEP_ACTIONS, action_for, actions_where
from guidebot.sop.actions.base import StepAction
from guidebot.sop.models import Action, SopTask


def test_every_action_module_is_found_in_listing_order():
    assert list(STEP_ACTIONS) == [
        "welcome",
        "guide_task",
        "remind",
        "tag",
        "group_message",
        "moment_task",
    ]
    assert all(isinstance(action, StepAction) for action in STEP_ACTIONS.values())
    assert action_for("welcome") is STEP_ACTIONS["welcome"]
    assert action_for("no such action") is None


def test_the_schema_name_lists_agree_with_the_actions():
    assert set(Action.ALL) == set(STEP_ACTIONS)
    assert set(Action.TO_CUSTOMER) == set(actions_where(to_customer=True))
    assert set(Action.GUIDE_FACING) == set(actions_where(guide_facing=True))
    width = SopTask.__table__.c.action.type.length
    assert all(len(name) <= width for name in STEP_ACTIONS), width


def test_only_sending_actions_render_and_only_tag_takes_a_tag():
    assert set(actions_where(sends=True)) == {"welcome", "guide_task", "remind"}
    assert set(actions_where(takes_tag=True)) == {"tag"}
    assert set(actions_where(takes_content=True)) == {
        "welcome",
        "guide_task",
        "group_message",
        "moment_task",
    }
    # Group steps run per occurrence in sop_group_sends, never as per-customer task rows.
    assert set(actions_where(group_step=True)) == {"group_message", "moment_task"}
    assert not set(actions_where(group_step=True)) & set(actions_where(counted=True))
    assert set(actions_where(counted=True)) == {"welcome", "guide_task", "remind"}
