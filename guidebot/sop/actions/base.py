"""What every step action shares: the rows it is handed, its outcomes, and its hooks.

An action (`welcome`, `guide_task`, `remind`, `tag`) is one module in this package with one
`ACTION`, a StepAction whose hooks the engine calls at each stage of a step's life:

* `validate`  — `sop check`: the step's keys as this action wants them;
* `plan`      — enrollment: the task row as planned (a welcome takes the add's code);
* `gate`      — send time, after the common stop checks: hold, defer or skip the row;
* `execute`   — the WeCom call(s), with no transaction open; outcomes, recorded by the caller;
* `reconcile` — a row found in `sending` after a crash: settle it or make it due again;
* `metric`    — how a task row of this action counts in the guide's daily figures.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, ClassVar, Protocol
from zoneinfo import ZoneInfo

from guidebot.clock import Clock
from guidebot.groups.labels import LABEL_RULE, label_problem
from guidebot.sop.models import CompletedBy, SopTask, TaskStatus
from guidebot.sop.planner import snap_into_window
from guidebot.sop.playbook import SendWindow
from guidebot.sop.timing import human_duration, window_from_json, zone_named
from guidebot.telemetry import Telemetry
from guidebot.wecom.client import WeComClient, WeComError, WeComTransportError

# WeCom did not act and may be asked again later: busy, limits, or never reached.
RETRY_LATER = frozenset({-1, 45009, 45033})
MAX_ATTEMPTS = 5


class ActionRuntime(Protocol):
    """What an action's calls use of the engine's runtime (guidebot.sop.context.SopRuntime)."""

    wecom: WeComClient
    clock: Clock
    telemetry: Telemetry | None

    def task_url(self, task_id: int) -> str: ...


@dataclass
class Prepared:
    """A row marked `sending` and committed, with what executing it needs."""

    id: int
    enrollment_id: int
    action: str
    guide_userid: str
    external_userid: str
    step_id: str
    playbook_id: str
    playbook_version: int
    playbook_name: str
    message: str | None
    tag: str | None
    welcome_code: str | None
    due_at: datetime
    expires_at: datetime | None
    attempts: int


@dataclass
class Outcome:
    id: int
    enrollment_id: int
    status: str
    reason: str | None = None
    wecom_msgid: str | None = None
    result: dict[str, Any] | None = None
    completed_by: str | None = None
    retry_at: datetime | None = None  # not sent: due again at this instant
    # What WeCom's answer changes in guidebot's own records (a tag step's tag on the pair),
    # written in the transaction that records the outcome.
    record: Callable[[Any], Awaitable[None]] | None = None


@dataclass
class TickReport:
    claimed: int = 0
    sending: int = 0
    sent: int = 0
    done: int = 0
    skipped: int = 0
    expired: int = 0
    deferred: int = 0
    failed: int = 0
    unknown: int = 0
    retried: int = 0
    reaped: int = 0
    wecom_calls: int = 0
    parked: int = 0

    def add(self, other: TickReport) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class Verdict:
    """A gate's answer: settle the row now (`skipped`, `expired`) or, with `due_at`, put it
    back to `pending` until then (`expires_at` moves by as much when `shift`)."""

    status: str
    reason: str
    due_at: datetime | None = None
    shift: bool = False


@dataclass
class SendTime:
    """What a gate sees of the moment: now, the enrollment's settings, the customer's zone and
    the playbook's window (read when first asked for), and when messages that may have
    reached each customer went out."""

    now: datetime
    settings: Mapping[str, Any]
    timezone: str | None
    default_timezone: str
    reached: Mapping[str, list[datetime]]

    @cached_property
    def zone(self) -> ZoneInfo:
        return zone_named(self.timezone, self.default_timezone)

    @cached_property
    def window(self) -> SendWindow | None:
        return window_from_json(self.settings.get("send_window"))


@dataclass
class Shared:
    """What one execute pass shares between its calls (the corp tags, fetched once)."""

    tag_ids: dict[str, str] | None = None  # a tag's name or id → its id
    tags: dict[str, dict[str, Any]] = field(default_factory=dict)  # id → {"id","name","group"}
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def retry_at(now: datetime, attempts: int) -> datetime:
    return now + timedelta(seconds=min(1800, 30 * 2 ** max(0, attempts - 1)))


def not_sent(row: Prepared, exc: WeComError, now: datetime, what: str) -> Outcome:
    """WeCom certainly did not act: due again later, or failed after MAX_ATTEMPTS."""
    if row.attempts >= MAX_ATTEMPTS:
        return Outcome(
            row.id,
            row.enrollment_id,
            TaskStatus.FAILED,
            f"{what} not sent after {row.attempts} attempts: {exc}",
        )
    return Outcome(
        row.id,
        row.enrollment_id,
        TaskStatus.PENDING,
        f"{what} not sent, retrying: {exc}",
        retry_at=retry_at(now, row.attempts),
    )


def transient(exc: WeComError) -> bool:
    return isinstance(exc, WeComTransportError) or exc.errcode in RETRY_LATER


def clip(text: str, limit_bytes: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit_bytes:
        return text
    return data[: limit_bytes - 3].decode("utf-8", errors="ignore") + "…"


def window_gate(task: SopTask, at: SendTime) -> Verdict | None:
    """A guide-facing row due before an outage and not yet expired, but the window is shut
    (3 am): held until it opens, or expired if it only opens after the step expires."""
    if at.window is None:
        return None
    opens = snap_into_window(at.now, at.window, at.zone)
    if opens <= at.now:
        return None
    if task.expires_at is not None and opens > task.expires_at:
        return Verdict(
            TaskStatus.EXPIRED,
            f"overdue by {human_duration(at.now - task.due_at)} after an outage, "
            "and the send window opens again only after the step expires; "
            "skipped rather than sent late",
        )
    return Verdict(
        TaskStatus.PENDING,
        f"held until the send window opens "
        f"({opens.astimezone(at.zone):%Y-%m-%d %H:%M} {at.zone.key})",
        due_at=opens,
    )


class StepAction:
    """An action's hooks; the defaults are what an action that needs nothing special does."""

    name: ClassVar[str]
    # Counts toward the customer's daily cap, and is `unknown` (never resent) when a call
    # fails in a way nothing expected: it may have reached the customer.
    to_customer: ClassVar[bool] = False
    # Shows in the guide's task list and is held for the playbook's send window.
    guide_facing: ClassVar[bool] = False
    # Deferred to the next day when the customer already got their daily cap of messages.
    capped: ClassVar[bool] = False
    # Sends a message (to the customer or, for a reminder, the guide): has a template.
    sends: ClassVar[bool] = True
    # Which optional step keys it takes (`sop check` refuses them on other actions).
    takes_content: ClassVar[bool] = False
    takes_tag: ClassVar[bool] = False
    # Reaches the customer at a time of our choosing: may say `best_time: true`.
    timed: ClassVar[bool] = False
    takes_groups: ClassVar[bool] = False  # group_message's `groups` filter
    takes_guides: ClassVar[bool] = False  # moment_task's `guides` filter
    # A group step: runs once per occurrence of a cron playbook for owners or guides, never
    # per customer (guidebot.sop.group_steps), so none of the per-customer hooks below.
    group_step: ClassVar[bool] = False
    # Its place in listings (the API's descriptions, `sop simulate`).
    order: ClassVar[int] = 100
    # How `sop simulate` names it.
    describe: ClassVar[str] = ""

    # -- sop check ------------------------------------------------------------------------
    def validate(
        self,
        check: Any,
        draft: Any,
        keys: Mapping[str, Any],
        path: str,
        *,
        trigger: Any,
        first_of: Mapping[str, int],
    ) -> None:
        """Report (check.error / check.key_error, draft.ok = False) what this action forbids
        or requires of a step beyond the common rules (guidebot.sop.checks). `trigger` is the
        playbook's; `first_of` maps an action to the index of its first earlier step."""

    # -- enrollment -----------------------------------------------------------------------
    def plan(
        self, row: dict[str, Any], *, welcome_code: str | None, at: datetime, now: datetime
    ) -> dict[str, Any]:
        """The task row to insert for a planned step of this action."""
        return row

    # -- send time ------------------------------------------------------------------------
    def gate(self, task: SopTask, at: SendTime) -> Verdict | None:
        return window_gate(task, at) if self.guide_facing else None

    def default_message(self, task: SopTask, variables: Mapping[str, Any]) -> str | None:
        """The text of a step without a template; None: the step cannot be sent without one."""
        return None

    # -- WeCom ----------------------------------------------------------------------------
    def batches(self, rows: Sequence[Prepared]) -> list[list[Prepared]]:
        """How this action's prepared rows go to WeCom: one call per list."""
        return [[row] for row in rows]

    async def execute(
        self, runtime: ActionRuntime, rows: Sequence[Prepared], now: datetime, shared: Shared
    ) -> list[Outcome]:
        raise NotImplementedError

    def reconcile(self, task: SopTask) -> tuple[str, str]:
        """A row of this action found in `sending` after a crash: ("retry", why) when it may
        repeat, ("unknown", why) when it must not be resent."""
        return "retry", "interrupted before WeCom answered; due again (idempotent)"

    # -- metrics --------------------------------------------------------------------------
    # Whether its rows count in the guide's daily figures at all (then `metric` says how).
    counted: ClassVar[bool] = False

    def metric(
        self,
        status: str,
        reason: str | None,
        completed_by: str | None,
        due: datetime,
        completed_at: datetime | None,
    ) -> list[str]:
        """The guide's daily counters (guidebot.metrics.kpis) a task row of this action adds
        one to, on its due day; none by default."""
        return []


