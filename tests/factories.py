"""Rows as the SOP engine leaves them, for tests that set a scene without running a playbook.

Each factory fills every column the engine fills, with the defaults most tests want (store 11
张江店, Asia/Shanghai, version 1, now as every timestamp); a test names only what it is about.
The rows are not added to a session: `session.add` them (and flush for their ids).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from guidebot.sop.models import SopEnrollment, SopTask


def enrollment(
    guide: str,
    ext: str,
    playbook: str,
    now: datetime,
    *,
    settings: dict[str, Any] | None = None,
    goal: str | None = None,
    **fields: Any,
) -> SopEnrollment:
    """An active enrollment of the pair in store 11 (张江店) by customer.added; a goal, when
    given, is due three days on."""
    values: dict[str, Any] = dict(
        playbook_id=playbook,
        playbook_version=1,
        scope=guide,
        guide_userid=guide,
        external_userid=ext,
        store_id=11,
        timezone="Asia/Shanghai",
        trigger="customer.added",
        cycle="0",
        status="active",
        enrolled_at=now,
        settings=settings if settings is not None else {},
        goal_event=goal,
        goal_deadline=now + timedelta(days=3) if goal else None,
        created_at=now,
        updated_at=now,
    )
    values.update(fields)
    return SopEnrollment(**values)


def task(
    of: SopEnrollment | int,
    step: str,
    now: datetime,
    *,
    action: str,
    due_at: datetime,
    status: str,
    **fields: Any,
) -> SopTask:
    """A task of the enrollment (its pair and playbook; an id needs the pair in `fields`)."""
    values: dict[str, Any] = dict(
        step_id=step,
        playbook_version=1,
        action=action,
        due_at=due_at,
        status=status,
        created_at=now,
        updated_at=now,
    )
    if isinstance(of, SopEnrollment):
        values.update(
            enrollment_id=of.id,
            playbook_id=of.playbook_id,
            guide_userid=of.guide_userid,
            external_userid=of.external_userid,
        )
    else:
        values["enrollment_id"] = of
    values.update(fields)
    return SopTask(**values)
