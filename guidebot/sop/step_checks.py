"""`sop check` for a playbook's steps: their shape, ids, anchors, the rules every step
follows, and each action's own (its `validate` hook, guidebot.sop.actions)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from guidebot.sop.actions import STEP_ACTIONS, action_for
from guidebot.sop.actions.base import StepAction
from guidebot.sop.playbook import ENROLL, Step, StepTargets, Trigger, format_duration
from guidebot.sop.template_checks import check_template, template_warnings
from guidebot.sop.values import did_you_mean, looks_like_duration, parse_duration
from guidebot.sop.yaml_nodes import BOOL, INT, MAP, SEQ, Node

STEP_KEYS = (
    "id",
    "name",
    "at",
    "action",
    "template",
    "expire_after",
    "tag",
    "content",
    "best_time",
    "groups",
    "guides",
)
_STEP_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_AT = re.compile(r"\s*([^\s+]+)\s*(?:\+\s*(.*?)\s*)?")

# Every action playbooks may name, as `sop check` lists them (alphabetically).
ACTION_NAMES = sorted(STEP_ACTIONS)


@dataclass
class _StepDraft:
    index: int
    node: Node
    id: str | None = None
    anchor: str | None = None
    offset: timedelta | None = None
    action: str | None = None
    template: str | None = None
    expire_after: timedelta | None = None
    tag: str | None = None
    content: str | None = None
    name: str | None = None
    best_time: bool = False
    targets: StepTargets | None = None
    ok: bool = True


class StepChecks:
    """The step checks of the playbook builder (guidebot.sop.checks._Builder), which gives
    them its reporting and reading methods (error, key_error, mapping, string, ...)."""

    def steps(self, node: Node | None, trigger: Trigger | None) -> list[Step] | None:
        if node is None:
            return None
        if node.kind != SEQ:
            self.expected(node, "steps", "a list of steps")
            return None
        if not node.value:
            self.error(node, "steps", "a playbook needs at least one step")
            return None
        drafts = [self.step_shape(i, item) for i, item in enumerate(node.value)]
        index_of: dict[str, int] = {}
        for draft in drafts:
            if draft.id is None:
                continue
            if draft.id in index_of:
                self.error(
                    draft.node.value["id"],
                    f"steps[{draft.index}].id",
                    f"step id {draft.id!r} already used by steps[{index_of[draft.id]}]; ids are "
                    "idempotency keys and must be unique",
                )
                draft.ok = False
            else:
                index_of[draft.id] = draft.index
        first_of: dict[str, int] = {}  # action -> the index of its first step so far
        for draft in drafts:
            self.step_anchor(draft, index_of)
            self.step_rules(draft, trigger, first_of)
            if draft.action is not None:
                first_of.setdefault(draft.action, draft.index)
        self.group_steps_alone(drafts)
        if not all(d.ok for d in drafts):
            return None
        return [
            Step(
                id=d.id,  # type: ignore[arg-type]
                anchor=d.anchor,  # type: ignore[arg-type]
                offset=d.offset,  # type: ignore[arg-type]
                action=d.action,  # type: ignore[arg-type]
                template=d.template,
                expire_after=d.expire_after,  # type: ignore[arg-type]
                tag=d.tag,
                content=d.content,
                name=d.name,
                best_time=d.best_time,
                targets=d.targets,
            )
            for d in drafts
        ]

    def group_steps_alone(self, drafts: list[_StepDraft]) -> None:
        """Group steps run per occurrence, the others per customer: never in one playbook."""
        kinds = [(d, action_for(d.action or "")) for d in drafts]
        if not any(a is not None and a.group_step for _d, a in kinds):
            return
        for draft, action in kinds:
            if action is None or action.group_step:
                continue
            self.error(
                draft.node.value["action"],
                f"steps[{draft.index}].action",
                f"a playbook with group steps (group_message, moment_task) has only group steps: "
                f"steps[{draft.index}] is action {action.name!r}, which runs per customer",
            )
            draft.ok = False

    def step_shape(self, index: int, node: Node) -> _StepDraft:
        draft = _StepDraft(index, node)
        path = f"steps[{index}]"
        if node.kind != MAP:
            self.expected(node, path, "a step (a mapping with id, at, action, template, ...)")
            draft.ok = False
            return draft
        keys = self.mapping(
            node,
            path,
            "step",
            STEP_KEYS,
            {
                "id": " (a unique name such as 'day3')",
                "at": " ('enroll' or '<earlier step id> + <duration>')",
                "action": f"; expected one of {ACTION_NAMES!r}",
            },
        )
        assert keys is not None
        if len(keys) != len(node.value) or not {"id", "at", "action"} <= keys.keys():
            draft.ok = False
        if "id" in keys:
            draft.id = self.step_id(keys["id"], f"{path}.id")
            draft.ok = draft.ok and draft.id is not None
        if "action" in keys:
            action = self.string(keys["action"], f"{path}.action", "an action")
            if action is not None and action not in STEP_ACTIONS:
                self.error(
                    keys["action"],
                    f"{path}.action",
                    f"unknown action {action!r}{did_you_mean(action, ACTION_NAMES)}; "
                    f"expected one of {ACTION_NAMES!r}",
                )
                action = None
            draft.action = action
            draft.ok = draft.ok and action is not None
        if "expire_after" in keys:
            draft.expire_after = self.duration(keys["expire_after"], f"{path}.expire_after")
            draft.ok = draft.ok and draft.expire_after is not None
        if "template" in keys:
            draft.template = self.string(
                keys["template"], f"{path}.template", "a template file name"
            )
            draft.ok = draft.ok and draft.template is not None
        if "tag" in keys:
            draft.tag = self.string(keys["tag"], f"{path}.tag", "a tag name or id")
            draft.ok = draft.ok and draft.tag is not None
        if "name" in keys:
            draft.name = self.string(keys["name"], f"{path}.name", "a display name (text)")
            draft.ok = draft.ok and draft.name is not None
        if "best_time" in keys:
            if keys["best_time"].kind != BOOL:
                self.expected(keys["best_time"], f"{path}.best_time", "true or false")
                draft.ok = False
            else:
                draft.best_time = keys["best_time"].value
        if "content" in keys:
            content = keys["content"]
            if content.kind == INT:
                draft.content = str(content.value)
            else:
                draft.content = self.string(content, f"{path}.content", "a content item id")
                draft.ok = draft.ok and draft.content is not None
        return draft

    def step_id(self, node: Node, path: str) -> str | None:
        value = self.string(node, path, "a step id (text)")
        if value is None:
            return None
        if value == ENROLL:
            self.error(node, path, "'enroll' names the enrollment itself; choose another step id")
            return None
        if not _STEP_ID.fullmatch(value):
            self.error(
                node,
                path,
                f"step id {value!r} may use only letters, digits, '_' and '-', starting with a "
                "letter (at most 64)",
            )
            return None
        return value

    def step_anchor(self, draft: _StepDraft, index_of: Mapping[str, int]) -> None:
        if draft.node.kind != MAP or "at" not in draft.node.value:
            return
        node: Node = draft.node.value["at"]
        path = f"steps[{draft.index}].at"
        if node.kind == INT:
            self.error(
                node,
                path,
                f"expected 'enroll' or '<earlier step id> + <duration>', got integer "
                f"{node.value}; write 'enroll + {node.value}d' for {node.value} days after "
                "enrolling",
            )
            draft.ok = False
            return
        text = self.string(node, path, "'enroll' or '<earlier step id> + <duration>'")
        if text is None:
            draft.ok = False
            return
        match = _AT.fullmatch(text)
        if not match:
            self.error(
                node,
                path,
                f"expected 'enroll' or '<earlier step id> + <duration>' such as 'welcome + 3d', "
                f"got {text!r}",
            )
            draft.ok = False
            return
        anchor, offset_text = match.group(1), match.group(2)
        earlier = [ENROLL] + [
            d_id for d_id, i in sorted(index_of.items(), key=lambda kv: kv[1]) if i < draft.index
        ]
        if anchor not in earlier:
            draft.ok = False
            if anchor == draft.id:
                self.error(node, path, f"step {anchor!r} cannot be anchored on itself")
            elif anchor in index_of:
                self.error(
                    node,
                    path,
                    f"anchor {anchor!r} is steps[{index_of[anchor]}], which comes later; a step "
                    "can only follow an earlier one",
                )
            elif offset_text is None and looks_like_duration(anchor):
                self.error(
                    node,
                    path,
                    f"{anchor!r} has no anchor; write 'enroll + {anchor}' or "
                    f"'<earlier step id> + {anchor}'",
                )
            else:
                self.error(
                    node,
                    path,
                    f"unknown anchor {anchor!r}{did_you_mean(anchor, earlier)}; "
                    f"expected one of {earlier!r}",
                )
            return
        offset = timedelta(0)
        if offset_text is not None:
            try:
                offset = parse_duration(offset_text)
            except ValueError as exc:
                self.error(node, path, str(exc))
                draft.ok = False
                return
        draft.anchor, draft.offset = anchor, offset

    def step_rules(
        self, draft: _StepDraft, trigger: Trigger | None, first_of: Mapping[str, int]
    ) -> None:
        """The rules every step follows, then its action's own (guidebot.sop.actions)."""
        action = action_for(draft.action or "")
        if draft.node.kind != MAP or action is None:
            return
        keys: dict[str, Node] = draft.node.value
        path = f"steps[{draft.index}]"
        if action.sends and "expire_after" not in keys:
            self.error(
                draft.node,
                path,
                "a sending step needs 'expire_after' (what to do if the step is overdue after an "
                "outage); otherwise a late restart sends stale messages",
            )
            draft.ok = False
        if action.sends and "template" not in keys:
            self.error(
                draft.node,
                f"{path}.template",
                f"required key is missing for action {action.name!r} (a file in the message "
                "templates)",
            )
            draft.ok = False
        if not action.sends and "template" in keys:
            self.key_error(
                keys["template"],
                f"{path}.template",
                f"action {action.name!r} takes its text from the library item ('content'); "
                "remove 'template'"
                if action.group_step
                else f"action {action.name!r} sends no message; remove 'template'",
            )
            draft.ok = False
        self.optional_keys(draft, action, keys, path)
        action.validate(self, draft, keys, path, trigger=trigger, first_of=first_of)
        if action.sends and draft.template is not None and self.env is not None:
            problems = check_template(self.env, draft.template)
            for problem in problems:
                self.error(keys["template"], f"{path}.template", problem)
                draft.ok = False
            if not problems:
                for warning in template_warnings(self.env, draft.template):
                    self.warning(keys["template"], f"{path}.template", warning)

    def optional_keys(
        self, draft: _StepDraft, action: StepAction, keys: Mapping[str, Node], path: str
    ) -> None:
        """'tag', 'content', 'best_time', 'groups' and 'guides' only on the actions that
        take them."""
        for key, flag in (
            ("tag", "takes_tag"),
            ("content", "takes_content"),
            ("best_time", "timed"),
            ("groups", "takes_groups"),
            ("guides", "takes_guides"),
        ):
            if key not in keys or getattr(action, flag):
                continue
            takers = [name for name, a in STEP_ACTIONS.items() if getattr(a, flag)]
            named = (
                f"action {takers[0]!r}"
                if len(takers) == 1
                else f"actions {', '.join(takers[:-1])} and {takers[-1]}"
            )
            self.key_error(keys[key], f"{path}.{key}", f"{key!r} is only for {named}")
            draft.ok = False

    def reentry(self, reenter_after: timedelta, node: Node, steps: list[Step]) -> None:
        totals: dict[str, timedelta] = {}
        for step in steps:
            base = timedelta(0) if step.anchor == ENROLL else totals[step.anchor]
            totals[step.id] = base + step.offset
        last = max(steps, key=lambda s: totals[s.id])
        if reenter_after < totals[last.id]:
            self.error(
                node,
                "enroll.reenter_after",
                f"reenter_after {format_duration(reenter_after)} is shorter than the playbook: "
                f"its last step {last.id!r} is {format_duration(totals[last.id])} after enroll; "
                "a customer could be in two runs at once",
            )
