"""Customers (external contacts): profiles, who follows whom, and each member's daily figures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from guidebot.wecom.client.core import ClientCore, Deadline
from guidebot.wecom.client.results import Page, epoch, walk_pages
from guidebot.wecom.scheduler import Priority

__all__ = ["ContactsApi"]

USER_BEHAVIOR_MAX_USERS = 100
USER_BEHAVIOR_MAX_SPAN = 30 * 86_400


class ContactsApi(ClientCore):
    """The external contact calls of a WeCom client."""

    async def get_external_contact(
        self,
        external_userid: str,
        *,
        priority: Priority | None = None,
        deadline: Deadline = None,
    ) -> dict[str, Any]:
        """``externalcontact/get``: ``{"external_contact": {...}, "follow_user": [...]}``.

        Follows ``next_cursor`` until every follow_user is collected (WeCom pages beyond 500).
        BACKGROUND unless ``priority`` says otherwise; ``deadline`` bounds every page.
        """
        params: dict[str, Any] = {"external_userid": external_userid}
        when = {"priority": priority, "deadline": deadline}
        answer = await self._call("GET", "externalcontact/get", params=params, **when)
        contact = answer.get("external_contact", {})
        follow_users = list(answer.get("follow_user", []))
        seen: set[str] = set()
        cursor = answer.get("next_cursor") or ""
        while cursor and cursor not in seen:
            seen.add(cursor)
            page = await self._call(
                "GET", "externalcontact/get", params={**params, "cursor": cursor}, **when
            )
            follow_users.extend(page.get("follow_user", []))
            cursor = page.get("next_cursor") or ""
        return {"external_contact": contact, "follow_user": follow_users}

    async def list_external_contacts(self, userid: str) -> list[str]:
        """``externalcontact/list``: the external_userids of one member's customers."""
        answer = await self._call("GET", "externalcontact/list", params={"userid": userid})
        return list(answer.get("external_userid", []))

    async def batch_get_by_user(
        self, userids: Sequence[str], cursor: str = "", limit: int = 100
    ) -> Page:
        """``externalcontact/batch/get_by_user``: one page of ``external_contact_list`` items.

        Each item is ``{"external_contact": {...}, "follow_info": {...}}``.
        """
        userids = [userids] if isinstance(userids, str) else list(userids)
        if not 1 <= len(userids) <= 100:
            raise ValueError("batch_get_by_user takes 1 to 100 userids")
        if not 1 <= limit <= 100:
            raise ValueError("limit must be 1..100")
        answer = await self._call(
            "POST",
            "externalcontact/batch/get_by_user",
            body={"userid_list": userids, "cursor": cursor, "limit": limit},
        )
        return Page.of(answer, "external_contact_list")

    def iter_batch_get_by_user(
        self, userids: Sequence[str], limit: int = 100
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item of ``batch_get_by_user``, walking all pages."""
        return walk_pages(lambda cursor: self.batch_get_by_user(userids, cursor, limit))

    async def get_follow_user_list(self) -> list[str]:
        """``externalcontact/get_follow_user_list``: members with customer contact enabled."""
        answer = await self._call("GET", "externalcontact/get_follow_user_list")
        return list(answer.get("follow_user", []))

    async def get_user_behavior_data(
        self,
        userids: Sequence[str],
        start_time: int | datetime,
        end_time: int | datetime,
        partyids: Sequence[int] = (),
    ) -> list[dict[str, Any]]:
        """``externalcontact/get_user_behavior_data``: ``behavior_data`` per day.

        Several userids give aggregate totals. Checked here: ≤100 userids and ≤100 partyids,
        not both empty, start ≤ end, span ≤ 30 days (ValueError otherwise).
        """
        userids = [userids] if isinstance(userids, str) else list(userids)
        start, end = epoch(start_time), epoch(end_time)
        if not userids and not partyids:
            raise ValueError("get_user_behavior_data needs userids or partyids")
        if len(userids) > USER_BEHAVIOR_MAX_USERS or len(partyids) > USER_BEHAVIOR_MAX_USERS:
            raise ValueError("get_user_behavior_data takes at most 100 userids and 100 partyids")
        if end < start:
            raise ValueError("end_time is before start_time")
        if end - start > USER_BEHAVIOR_MAX_SPAN:
            raise ValueError("get_user_behavior_data spans at most 30 days")
        body: dict[str, Any] = {"start_time": start, "end_time": end}
        if userids:
            body["userid"] = userids
        if partyids:
            body["partyid"] = list(partyids)
        answer = await self._call("POST", "externalcontact/get_user_behavior_data", body=body)
        return list(answer.get("behavior_data", []))