GROUP_STEP_EXPIRY = timedelta(days=1)


class GroupStep(StepAction):
    """group_message and moment_task: the text is the library item's (no template), the
    targets a filter; only in a cron playbook (`sop check`)."""

    sends = False
    takes_content = True
    group_step = True
    filter_key: ClassVar[str]  # "groups" or "guides"
    filter_keys: ClassVar[dict[str, str]]  # key -> what each value is

    def validate(
        self,
        check: Any,
        draft: Any,
        keys: Mapping[str, Any],
        path: str,
        *,
        trigger: Any,
        first_of: Mapping[str, int],
    ) -> None:
        if "content" not in keys:
            check.error(
                draft.node,
                f"{path}.content",
                f"required key is missing for action {self.name!r} (a content item id)",
            )
            draft.ok = False
        if trigger is not None and trigger.event != "cron":
            check.error(
                draft.node.value["action"],
                f"{path}.action",
                f"action {self.name!r} needs a 'cron' trigger, not {trigger.event!r}: it runs "
                "per occurrence",
            )
            draft.ok = False
        if draft.expire_after is None and "expire_after" not in keys:
            draft.expire_after = GROUP_STEP_EXPIRY
        if self.filter_key in keys:
            draft.targets = self._targets(check, draft, keys[self.filter_key], path)

    def _targets(self, check: Any, draft: Any, node: Any, path: str) -> Any:
        from guidebot.sop.playbook import StepTargets

        where = f"{path}.{self.filter_key}"
        found = check.mapping(node, where, self.filter_key, tuple(self.filter_keys))
        if found is None:
            draft.ok = False
            return None
        values: dict[str, Any] = {}
        for key, child in found.items():
            items = check.strings(child, f"{where}.{key}", self.filter_keys[key])
            draft.ok = draft.ok and bool(items)
            values[key] = [value for value, _n, _p in items]
            if key == "labels":
                draft.ok = _labels_ok(check, items, f"{where}.labels") and draft.ok
        if len(found) != len(node.value):
            draft.ok = False
        return StepTargets(
            stores=frozenset(values.get("stores", ())),
            owners=frozenset(values.get("owners", ())),
            names=tuple(values.get("name", ())),
            guides=frozenset(values.get("guides", ())),
            labels=frozenset(values.get("labels", ())),
        )

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{self.name} runs in guidebot.sop.group_steps, not the task queue")


