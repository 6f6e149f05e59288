"""Mass sends (群发): the tasks a guide confirms, and reading back what was sent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from guidebot.wecom.client.core import ClientCore
from guidebot.wecom.client.results import MsgTemplateResult, Page, drop_none, epoch, walk_pages

__all__ = ["GroupMsgApi"]


class GroupMsgApi(ClientCore):
    """The mass-send calls of a WeCom client."""

    async def add_msg_template(
        self,
        *,
        external_userids: Sequence[str] = (),
        sender: str | None = None,
        text: str | None = None,
        attachments: Sequence[Mapping[str, Any]] = (),
        chat_type: Literal["single", "group"] = "single",
        chat_ids: Sequence[str] = (),
        tag_filter: Mapping[str, Any] | None = None,
        allow_select: bool | None = None,
    ) -> MsgTemplateResult:
        """``externalcontact/add_msg_template`` (unsafe): creates a mass-send task the guide
        confirms. Returns the task's msgid and the ids WeCom could not send to."""
        if not text and not attachments:
            raise ValueError("add_msg_template needs text or attachments")
        if len(attachments) > 9:
            raise ValueError("at most 9 attachments")
        if len(external_userids) > 10_000:
            raise ValueError("at most 10 000 external_userids")
        if chat_type == "group" and not sender:
            raise ValueError("chat_type 'group' needs a sender")
        body: dict[str, Any] = {"chat_type": chat_type}
        if external_userids:
            body["external_userid"] = list(external_userids)
        if chat_ids:
            body["chat_id_list"] = list(chat_ids)
        if tag_filter is not None:
            body["tag_filter"] = dict(tag_filter)
        if sender:
            body["sender"] = sender
        if allow_select is not None:
            body["allow_select"] = allow_select
        if text:
            body["text"] = {"content": text}
        if attachments:
            body["attachments"] = [dict(a) for a in attachments]
        answer = await self._call(
            "POST", "externalcontact/add_msg_template", body=body, unsafe=True
        )
        return MsgTemplateResult(str(answer.get("msgid", "")), tuple(answer.get("fail_list") or ()))

    async def get_groupmsg_list_v2(
        self,
        *,
        start_time: int | datetime,
        end_time: int | datetime,
        chat_type: Literal["single", "group"] = "single",
        creator: str | None = None,
        filter_type: int = 2,
        limit: int = 50,
        cursor: str = "",
    ) -> Page:
        """``externalcontact/get_groupmsg_list_v2``: one page of ``group_msg_list``."""
        body = drop_none(
            {
                "chat_type": chat_type,
                "start_time": epoch(start_time),
                "end_time": epoch(end_time),
                "creator": creator,
                "filter_type": filter_type,
                "limit": limit,
                "cursor": cursor,
            }
        )
        answer = await self._call("POST", "externalcontact/get_groupmsg_list_v2", body=body)
        return Page.of(answer, "group_msg_list")

    def iter_groupmsg_list_v2(self, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        """Every ``group_msg_list`` item, walking all pages (same arguments, minus cursor)."""
        return walk_pages(lambda cursor: self.get_groupmsg_list_v2(**kwargs, cursor=cursor))

    async def get_groupmsg_task(self, msgid: str, limit: int = 500, cursor: str = "") -> Page:
        """``externalcontact/get_groupmsg_task``: one page of ``task_list`` (status 0/2)."""
        answer = await self._call(
            "POST",
            "externalcontact/get_groupmsg_task",
            body={"msgid": msgid, "limit": limit, "cursor": cursor},
        )
        return Page.of(answer, "task_list")

    def iter_groupmsg_task(self, msgid: str, limit: int = 500) -> AsyncIterator[dict[str, Any]]:
        return walk_pages(lambda cursor: self.get_groupmsg_task(msgid, limit, cursor))

    async def get_groupmsg_send_result(
        self, msgid: str, userid: str, limit: int = 500, cursor: str = ""
    ) -> Page:
        """``externalcontact/get_groupmsg_send_result``: one page of ``send_list``
        (status 0 unsent, 1 sent, 2 not a friend, 3 recipient cap reached)."""
        answer = await self._call(
            "POST",
            "externalcontact/get_groupmsg_send_result",
            body={"msgid": msgid, "userid": userid, "limit": limit, "cursor": cursor},
        )
        return Page.of(answer, "send_list")

    def iter_groupmsg_send_result(
        self, msgid: str, userid: str, limit: int = 500
    ) -> AsyncIterator[dict[str, Any]]:
        return walk_pages(
            lambda cursor: self.get_groupmsg_send_result(msgid, userid, limit, cursor)
        )

    async def remind_groupmsg_send(self, msgid: str) -> None:
        """``externalcontact/remind_groupmsg_send`` (≤3 per msgid per 24 h)."""
        await self._call("POST", "externalcontact/remind_groupmsg_send", body={"msgid": msgid})

    async def cancel_groupmsg_send(self, msgid: str) -> None:
        """``externalcontact/cancel_groupmsg_send``."""
        await self._call("POST", "externalcontact/cancel_groupmsg_send", body={"msgid": msgid})
