"""Customer groups (客户群), their 「加入群聊」 join ways and the group welcome templates.

The rules are those of doc 93414 (groupchat/list), 96338 (groupchat/get), 99547 / 92229
(join ways), 96357 (入群欢迎语素材) and 96361 (change_external_chat); what the documents leave
open is said where it is chosen. Member changes made here are client actions (a customer scans
a code, the owner removes someone): the control API delivers their callbacks. Changes made
through the API call back nothing (doc 96361).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from ..config import SimulatorConfig
from ..errors import ApiError, ControlError
from ..records import DAY
from .core import StateCore

__all__ = ["GroupsState", "SimGroup"]

JOIN_WAY_CHATS = 5  # doc 99547: 配置客户群进群方式最多只能关联5个群 (41091)
JOIN_WAY_QUOTA = 500_000  # 「加入群聊」 and 「联系我」 together, per corp (doc 99547)
WELCOME_TEMPLATES = 100  # doc 96357: at most 100 templates per corp (41055)
GROUP_SIZE = 500  # a customer group holds 500 people (WeCom's client limit)


@dataclass(slots=True)
class SimGroup:
    chat_id: str
    name: str
    owner: str
    create_time: int
    notice: str = ""
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    admin_list: list[str] = field(default_factory=list)
    member_version: str = ""
    dismissed: bool = False
    dismissed_at: int | None = None


def _version() -> str:
    return secrets.token_hex(16)


class GroupsState(StateCore):
    """Customer groups, join ways and group welcome templates of the simulated corp."""

    def __init__(self, config: SimulatorConfig) -> None:
        super().__init__(config)
        self.groups: dict[str, SimGroup] = {}
        self.join_ways: dict[str, dict[str, Any]] = {}
        self.group_welcome_templates: dict[str, dict[str, Any]] = {}
        # For groupchat/statistic (doc 92133): who joined (+1) and left (-1) when, and the
        # messages people sent in groups (posted through the control API).
        self.group_log: list[tuple[int, str, str, int]] = []
        self.group_messages: list[tuple[int, str, str]] = []

    # ---- who is who ------------------------------------------------------------------------

    def member_type(self, member_id: str) -> int:
        """1 for a corp member (employee), 2 for an external contact; unknown ids refused."""
        if member_id in self.members or member_id in self.resigned:
            return 1
        if member_id in self.customers:
            return 2
        raise ControlError(f"unknown member or customer {member_id!r}")

    def owner_status(self, group: SimGroup) -> int:
        """groupchat/list's status: 0 owner normal, 1 owner resigned (doc 93414)."""
        return 1 if group.owner in self.resigned else 0

    def group(self, chat_id: str) -> SimGroup:
        """A live group for the API. Which errcode an unknown or dismissed chat_id gets is not
        documented (doc 96338); the simulator answers 49008 群已经解散 for a dismissed group
        and 90501 该群不是客户群 for an id it never issued, both from the global table."""
        if not chat_id:
            raise ApiError(40058, "missing chat_id")
        group = self.groups.get(chat_id)
        if group is None:
            raise ApiError(90501)
        if group.dismissed:
            raise ApiError(49008)
        return group

    def _control_group(self, chat_id: str) -> SimGroup:
        group = self.groups.get(chat_id)
        if group is None:
            raise ControlError(f"unknown chat_id {chat_id!r}", 404)
        if group.dismissed:
            raise ControlError(f"group {chat_id!r} is dismissed", 409)
        return group

    # ---- client actions --------------------------------------------------------------------

    def create_group(
        self, owner: str, name: str, members: list[str], chat_id: str | None = None
    ) -> SimGroup:
        """The owner creates a customer group in the client with `members` invited directly."""
        self._control_member(owner)
        chat_id = chat_id or "wr" + secrets.token_hex(11)
        if chat_id in self.groups:
            raise ControlError(f"chat_id {chat_id!r} exists", 409)
        now = int(self.now())
        group = SimGroup(chat_id, name, owner, now, member_version=_version())
        group.members[owner] = self._member_record(owner, now, 1, None, None)
        self.groups[chat_id] = group
        for member_id in members:
            if member_id != owner:
                group.members[member_id] = self._member_record(member_id, now, 1, owner, None)
        self.group_log.extend((now, chat_id, m, 1) for m in group.members)
        return group

    def _member_record(
        self, member_id: str, at: int, scene: int, invitor: str | None, state: str | None
    ) -> dict[str, Any]:
        return {
            "userid": member_id,
            "type": self.member_type(member_id),
            "join_time": at,
            "join_scene": scene,
            "invitor": invitor,
            "group_nickname": "",
            "state": state,
        }

    def join_group(
        self,
        chat_id: str,
        member_ids: list[str],
        *,
        scene: int = 1,
        invitor: str | None = None,
        config_id: str | None = None,
    ) -> tuple[SimGroup, str]:
        """Members join: invited (scene 1), by invite link (2) or by the group QR (3). Through
        a join way (`config_id`) the scene is 3 and each member carries the way's state (doc
        99547). Returns the group and the member version before the change."""
        group = self._control_group(chat_id)
        state: str | None = None
        if config_id is not None:
            way = self.join_ways.get(config_id)
            if way is None or chat_id not in way["chat_id_list"]:
                raise ControlError(f"join way {config_id!r} does not lead to {chat_id!r}")
            scene, state = 3, way["state"] or None
        if scene not in (1, 2, 3):
            raise ControlError("'scene' must be 1, 2 or 3")
        if invitor is not None and scene != 3:
            self.member_type(invitor)
        new = [m for m in dict.fromkeys(member_ids) if m not in group.members]
        if not new:
            raise ControlError("every one of them is already in the group", 409)
        if len(group.members) + len(new) > GROUP_SIZE:
            raise ControlError(f"a customer group holds {GROUP_SIZE} people", 409)
        now = int(self.now())
        for member_id in new:
            # doc 96338: invitor only when the inviter is a member of this corp.
            inviter = invitor if invitor in self.members else None
            group.members[member_id] = self._member_record(
                member_id, now, scene, inviter if scene != 3 else None, state
            )
            self.group_log.append((now, chat_id, member_id, 1))
        last = group.member_version
        group.member_version = _version()
        return group, last

    def leave_group(
        self, chat_id: str, member_ids: list[str], *, removed: bool = False
    ) -> tuple[SimGroup, str]:
        """Members leave (or the owner or an admin removes them); the owner cannot."""
        group = self._control_group(chat_id)
        gone = list(dict.fromkeys(member_ids))
        missing = [m for m in gone if m not in group.members]
        if missing:
            raise ControlError(f"not in the group: {missing}", 409)
        if group.owner in gone:
            raise ControlError("the owner cannot leave; dismiss the group instead", 409)
        for member_id in gone:
            del group.members[member_id]
            self.group_log.append((int(self.now()), chat_id, member_id, -1))
        last = group.member_version
        group.member_version = _version()
        return group, last

    def change_group(
        self,
        chat_id: str,
        *,
        name: str | None = None,
        notice: str | None = None,
        owner: str | None = None,
    ) -> SimGroup:
        group = self._control_group(chat_id)
        if owner is not None:
            self._control_member(owner)
            if owner not in group.members:
                group.members[owner] = self._member_record(owner, int(self.now()), 1, None, None)
                self.group_log.append((int(self.now()), chat_id, owner, 1))
                group.member_version = _version()
            group.owner = owner
        if name is not None:
            group.name = name
        if notice is not None:
            group.notice = notice
        return group

    def dismiss_group(self, chat_id: str) -> SimGroup:
        group = self._control_group(chat_id)
        group.dismissed, group.dismissed_at = True, int(self.now())
        return group

    # ---- group chat statistics (groupchat/statistic, doc 92133) -----------------------------

    def post_group_messages(self, chat_id: str, sender: str, count: int) -> None:
        """Someone in the group sends `count` messages (the control API's stand-in for chat)."""
        group = self._control_group(chat_id)
        if sender not in group.members:
            raise ControlError(f"{sender!r} is not in the group", 409)
        if not 1 <= count <= 1000:
            raise ControlError("'count' must be 1-1000")
        now = int(self.now())
        self.group_messages.extend((now, chat_id, sender) for _ in range(count))

    def group_day_figures(self, owners: set[str], day: int) -> dict[str, int]:
        """Doc 92133's figures of the owners' groups for the China day starting at `day`: the
        new_* counts that day, the others as of the day's end ("截至当天"). A group counts for
        its owner now (the simulator keeps no owner history)."""
        end = day + DAY
        mine = {
            g.chat_id: g for g in self.groups.values() if g.owner in owners and g.create_time < end
        }
        alive = {
            chat_id
            for chat_id, g in mine.items()
            if g.dismissed_at is None or g.dismissed_at >= end
        }
        joined = sum(
            1
            for at, chat_id, _, change in self.group_log
            if chat_id in mine and change > 0 and day <= at < end
        )
        members = sum(
            change for at, chat_id, _, change in self.group_log if chat_id in alive and at < end
        )
        said = [
            (chat_id, who)
            for at, chat_id, who in self.group_messages
            if chat_id in alive and at < end
        ]
        return {
            "new_chat_cnt": sum(1 for g in mine.values() if g.create_time >= day),
            "chat_total": len(alive),
            "chat_has_msg": len({chat_id for chat_id, _ in said}),
            "new_member_cnt": joined,
            "member_total": members,
            "member_has_msg": len(set(said)),
            "msg_total": len(said),
        }