def _labels_ok(check: Any, items: list[tuple[str, Any, str]], where: str) -> bool:
    """Each of a `groups: {labels}` filter's labels is one HQ could put on a group (E421)."""
    ok = True
    for value, node, path in items:
        if label_problem(value) is not None:
            check.error(node, path or where, f"group label {value!r} is no label: {LABEL_RULE}")
            ok = False
    return ok


# How guide-facing tasks count (guidebot.metrics.kpis): outcomes that reached the guide; a
# skipped one counts when a person skipped it; done within a day of its due time is on time.
TASK_REACHED = (TaskStatus.SENT, TaskStatus.DONE)
TASK_SKIPPED_BY_PERSON = CompletedBy.BY_PERSON
ON_TIME_GRACE = timedelta(hours=24)


class GuideFacing(StepAction):
    """An action the guide acts on: in their task list, held for the send window, and counted
    as a task due, done and done on time."""

    guide_facing = True
    counted = True

    def metric(
        self,
        status: str,
        reason: str | None,
        completed_by: str | None,
        due: datetime,
        completed_at: datetime | None,
    ) -> list[str]:
        reached = status in TASK_REACHED or (
            status == TaskStatus.SKIPPED and completed_by in TASK_SKIPPED_BY_PERSON
        )
        if not reached:
            return []
        if status != TaskStatus.DONE:
            return ["tasks_due"]
        if completed_at is not None and completed_at <= due + ON_TIME_GRACE:
            return ["tasks_due", "tasks_done", "tasks_on_time"]
        return ["tasks_due", "tasks_done"]


__all__ = [
    "GROUP_STEP_EXPIRY",
    "MAX_ATTEMPTS",
    "ON_TIME_GRACE",
    "RETRY_LATER",
    "TASK_REACHED",
    "TASK_SKIPPED_BY_PERSON",
    "ActionRuntime",
    "GroupStep",
    "GuideFacing",
    "Outcome",
    "Prepared",
    "SendTime",
    "Shared",
    "StepAction",
    "TickReport",
    "Verdict",
    "clip",
    "not_sent",
    "retry_at",
    "transient",
    "window_gate",
]
