"""moment_task (朋友圈任务): add_moment_task, one per guide the step's `guides` filter picks,
with the library item's text and a tracked link carrying the guide's post; the guide's task
is done when get_moment_task says they published. Runs in guidebot.sop.group_steps."""

from __future__ import annotations

from guidebot.sop.actions.base import GroupStep


class MomentTask(GroupStep):
    name = "moment_task"
    takes_guides = True
    filter_key = "guides"
    filter_keys = {"stores": "a store code", "guides": "a guide's userid"}  # noqa: RUF012
    order = 5
    describe = "moment_task (a Moments post each guide publishes)"


ACTION = MomentTask()
