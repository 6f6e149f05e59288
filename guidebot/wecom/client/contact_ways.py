"""Contact ways (联系我): the QR codes and buttons a customer adds a guide through."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from guidebot.wecom.client.core import ClientCore
from guidebot.wecom.client.results import ContactWay, Page, drop_none, epoch

__all__ = ["ContactWaysApi"]


class ContactWaysApi(ClientCore):
    """The contact way calls of a WeCom client."""

    async def add_contact_way(
        self,
        *,
        type: Literal[1, 2],
        scene: Literal[1, 2],
        users: Sequence[str] = (),
        parties: Sequence[int] = (),
        state: str | None = None,
        remark: str | None = None,
        skip_verify: bool | None = None,
        style: int | None = None,
        **extra: Any,
    ) -> ContactWay:
        """``externalcontact/add_contact_way`` (unsafe: creates). Persist ``config_id``.

        ``extra`` passes further WeCom fields (is_temp, expires_in, conclusions, ...).
        """
        if state is not None and len(state) > 30:
            raise ValueError("state is at most 30 characters")
        if not users and not parties:
            raise ValueError("add_contact_way needs users or parties")
        body = drop_none(
            {
                "type": type,
                "scene": scene,
                "style": style,
                "remark": remark,
                "skip_verify": skip_verify,
                "state": state,
                "user": list(users) or None,
                "party": list(parties) or None,
                **extra,
            }
        )
        answer = await self._call("POST", "externalcontact/add_contact_way", body=body, unsafe=True)
        return ContactWay(str(answer.get("config_id", "")), answer.get("qr_code"))

    async def get_contact_way(self, config_id: str) -> dict[str, Any]:
        """``externalcontact/get_contact_way``: the ``contact_way`` record."""
        answer = await self._call(
            "POST", "externalcontact/get_contact_way", body={"config_id": config_id}
        )
        return dict(answer.get("contact_way", {}))

    async def update_contact_way(self, config_id: str, **fields: Any) -> None:
        """``externalcontact/update_contact_way`` (idempotent): the given fields replace."""
        if "state" in fields and fields["state"] is not None and len(fields["state"]) > 30:
            raise ValueError("state is at most 30 characters")
        await self._call(
            "POST",
            "externalcontact/update_contact_way",
            body={"config_id": config_id, **drop_none(fields)},
        )

    async def del_contact_way(self, config_id: str) -> None:
        """``externalcontact/del_contact_way``."""
        await self._call("POST", "externalcontact/del_contact_way", body={"config_id": config_id})

    async def list_contact_way(
        self,
        *,
        start_time: int | datetime | None = None,
        end_time: int | datetime | None = None,
        cursor: str = "",
        limit: int = 100,
    ) -> Page:
        """``externalcontact/list_contact_way``: one page of ``[{"config_id"}]``."""
        body = drop_none(
            {
                "start_time": epoch(start_time) if start_time is not None else None,
                "end_time": epoch(end_time) if end_time is not None else None,
                "cursor": cursor or None,
                "limit": limit,
            }
        )
        answer = await self._call("POST", "externalcontact/list_contact_way", body=body)
        return Page.of(answer, "contact_way")
