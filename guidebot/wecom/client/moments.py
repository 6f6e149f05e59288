"""Moments (客户朋友圈, 企业发表): the tasks guides publish, and who published them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from guidebot.wecom.client.core import ClientCore
from guidebot.wecom.client.results import Page, drop_none, epoch, walk_pages

__all__ = ["MomentJobResult", "MomentsApi"]


@dataclass(frozen=True, slots=True)
class MomentJobResult:
    """get_moment_task_result: status 1 started, 2 in progress, 3 finished (then moment_id,
    or errcode ≠ 0 when the job failed)."""

    status: int
    moment_id: str | None
    errcode: int
    invalid_users: tuple[str, ...]


class MomentsApi(ClientCore):
    """The Moments calls of a WeCom client."""

    async def add_moment_task(
        self,
        *,
        text: str | None = None,
        attachments: Sequence[Mapping[str, Any]] = (),
        users: Sequence[str] | None = None,
        departments: Sequence[int] = (),
        tag_ids: Sequence[str] = (),
    ) -> str:
        """``externalcontact/add_moment_task`` (unsafe): a 企业发表 task each executor
        publishes in the client. Asynchronous: returns the jobid (valid 24 h)."""
        if not text and not attachments:
            raise ValueError("add_moment_task needs text or attachments")
        if text is not None and len(text) > 2000:
            raise ValueError("text is at most 2000 characters")
        body: dict[str, Any] = {}
        if text:
            body["text"] = {"content": text}
        if attachments:
            body["attachments"] = [dict(a) for a in attachments]
        senders = drop_none(
            {
                "user_list": list(users) if users is not None else None,
                "department_list": list(departments) or None,
            }
        )
        visible: dict[str, Any] = {}
        if senders:
            visible["sender_list"] = senders
        if tag_ids:
            visible["external_contact_list"] = {"tag_list": list(tag_ids)}
        if visible:
            body["visible_range"] = visible
        answer = await self._call("POST", "externalcontact/add_moment_task", body=body, unsafe=True)
        return str(answer.get("jobid", ""))

    async def get_moment_task_result(self, jobid: str) -> MomentJobResult:
        """``externalcontact/get_moment_task_result`` (GET, ?jobid=)."""
        answer = await self._call(
            "GET", "externalcontact/get_moment_task_result", params={"jobid": jobid}
        )
        result = answer.get("result") or {}
        invalid = (result.get("invalid_sender_list") or {}).get("user_list") or ()
        return MomentJobResult(
            status=int(answer.get("status") or 0),
            moment_id=result.get("moment_id") or None,
            errcode=int(result.get("errcode") or 0),
            invalid_users=tuple(invalid),
        )

    async def cancel_moment_task(self, moment_id: str) -> None:
        """``externalcontact/cancel_moment_task``: stops the executors who have not
        published."""
        await self._call(
            "POST", "externalcontact/cancel_moment_task", body={"moment_id": moment_id}
        )

    async def get_moment_task(self, moment_id: str, limit: int = 500, cursor: str = "") -> Page:
        """``externalcontact/get_moment_task``: one page of ``task_list`` ({userid,
        publish_status 0/1})."""
        answer = await self._call(
            "POST",
            "externalcontact/get_moment_task",
            body={"moment_id": moment_id, "limit": limit, "cursor": cursor},
        )
        return Page.of(answer, "task_list")

    def iter_moment_task(self, moment_id: str, limit: int = 500) -> AsyncIterator[dict[str, Any]]:
        return walk_pages(lambda cursor: self.get_moment_task(moment_id, limit, cursor))

    async def get_moment_customer_list(
        self, moment_id: str, userid: str, limit: int = 500, cursor: str = ""
    ) -> Page:
        """``externalcontact/get_moment_customer_list``: the customers an executor's post was
        shown to."""
        answer = await self._call(
            "POST",
            "externalcontact/get_moment_customer_list",
            body={"moment_id": moment_id, "userid": userid, "limit": limit, "cursor": cursor},
        )
        return Page.of(answer, "customer_list")

    def iter_moment_customer_list(
        self, moment_id: str, userid: str, limit: int = 500
    ) -> AsyncIterator[dict[str, Any]]:
        return walk_pages(
            lambda cursor: self.get_moment_customer_list(moment_id, userid, limit, cursor)
        )

    async def get_moment_list(
        self,
        *,
        start_time: int | datetime,
        end_time: int | datetime,
        creator: str | None = None,
        filter_type: int = 2,
        limit: int = 20,
        cursor: str = "",
    ) -> Page:
        """``externalcontact/get_moment_list``: one page of ``moment_list`` (≤30 days)."""
        body = drop_none(
            {
                "start_time": epoch(start_time),
                "end_time": epoch(end_time),
                "creator": creator,
                "filter_type": filter_type,
                "limit": limit,
                "cursor": cursor,
            }
        )
        answer = await self._call("POST", "externalcontact/get_moment_list", body=body)
        return Page.of(answer, "moment_list")
