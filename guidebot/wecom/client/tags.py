"""Customer tags (the corp's tag library and marking a customer) and remarks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from guidebot.wecom.client.core import ClientCore, Deadline
from guidebot.wecom.client.results import drop_none
from guidebot.wecom.scheduler import Priority

__all__ = ["TagsApi"]


class TagsApi(ClientCore):
    """The tag and remark calls of a WeCom client."""

    async def mark_tag(
        self,
        userid: str,
        external_userid: str,
        add_tag: Sequence[str] = (),
        remove_tag: Sequence[str] = (),
        *,
        priority: Priority | None = None,
        deadline: Deadline = None,
    ) -> None:
        """``externalcontact/mark_tag`` (idempotent; BACKGROUND unless ``priority`` says)."""
        if not add_tag and not remove_tag:
            raise ValueError("mark_tag needs add_tag or remove_tag")
        await self._call(
            "POST",
            "externalcontact/mark_tag",
            body={
                "userid": userid,
                "external_userid": external_userid,
                "add_tag": list(add_tag),
                "remove_tag": list(remove_tag),
            },
            priority=priority,
            deadline=deadline,
        )

    async def get_corp_tag_list(
        self, tag_ids: Sequence[str] = (), group_ids: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """``externalcontact/get_corp_tag_list``: ``tag_group`` list (all when both empty)."""
        body: dict[str, Any] = {}
        if tag_ids:
            body["tag_id"] = list(tag_ids)
        if group_ids:
            body["group_id"] = list(group_ids)
        answer = await self._call("POST", "externalcontact/get_corp_tag_list", body=body)
        return list(answer.get("tag_group", []))

    async def add_corp_tag(
        self,
        tags: Sequence[Mapping[str, Any]],
        *,
        group_id: str | None = None,
        group_name: str | None = None,
        order: int | None = None,
    ) -> dict[str, Any]:
        """``externalcontact/add_corp_tag`` (unsafe: creates). ``tags``: ``[{"name", "order"?}]``.

        Returns the created ``tag_group`` with the new tag ids.
        """
        if not tags:
            raise ValueError("add_corp_tag needs at least one tag")
        if group_id is None and group_name is None:
            raise ValueError("add_corp_tag needs group_id or group_name")
        body = drop_none(
            {
                "group_id": group_id,
                "group_name": group_name,
                "order": order,
                "tag": [dict(t) for t in tags],
            }
        )
        answer = await self._call("POST", "externalcontact/add_corp_tag", body=body, unsafe=True)
        return dict(answer.get("tag_group", {}))

    async def remark(
        self,
        userid: str,
        external_userid: str,
        *,
        remark: str | None = None,
        description: str | None = None,
        remark_company: str | None = None,
        remark_mobiles: Sequence[str] | None = None,
        remark_pic_mediaid: str | None = None,
    ) -> None:
        """``externalcontact/remark`` (idempotent); ``remark_mobiles=[""]`` clears the mobiles."""
        fields = drop_none(
            {
                "remark": remark,
                "description": description,
                "remark_company": remark_company,
                "remark_mobiles": list(remark_mobiles) if remark_mobiles is not None else None,
                "remark_pic_mediaid": remark_pic_mediaid,
            }
        )
        if not fields:
            raise ValueError("remark needs at least one field")
        await self._call(
            "POST",
            "externalcontact/remark",
            body={"userid": userid, "external_userid": external_userid, **fields},
        )
