"""One event's enrollments at once: an add's `customer.added` playbooks in a handful of statements.

`enroll` (guidebot.sop.enrollment) takes a playbook at a time: a savepoint, a read of the pair's
earlier enrollments, an insert of the enrollment, one of its tasks and a read of the welcome's
id, about six statements a playbook. On an add, where every statement is CPU the welcome waits
behind, `enroll_all` does the same for all of them together: one savepoint, one read of the
earlier enrollments of every playbook, one multi-row insert of the enrollments and one of all
their tasks (returning the welcome's id). The rules are enroll's own (`cycle_after`, the same
rows). If anything in it fails, nothing of it stays and the caller enrolls playbook by playbook,
each in its own savepoint, so one bad playbook still fails alone.

With `claim`, the welcome's row goes in already claimed by the welcome lane
(guidebot.sop.welcome_lane), as its claim would have left it: the lane then sends it without
claiming it in a transaction of its own or reading back what the add just wrote.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.db.direct import Direct, savepoint
from guidebot.db.engine import upsert_insert
from guidebot.sop.audience import Subject
from guidebot.sop.enrollment import (
    CUSTOMER_SCOPE,
    Enrolled,
    complete_enrollments,
    cycle_after,
    enrollment_values,
    held_out_rows,
    reading_scores,
    task_rows,
)
from guidebot.sop.holdout import HOLDOUT, assign, count_goal
from guidebot.sop.models import SopEnrollment, SopTask, TaskStatus
from guidebot.sop.playbook import Playbook
from guidebot.sop.timing import zone_named

log = logging.getLogger(__name__)

_ENROLLMENTS = SopEnrollment.__table__
_TASKS = SopTask.__table__
# Built once: every add runs them.
_EARLIER = Direct(
    select(
        _ENROLLMENTS.c.playbook_id,
        _ENROLLMENTS.c.scope,
        _ENROLLMENTS.c.status,
        _ENROLLMENTS.c.enrolled_at,
        _ENROLLMENTS.c.cycle,
    )
    .where(
        _ENROLLMENTS.c.playbook_id.in_(bindparam("playbooks", expanding=True)),
        _ENROLLMENTS.c.external_userid == bindparam("ext"),
    )
    .order_by(_ENROLLMENTS.c.enrolled_at.desc(), _ENROLLMENTS.c.id.desc())
)
_TASK_INSERT = Direct(
    _TASKS.insert().returning(
        _TASKS.c.id, _TASKS.c.enrollment_id, _TASKS.c.welcome_code, _TASKS.c.status
    )
)
_ENROLLMENT_INSERTS: dict[str, Direct] = {}


@dataclass(frozen=True, slots=True)
class WelcomeClaim:
    """Who the welcome's row is claimed for as it goes in, and until when."""

    owner: str
    until: datetime

    @staticmethod
    def takes(row: dict[str, Any]) -> bool:
        """A welcome to send, whose text needs nothing read (a step's content item does: the
        tracked link is minted from the library's row)."""
        return (
            row["welcome_code"] is not None
            and row["status"] == TaskStatus.PENDING
            and row["content"] is None
        )

    def values(self) -> dict[str, Any]:
        # What the leased queue's claim writes (guidebot.sop.queue.claim), the attempt counted.
        return {
            "status": TaskStatus.CLAIMED,
            "lease_owner": self.owner,
            "lease_until": self.until,
            "claimed_by": self.owner,
            "attempts": 1,
        }


def _enrollment_insert(dialect: str):
    statement = _ENROLLMENT_INSERTS.get(dialect)
    if statement is None:
        statement = (
            upsert_insert(dialect)(_ENROLLMENTS)
            .on_conflict_do_nothing()
            .returning(_ENROLLMENTS.c.id, _ENROLLMENTS.c.playbook_id)
        )
        statement = _ENROLLMENT_INSERTS[dialect] = Direct(statement)
    return statement


