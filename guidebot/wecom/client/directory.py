"""WeCom's address book: departments and members (department/list, user/list, user/get), and
the app itself (agent/get)."""

from __future__ import annotations

from typing import Any

from guidebot.wecom.client.core import ClientCore

__all__ = ["DirectoryApi"]


class DirectoryApi(ClientCore):
    """The address book calls of a WeCom client."""

    async def department_list(self, department_id: int | None = None) -> list[dict[str, Any]]:
        """``department/list``: the department and its children (all when no id)."""
        answer = await self._call("GET", "department/list", params={"id": department_id})
        return list(answer.get("department", []))

    async def user_list(
        self, department_id: int, fetch_child: bool = False
    ) -> list[dict[str, Any]]:
        """``user/list``: members of a department (and its children with ``fetch_child``)."""
        answer = await self._call(
            "GET",
            "user/list",
            params={"department_id": department_id, "fetch_child": 1 if fetch_child else 0},
        )
        return list(answer.get("userlist", []))

    async def user_get(self, userid: str) -> dict[str, Any]:
        """``user/get``: one member's record (the answer minus errcode/errmsg)."""
        answer = await self._call("GET", "user/get", params={"userid": userid})
        return {k: v for k, v in answer.items() if k not in ("errcode", "errmsg")}

    async def agent_get(self) -> dict[str, Any]:
        """``agent/get`` for this client's own app (doc 90227): its name, visible range
        (``allow_partys``, ``allow_userinfos``) and ``redirect_domain``, the 可信域名."""
        answer = await self._call("GET", "agent/get", params={"agentid": self.agent_id})
        return {k: v for k, v in answer.items() if k not in ("errcode", "errmsg")}
