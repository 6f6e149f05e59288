"""Messages: the welcome to a new customer, and app messages to members."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from guidebot.wecom.client.core import ClientCore, Deadline
from guidebot.wecom.client.results import AppMessageResult, drop_none, pipe_joined, pipe_split
from guidebot.wecom.scheduler import Priority

__all__ = ["MessagesApi"]


class MessagesApi(ClientCore):
    """The message calls of a WeCom client."""

    async def send_welcome_msg(
        self,
        welcome_code: str,
        text: str | None = None,
        attachments: Sequence[Mapping[str, Any]] = (),
        *,
        deadline: Deadline = None,
    ) -> None:
        """``externalcontact/send_welcome_msg`` (unsafe: at most once), URGENT.

        41051 = already sent (stop); 41096 = another app is sending (the caller may retry within
        the 20 s window); :class:`WeComUncertain` = may have been sent. Pass the code's expiry as
        ``deadline``: a welcome that can no longer be made in time is not sent
        (:class:`WeComDeadlineExceeded`).
        """
        if not text and not attachments:
            raise ValueError("send_welcome_msg needs text or attachments")
        if len(attachments) > 9:
            raise ValueError("at most 9 attachments")
        body: dict[str, Any] = {"welcome_code": welcome_code}
        if text:
            body["text"] = {"content": text}
        if attachments:
            body["attachments"] = [dict(a) for a in attachments]
        await self._call(
            "POST", "externalcontact/send_welcome_msg", body=body, unsafe=True, deadline=deadline
        )

    async def send_app_message(
        self,
        touser: str | Iterable[str] | None,
        msgtype: str,
        payload: Mapping[str, Any],
        *,
        toparty: str | Iterable[str] | None = None,
        totag: str | Iterable[str] | None = None,
        safe: bool | None = None,
        enable_duplicate_check: bool | None = None,
        duplicate_check_interval: int | None = None,
        at_least_once: bool = False,
        priority: Priority | None = None,
        deadline: Deadline = None,
    ) -> AppMessageResult:
        """``message/send`` from this app (agentid filled in); ``payload`` is the msgtype's object.

        Unsafe by default (:class:`WeComUncertain` when the outcome is unknown);
        ``at_least_once=True`` retries like a safe call, for reminders where a duplicate is fine.
        Partly invalid recipients still send (see ``invaliduser``); all invalid → 81013.
        BACKGROUND (reminders) unless ``priority`` says otherwise (a reply a guide waits for).
        """
        if touser is None and toparty is None and totag is None:
            raise ValueError("send_app_message needs touser, toparty or totag")
        body = drop_none(
            {
                "touser": pipe_joined(touser),
                "toparty": pipe_joined(toparty),
                "totag": pipe_joined(totag),
                "msgtype": msgtype,
                "agentid": self.agent_id,
                msgtype: dict(payload),
                "safe": (1 if safe else 0) if safe is not None else None,
                "enable_duplicate_check": (
                    (1 if enable_duplicate_check else 0)
                    if enable_duplicate_check is not None
                    else None
                ),
                "duplicate_check_interval": duplicate_check_interval,
            }
        )
        answer = await self._call(
            "POST",
            "message/send",
            body=body,
            unsafe=not at_least_once,
            priority=priority,
            deadline=deadline,
        )
        return AppMessageResult(
            msgid=answer.get("msgid"),
            invaliduser=pipe_split(answer.get("invaliduser")),
            invalidparty=pipe_split(answer.get("invalidparty")),
            invalidtag=pipe_split(answer.get("invalidtag")),
            unlicenseduser=pipe_split(answer.get("unlicenseduser")),
            response_code=answer.get("response_code"),
        )

    async def send_text(
        self, touser: str | Iterable[str], content: str, **options: Any
    ) -> AppMessageResult:
        """A text app message (≤2048 bytes)."""
        return await self.send_app_message(touser, "text", {"content": content}, **options)

    async def send_textcard(
        self,
        touser: str | Iterable[str],
        title: str,
        description: str,
        url: str,
        btntxt: str = "详情",
        **options: Any,
    ) -> AppMessageResult:
        """A textcard app message (title ≤128 B, description ≤512 B)."""
        payload = {"title": title, "description": description, "url": url, "btntxt": btntxt}
        return await self.send_app_message(touser, "textcard", payload, **options)

    async def send_news(
        self, touser: str | Iterable[str], articles: Sequence[Mapping[str, Any]], **options: Any
    ) -> AppMessageResult:
        """A news app message with 1–8 articles ``{"title","description","url","picurl"}``."""
        if not 1 <= len(articles) <= 8:
            raise ValueError("news takes 1 to 8 articles")
        payload = {"articles": [dict(a) for a in articles]}
        return await self.send_app_message(touser, "news", payload, **options)
