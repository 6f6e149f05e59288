"""welcome: send_welcome_msg to the customer with the add event's WelcomeCode.

41051 = already welcomed (done, stop); 41050 = the code expired; 41096 = another app is
sending, retried with a short backoff while the 20 s window lasts; WeComUncertain = unknown,
never resent. The step's expiry is the call's deadline: a welcome the client cannot make
before it is expired, not sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from guidebot.sop.actions.base import (
    ActionRuntime,
    Outcome,
    Prepared,
    SendTime,
    Shared,
    StepAction,
    Verdict,
    transient,
)
from guidebot.sop.models import CompletedBy, SopTask, TaskStatus
from guidebot.sop.playbook import ENROLL, WELCOME_CODE_LIFETIME, format_duration
from guidebot.sop.timing import human_duration
from guidebot.wecom.client import WeComDeadlineExceeded, WeComError, WeComUncertain

ALREADY_WELCOMED = 41051
CODE_EXPIRED = 41050
WELCOME_BUSY = 41096
WELCOME_BACKOFF = (0.5, 1.0, 2.0, 4.0)
# How welcomes count (guidebot.metrics.kpis): outcomes that mean the customer got one, and the
# reason a welcome is skipped when the add carried no code (not an attempt at all).
WELCOME_DELIVERED = (TaskStatus.SENT, TaskStatus.DONE)
NO_WELCOME_CODE = "no WelcomeCode"
_OPEN = (TaskStatus.PENDING, TaskStatus.CLAIMED, TaskStatus.SENDING)


class Welcome(StepAction):
    name = "welcome"
    to_customer = True
    takes_content = True
    counted = True
    order = 0
    describe = "welcome (to the customer, with the add's welcome code)"

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
        earlier = first_of.get(self.name)
        if earlier is not None:
            check.error(
                keys["action"],
                f"{path}.action",
                f"only one welcome step per playbook (already steps[{earlier}]); a welcome "
                "code works once",
            )
            draft.ok = False
        if trigger is not None and trigger.event != "customer.added":
            check.error(
                keys["action"],
                f"{path}.action",
                f"action 'welcome' needs trigger event 'customer.added', not {trigger.event!r}: "
                "only an add carries a welcome code",
            )
            draft.ok = False
        if draft.anchor is not None and (draft.anchor != ENROLL or draft.offset):
            check.error(
                keys["at"],
                f"{path}.at",
                "a welcome step must be at 'enroll': WeCom's welcome code lives 20 s after the add",
            )
            draft.ok = False
        if draft.expire_after is not None and draft.expire_after > WELCOME_CODE_LIFETIME:
            check.error(
                keys["expire_after"],
                f"{path}.expire_after",
                "a welcome step must expire within 20s (WeCom's welcome code lives 20 s), got "
                f"{format_duration(draft.expire_after)}",
            )
            draft.ok = False

    def plan(
        self, row: dict[str, Any], *, welcome_code: str | None, at: datetime, now: datetime
    ) -> dict[str, Any]:
        if not welcome_code:
            return row | {
                "status": TaskStatus.SKIPPED,
                "reason": f"{NO_WELCOME_CODE} in the add event (a welcome is configured in the"
                " admin console, the pair had chatted before, or it was not an add)",
                "completed_at": now,
            }
        if row["expires_at"] is not None and now > row["expires_at"]:
            return row | {
                "status": TaskStatus.EXPIRED,
                "reason": f"the add was handled {human_duration(now - at)} after it happened;"
                " the welcome code had expired",
                "completed_at": now,
            }
        return row | {"welcome_code": welcome_code}

    def gate(self, task: SopTask, at: SendTime) -> Verdict | None:
        if not task.welcome_code:
            return Verdict(TaskStatus.SKIPPED, f"{NO_WELCOME_CODE} to send the welcome with")
        return None

    async def execute(
        self, runtime: ActionRuntime, rows: Sequence[Prepared], now: datetime, shared: Shared
    ) -> list[Outcome]:
        return [await send_welcome(runtime, row) for row in rows]

    def reconcile(self, task: SopTask) -> tuple[str, str]:
        return (
            "unknown",
            "interrupted during send_welcome_msg; WeCom cannot tell whether it was "
            "delivered, and the code works once: not resent",
        )

    def metric(
        self,
        status: str,
        reason: str | None,
        completed_by: str | None,
        due: datetime,
        completed_at: datetime | None,
    ) -> list[str]:
        if status in _OPEN:
            return []
        if status == TaskStatus.SKIPPED and (reason or "").startswith(NO_WELCOME_CODE):
            return []
        if status in WELCOME_DELIVERED:
            return ["welcome_attempts", "welcome_sent"]
        return ["welcome_attempts"]


async def send_welcome(runtime: ActionRuntime, row: Prepared) -> Outcome:
    for attempt in range(len(WELCOME_BACKOFF) + 1):
        try:
            # The code's expiry is the call's deadline: queued behind WeCom's budget past it,
            # the welcome is not sent at all.
            await runtime.wecom.send_welcome_msg(
                row.welcome_code or "", text=row.message, deadline=row.expires_at
            )
            if runtime.telemetry is not None:  # due at the add: the step is `at: enroll`
                waited = (runtime.clock.now() - row.due_at).total_seconds()
                runtime.telemetry.welcome_seconds.observe(max(0.0, waited))
            return Outcome(
                row.id, row.enrollment_id, TaskStatus.SENT, completed_by=CompletedBy.ENGINE
            )
        except WeComDeadlineExceeded as exc:
            return Outcome(
                row.id,
                row.enrollment_id,
                TaskStatus.EXPIRED,
                f"the 20 s welcome window closed before WeCom could be called ({exc.errmsg})",
            )
        except WeComUncertain as exc:
            return Outcome(
                row.id,
                row.enrollment_id,
                TaskStatus.UNKNOWN,
                f"the welcome may have been delivered ({exc.errmsg}); not resent",
            )
        except WeComError as exc:
            if exc.errcode == WELCOME_BUSY or transient(exc):
                delay = WELCOME_BACKOFF[attempt] if attempt < len(WELCOME_BACKOFF) else None
                closes = row.expires_at or datetime.max.replace(tzinfo=UTC)
                if delay is not None and runtime.clock.now() + timedelta(seconds=delay) < closes:
                    await runtime.clock.sleep(delay)
                    continue
            return _refused(row, exc)
    raise AssertionError("unreachable")


def _refused(row: Prepared, exc: WeComError) -> Outcome:
    """What a WeCom error means for a welcome once retrying is over."""
    if exc.errcode == ALREADY_WELCOMED:
        return Outcome(
            row.id,
            row.enrollment_id,
            TaskStatus.DONE,
            "already welcomed (41051): another app or the guide got there first",
            completed_by=CompletedBy.ENGINE,
        )
    if exc.errcode == CODE_EXPIRED:
        return Outcome(
            row.id,
            row.enrollment_id,
            TaskStatus.EXPIRED,
            "the welcome code expired (41050) before it could be used",
        )
    if exc.errcode == WELCOME_BUSY or transient(exc):
        return Outcome(
            row.id,
            row.enrollment_id,
            TaskStatus.EXPIRED,
            f"the 20 s welcome window closed while WeCom answered: {exc}",
        )
    return Outcome(row.id, row.enrollment_id, TaskStatus.FAILED, str(exc))


ACTION = Welcome()