async def enroll_all(
    session: AsyncSession,
    playbooks: list[Playbook],
    subject: Subject,
    *,
    at: datetime,
    now: datetime,
    default_timezone: str,
    welcome_code: str | None = None,
    claim: WelcomeClaim | None = None,
) -> list[Enrolled]:
    """enroll() for each playbook (distinct ids, an event's: no occurrence), in one savepoint.
    What enrolled, in the playbooks' order; raises if any of it failed (nothing kept)."""
    if not playbooks:
        return []
    if len({p.id for p in playbooks}) != len(playbooks):
        raise ValueError("enroll_all takes each playbook once")
    async with savepoint(session):  # Core statements only: db.direct's savepoint
        return await _enroll_all(
            session, playbooks, subject, at, now, default_timezone, welcome_code, claim
        )


async def _enroll_all(
    session: AsyncSession,
    playbooks: list[Playbook],
    subject: Subject,
    at: datetime,
    now: datetime,
    default_timezone: str,
    welcome_code: str | None,
    claim: WelcomeClaim | None,
) -> list[Enrolled]:
    earlier: dict[tuple[str, str], list[tuple]] = defaultdict(list)
    found = await _EARLIER.execute(
        session, {"playbooks": [p.id for p in playbooks], "ext": subject.external_userid}
    )
    for playbook_id, scope, status, enrolled_at, cycle in found:
        earlier[(playbook_id, scope)].append((status, enrolled_at, cycle))
    wanted: list[tuple[Playbook, Any, dict[str, Any]]] = []
    for playbook in playbooks:
        scope = CUSTOMER_SCOPE if playbook.enroll.once_per_customer else subject.guide_userid
        cycle = cycle_after(earlier[(playbook.id, scope)], playbook, at, None)
        if cycle is None:
            continue
        zone = zone_named(
            subject.store_zone or playbook.timezone or default_timezone, default_timezone
        )
        group = assign(playbook.id, subject.external_userid, playbook.holdout)
        values = enrollment_values(playbook, subject, scope, zone, cycle, at, now, group)
        wanted.append((playbook, zone, values))
    if not wanted:
        return []
    inserted = await _enrollment_insert(session.bind.dialect.name).insert_rows(
        session, [values for _, _, values in wanted]
    )
    ids = {playbook_id: id_ for id_, playbook_id in inserted}
    rows: list[dict[str, Any]] = []
    counts: dict[int, int] = {}
    for playbook, zone, values in wanted:
        enrollment_id = ids.get(playbook.id)
        if enrollment_id is None:
            continue  # a racing enroller inserted this run (or another active one) first
        group = values["treatment_group"]
        scores = await reading_scores(session, playbook, subject)
        planned = task_rows(playbook, subject, enrollment_id, zone, at, now, welcome_code, scores)
        planned = held_out_rows(group, planned)
        if group is not None and playbook.goal is not None:
            await count_goal(session, playbook.id, group, at + playbook.goal.within, enrolled=1)
        counts[enrollment_id] = len(planned)
        rows += planned
        # The enrollment is its own record; at a livestream's rate a line each is noise.
        log.debug(
            "enrolled %s/%s in %s v%d (cycle %s, %d tasks, zone %s%s)",
            subject.guide_userid,
            subject.external_userid,
            playbook.id,
            playbook.version,
            values["cycle"],
            len(planned),
            zone.key,
            ", held out" if group == HOLDOUT else "",
        )
    claimed: dict[int, dict[str, Any]] = {}
    if claim is not None:
        for i, row in enumerate(rows):
            if claim.takes(row):
                rows[i] = claimed[row["enrollment_id"]] = row | claim.values()
    settings = {ids[p.id]: values["settings"] for p, _, values in wanted if p.id in ids}
    welcomes: dict[int, int] = {}
    if rows:
        for id_, enrollment_id, code, status in await _TASK_INSERT.insert_rows(session, rows):
            if code is not None and status in (TaskStatus.PENDING, TaskStatus.CLAIMED):
                welcomes[enrollment_id] = id_
    await complete_enrollments(session, [e for e, n in counts.items() if not n], now)
    return [
        Enrolled(e, welcomes.get(e), n, _with_id(claimed.get(e), welcomes.get(e)), settings[e])
        for e, n in counts.items()
    ]


def _with_id(row: dict[str, Any] | None, id_: int | None) -> dict[str, Any] | None:
    return None if row is None or id_ is None else row | {"id": id_}


__all__ = ["WelcomeClaim", "enroll_all"]
