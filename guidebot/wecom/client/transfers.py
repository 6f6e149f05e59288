"""Handing customers over from one member to another (in post and resigned)."""

from __future__ import annotations

from collections.abc import Sequence

from guidebot.wecom.client.core import ClientCore
from guidebot.wecom.client.results import Page, drop_none

__all__ = ["TransfersApi"]


class TransfersApi(ClientCore):
    """The customer transfer calls of a WeCom client."""

    async def transfer_customer(
        self,
        handover_userid: str,
        takeover_userid: str,
        external_userids: Sequence[str],
        transfer_success_msg: str | None = None,
    ) -> dict[str, int]:
        """``externalcontact/transfer_customer`` (unsafe): ``{external_userid: errcode}``.

        0 means the takeover was started (completes after 24 h unless the customer refuses).
        """
        if not 1 <= len(external_userids) <= 100:
            raise ValueError("transfer_customer takes 1 to 100 external_userids")
        body = drop_none(
            {
                "handover_userid": handover_userid,
                "takeover_userid": takeover_userid,
                "external_userid": list(external_userids),
                "transfer_success_msg": transfer_success_msg,
            }
        )
        answer = await self._call(
            "POST", "externalcontact/transfer_customer", body=body, unsafe=True
        )
        return {c["external_userid"]: int(c.get("errcode", 0)) for c in answer.get("customer", [])}

    async def transfer_result(
        self, handover_userid: str, takeover_userid: str, cursor: str = ""
    ) -> Page:
        """``externalcontact/transfer_result``: one page of ``customer`` (status 1..4)."""
        answer = await self._call(
            "POST",
            "externalcontact/transfer_result",
            body={
                "handover_userid": handover_userid,
                "takeover_userid": takeover_userid,
                "cursor": cursor,
            },
        )
        return Page.of(answer, "customer")

    async def resigned_transfer_customer(
        self, handover_userid: str, takeover_userid: str, external_userids: Sequence[str]
    ) -> dict[str, int]:
        """``externalcontact/resigned/transfer_customer`` (unsafe): ``{external_userid: errcode}``.

        The handover member must have left the corp.
        """
        if not 1 <= len(external_userids) <= 100:
            raise ValueError("resigned_transfer_customer takes 1 to 100 external_userids")
        answer = await self._call(
            "POST",
            "externalcontact/resigned/transfer_customer",
            body={
                "handover_userid": handover_userid,
                "takeover_userid": takeover_userid,
                "external_userid": list(external_userids),
            },
            unsafe=True,
        )
        return {c["external_userid"]: int(c.get("errcode", 0)) for c in answer.get("customer", [])}

    async def resigned_transfer_result(
        self, handover_userid: str, takeover_userid: str, cursor: str = ""
    ) -> Page:
        """``externalcontact/resigned/transfer_result``: one page of ``customer``."""
        answer = await self._call(
            "POST",
            "externalcontact/resigned/transfer_result",
            body={
                "handover_userid": handover_userid,
                "takeover_userid": takeover_userid,
                "cursor": cursor,
            },
        )
        return Page.of(answer, "customer")
