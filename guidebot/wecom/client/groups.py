"""Customer groups (客户群): the list and each group's detail (doc 93414, 96338), the
「加入群聊」 join ways (doc 99547) and the group welcome templates (doc 96357)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal

from guidebot.wecom.client.core import ClientCore
from guidebot.wecom.client.results import Page, drop_none, walk_pages

__all__ = ["GroupsApi"]

JOIN_WAY_CHATS = 5  # doc 99547: a join way links at most 5 groups (41091)
STATE_MAX = 30  # doc 99547: state ≤ 30 characters
OWNER_FILTER_MAX = 100  # doc 93414: owner_filter.userid_list ≤ 100


class GroupsApi(ClientCore):
    """The customer-group calls of a WeCom client."""

    async def groupchat_list(
        self,
        *,
        limit: int = 1000,
        cursor: str = "",
        status_filter: int = 0,
        owners: Sequence[str] = (),
    ) -> Page:
        """``externalcontact/groupchat/list``: one page of ``[{"chat_id", "status"}]``.

        Without ``owners`` WeCom walks the app's visible range (81017 when it holds more than
        1000 people) and leaves out the groups of owners who left the corp."""
        if not 1 <= limit <= 1000:
            raise ValueError("limit is 1-1000")
        if len(owners) > OWNER_FILTER_MAX:
            raise ValueError(f"at most {OWNER_FILTER_MAX} owners per call")
        body: dict[str, Any] = {"limit": limit}
        if status_filter:
            body["status_filter"] = status_filter
        if owners:
            body["owner_filter"] = {"userid_list": list(owners)}
        if cursor:
            body["cursor"] = cursor
        answer = await self._call("POST", "externalcontact/groupchat/list", body=body)
        return Page.of(answer, "group_chat_list")

    def iter_groupchat_list(self, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        """Every listed group, walking all pages (same arguments, minus cursor)."""
        return walk_pages(lambda cursor: self.groupchat_list(**kwargs, cursor=cursor))

    async def groupchat_get(self, chat_id: str, *, need_name: bool = True) -> dict[str, Any]:
        """``externalcontact/groupchat/get``: the ``group_chat`` object (members, owner, ...)."""
        answer = await self._call(
            "POST",
            "externalcontact/groupchat/get",
            body={"chat_id": chat_id, "need_name": 1 if need_name else 0},
        )
        return dict(answer.get("group_chat", {}))

    async def groupchat_statistic_by_day(
        self, owner: str, day_begin_time: int, day_end_time: int
    ) -> list[dict[str, Any]]:
        """``externalcontact/groupchat/statistic_group_by_day`` (doc 92133) for one owner:
        ``[{"stat_time", "data": {new_chat_cnt, chat_total, ...}}]`` per China day. Several
        owners would come back summed, so this asks for one. WeCom answers for yesterday back
        to 180 days, at most 30 days a call (600018 otherwise)."""
        if day_end_time < day_begin_time:
            raise ValueError("day_end_time is before day_begin_time")
        if day_end_time - day_begin_time > 29 * 86_400:
            raise ValueError("groupchat statistics span at most 30 days")
        answer = await self._call(
            "POST",
            "externalcontact/groupchat/statistic_group_by_day",
            body={
                "day_begin_time": day_begin_time,
                "day_end_time": day_end_time,
                "owner_filter": {"userid_list": [owner]},
            },
        )
        return list(answer.get("items", []))

    async def groupchat_statistic(
        self, owners: Sequence[str], day_begin_time: int, day_end_time: int, **paging: int
    ) -> dict[str, Any]:
        """``externalcontact/groupchat/statistic`` (doc 92133): by owner, ``total``,
        ``next_offset`` (done when it equals total) and ``items`` of ``{"owner", "data"}``;
        ``paging``: order_by, order_asc, offset, limit."""
        if not 1 <= len(owners) <= OWNER_FILTER_MAX:
            raise ValueError(f"1-{OWNER_FILTER_MAX} owners per call")
        body: dict[str, Any] = {
            "day_begin_time": day_begin_time,
            "day_end_time": day_end_time,
            "owner_filter": {"userid_list": list(owners)},
            **paging,
        }
        return dict(await self._call("POST", "externalcontact/groupchat/statistic", body=body))

    # ---- join ways -------------------------------------------------------------------------

    async def add_join_way(
        self,
        *,
        scene: Literal[1, 2],
        chat_ids: Sequence[str],
        state: str | None = None,
        remark: str | None = None,
        auto_create_room: bool | None = None,
        room_base_name: str | None = None,
        room_base_id: int | None = None,
    ) -> str:
        """``externalcontact/groupchat/add_join_way`` (unsafe: creates). The config_id."""
        _check_join_way(chat_ids, state)
        body = drop_none(
            {
                "scene": scene,
                "remark": remark,
                "auto_create_room": None if auto_create_room is None else int(auto_create_room),
                "room_base_name": room_base_name,
                "room_base_id": room_base_id,
                "chat_id_list": list(chat_ids),
                "state": state,
            }
        )
        answer = await self._call(
            "POST", "externalcontact/groupchat/add_join_way", body=body, unsafe=True
        )
        return str(answer.get("config_id", ""))

    async def get_join_way(self, config_id: str) -> dict[str, Any]:
        """``externalcontact/groupchat/get_join_way``: the ``join_way`` (qr_code for scene 2)."""
        answer = await self._call(
            "POST", "externalcontact/groupchat/get_join_way", body={"config_id": config_id}
        )
        return dict(answer.get("join_way", {}))

    async def del_join_way(self, config_id: str) -> None:
        """``externalcontact/groupchat/del_join_way``."""
        await self._call(
            "POST", "externalcontact/groupchat/del_join_way", body={"config_id": config_id}
        )

    # ---- group welcome templates -----------------------------------------------------------

    async def add_group_welcome_template(
        self, content: Mapping[str, Any], *, notify: bool = False
    ) -> str:
        """``externalcontact/group_welcome_template/add`` (unsafe: creates): the template_id.
        `content` holds WeCom's blocks (text, image, link, miniprogram, file, video)."""
        body = {**content, "notify": 1 if notify else 0}
        answer = await self._call(
            "POST", "externalcontact/group_welcome_template/add", body=body, unsafe=True
        )
        return str(answer.get("template_id", ""))

    async def edit_group_welcome_template(
        self, template_id: str, content: Mapping[str, Any]
    ) -> None:
        """``externalcontact/group_welcome_template/edit``: the given blocks replace."""
        await self._call(
            "POST",
            "externalcontact/group_welcome_template/edit",
            body={"template_id": template_id, **content},
        )

    async def get_group_welcome_template(self, template_id: str) -> dict[str, Any]:
        """``externalcontact/group_welcome_template/get``: the blocks (image as pic_url)."""
        answer = await self._call(
            "POST",
            "externalcontact/group_welcome_template/get",
            body={"template_id": template_id},
        )
        return {k: v for k, v in answer.items() if k not in ("errcode", "errmsg")}

    async def del_group_welcome_template(self, template_id: str) -> None:
        """``externalcontact/group_welcome_template/del``."""
        await self._call(
            "POST",
            "externalcontact/group_welcome_template/del",
            body={"template_id": template_id},
        )


def _check_join_way(chat_ids: Sequence[str], state: str | None) -> None:
    if not chat_ids:
        raise ValueError("a join way needs at least one group")
    if len(chat_ids) > JOIN_WAY_CHATS:
        raise ValueError(f"a join way links at most {JOIN_WAY_CHATS} groups")
    if state is not None and len(state) > STATE_MAX:
        raise ValueError(f"state is at most {STATE_MAX} characters")
