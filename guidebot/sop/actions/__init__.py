"""The step actions, one module each (welcome, guide_task, remind, tag), found here.

Every module of this package that defines `ACTION` (a guidebot.sop.actions.base.StepAction)
is an action playbooks may name: a new action is one new module (and its tests). The engine,
`sop check`, `sop simulate`, the API and the metrics ask this registry, never a list of their
own.
"""

from __future__ import annotations

import importlib
import pkgutil

from guidebot.sop.actions.base import StepAction


def _discover() -> dict[str, StepAction]:
    found: list[StepAction] = []
    for module in pkgutil.iter_modules(__path__):
        action = getattr(importlib.import_module(f"{__name__}.{module.name}"), "ACTION", None)
        if isinstance(action, StepAction):
            found.append(action)
    return {action.name: action for action in sorted(found, key=lambda a: (a.order, a.name))}


# name -> action, in listing order (welcome, guide_task, remind, tag).
STEP_ACTIONS: dict[str, StepAction] = _discover()


def action_for(name: str) -> StepAction | None:
    return STEP_ACTIONS.get(name)


def actions_where(**flags: bool) -> tuple[str, ...]:
    """The names of the actions whose flags (to_customer=True, ...) are as given."""
    return tuple(
        name
        for name, action in STEP_ACTIONS.items()
        if all(getattr(action, flag) == wanted for flag, wanted in flags.items())
    )


__all__ = ["STEP_ACTIONS", "action_for", "actions_where"]
