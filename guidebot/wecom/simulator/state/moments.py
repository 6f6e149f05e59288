"""Moments (客户朋友圈, 企业发表): the creation job, the post, and each executor's publishing.

Doc 95094 (now 96351) 创建发表任务: add_moment_task is asynchronous: a jobid whose status goes
1 (started) → 2 (in progress) → 3 (finished, with the moment_id); nothing reaches a customer
until each executor publishes in the client (publish_status 0 → 1). Doc 97612 停止发表:
cancelling stops only the executors who have not published. WeCom sends no callback for any
of it (doc 92277): callers poll.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from ..config import SimulatorConfig
from ..errors import ApiError, ControlError
from ..records import DAY, FOLLOWING, MINUTE, RateLimit
from .core import StateCore

__all__ = ["Moment", "MomentJob", "MomentsState"]

MOMENT_TASKS_PER_MINUTE = 10  # doc 95094: 10 Moments tasks a minute per corp
JOB_TTL = DAY  # doc 95094: a jobid is valid 24 h


@dataclass(slots=True)
class Moment:
    moment_id: str
    create_time: int
    text: dict[str, Any] | None
    attachments: list[dict[str, Any]]
    visible_type: int  # 0 部分可见 (a tag_list was given), 1 公开
    tag_ids: list[str]
    # executor -> [publish_status, publish_time]
    executors: dict[str, list[int]] = field(default_factory=dict)
    # executor -> the customers who could see it, chosen when they published
    audiences: dict[str, list[str]] = field(default_factory=dict)
    canceled: bool = False


@dataclass(slots=True)
class MomentJob:
    jobid: str
    created: float
    moment: Moment
    invalid_users: list[str]
    invalid_departments: list[int]
    invalid_tags: list[str]


class MomentsState(StateCore):
    """企业发表 Moments tasks."""

    def __init__(self, config: SimulatorConfig) -> None:
        super().__init__(config)
        self.moment_jobs: dict[str, MomentJob] = {}
        self.moments: dict[str, Moment] = {}
        self.moment_rate = RateLimit((MINUTE,), ban=True)

    def create_moment_task(
        self,
        *,
        text: dict[str, Any] | None,
        attachments: list[dict[str, Any]],
        users: list[str] | None,
        departments: list[int],
        tag_ids: list[str],
    ) -> MomentJob:
        """A job making one post; executors outside the corp are reported, not refused."""
        if not self.moment_rate.admit(self.now(), (MOMENT_TASKS_PER_MINUTE,)):
            raise ApiError(45009, "add_moment_task: at most 10 tasks a minute per corp")
        invalid_users = [u for u in users or () if u not in self.members]
        invalid_departments = [d for d in departments if d not in self.departments]
        invalid_tags = [t for t in tag_ids if t not in self.tag_index]
        if users is None and not departments:
            executors = sorted(self.members)  # every member in the app's visible range
        else:
            executors = [u for u in dict.fromkeys(users or ()) if u in self.members]
            wanted = set(departments) - set(invalid_departments)
            executors += sorted(
                u
                for u, m in self.members.items()
                if wanted & set(m.department) and u not in executors
            )
        moment = Moment(
            moment_id="mom" + secrets.token_urlsafe(24),
            create_time=int(self.now()),
            text=text,
            attachments=attachments,
            visible_type=0 if tag_ids else 1,
            tag_ids=[t for t in tag_ids if t in self.tag_index],
            executors={u: [0, 0] for u in executors},
        )
        job = MomentJob(
            jobid="job" + secrets.token_urlsafe(30),
            created=self.now(),
            moment=moment,
            invalid_users=invalid_users,
            invalid_departments=invalid_departments,
            invalid_tags=invalid_tags,
        )
        self.moment_jobs[job.jobid] = job
        return job

    def moment_job(self, jobid: str) -> tuple[int, MomentJob]:
        """The job and its status now: 1 started, 2 in progress, 3 finished (the post exists
        from then on). A jobid never issued, or past its 24 h, is refused with 40058: which
        code WeCom answers is not documented."""
        job = self.moment_jobs.get(jobid)
        if job is None or self.now() > job.created + JOB_TTL:
            raise ApiError(40058, f"invalid jobid {jobid!r}")
        elapsed = self.now() - job.created
        if elapsed <= 0:
            return 1, job
        if elapsed < self.config.moment_job_seconds:
            return 2, job
        self.moments.setdefault(job.moment.moment_id, job.moment)
        return 3, job

    def moment(self, moment_id: str) -> Moment:
        """A finished post: 41059 without an id, 41060 for an id that names none."""
        if not moment_id:
            raise ApiError(41059)
        for job in list(self.moment_jobs.values()):  # a job that finished makes its post
            if job.moment.moment_id == moment_id:
                self.moment_job(job.jobid)
        found = self.moments.get(moment_id)
        if found is None:
            raise ApiError(41060)
        return found

    def publish_moment(self, moment_id: str, userid: str) -> Moment:
        """The executor taps publish: the post reaches their customers (those with one of its
        tags when it has tags)."""
        try:
            moment = self.moment(moment_id)
        except ApiError as exc:
            raise ControlError(f"unknown moment {moment_id!r}") from exc
        entry = moment.executors.get(userid)
        if entry is None:
            raise ControlError(f"{userid!r} is not an executor of {moment_id!r}")
        if moment.canceled:
            raise ControlError("the task was cancelled", 409)
        if entry[0] == 1:
            raise ControlError(f"{userid!r} already published {moment_id!r}", 409)
        entry[0], entry[1] = 1, int(self.now())
        moment.audiences[userid] = [
            r.external_userid
            for r in self.customers_of(userid)
            if r.status in FOLLOWING
            and (not moment.tag_ids or set(moment.tag_ids) & set(r.tag_ids))
        ]
        return moment

    def cancel_moment(self, moment_id: str) -> None:
        self.moment(moment_id).canceled = True
