"""Each member's contact figures (联系客户统计, doc 92132 获取「联系客户统计」数据).

The figures come from what the simulated corp has seen: adds and deletions (`contact_log`)
and the one-to-one chat messages between members and customers (`chat_log`): messages a test
posts to /_sim/chats, the welcomes members sent (send_welcome_msg) and the mass messages
they confirmed. Doc 92132's fields, per China day:

* chat_cnt: one-to-one chats in which the member sent at least one message;
* message_cnt: the messages the member sent in one-to-one chats;
* reply_percentage: of the chats the customer started that day (the day's first message of
  the pair is the customer's), the share (in %, a float) the member answered the same day;
  only when there was such a chat ("仅在确有聊天时返回");
* avg_reply_time: the first replies' total time over the chats answered, in minutes; only
  when a chat was answered (an average of nothing is not returned);
* negative_feedback_cnt: customers who deleted the member; new_contact_cnt: new customers;
  new_apply_cnt: requests the member sent (the simulator's members send none).

Several members are summed as one ("获取这些成员总体的联系客户数据"): counts add, and the
percentage and the average are taken over all their chats together.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..errors import ControlError
from ..records import ACTIVE, DAY, day_start
from .core import StateCore

__all__ = ["StatsState"]

MEMBER, CUSTOMER = "member", "customer"


class _Day:
    """One China day's chat tally for the members asked about."""

    __slots__ = ("answered", "chats", "messages", "reply_seconds", "started")

    def __init__(self) -> None:
        self.chats = self.messages = self.started = self.answered = 0
        self.reply_seconds = 0.0


class StatsState(StateCore):
    """Contact statistics."""

    def post_chat(self, userid: str, external_userid: str, sender: str, count: int) -> None:
        """The control API's chat message: only between friends."""
        if sender not in (MEMBER, CUSTOMER):
            raise ControlError(f"'from' must be {MEMBER!r} or {CUSTOMER!r}")
        relation = self._control_relation(userid, external_userid)
        if relation.status != ACTIVE:
            raise ControlError(f"relation is {relation.status}, not active", 409)
        for _ in range(count):
            self.record_chat(userid, external_userid, sender)

    def _chat_days(self, userids: set[str], first: int, last: int) -> dict[int, _Day]:
        pairs: dict[tuple[int, str, str], list[tuple[float, str]]] = defaultdict(list)
        for when, userid, ext, sender in self.chat_log:
            day = day_start(when)
            if first <= day <= last and userid in userids:
                pairs[(day, userid, ext)].append((when, sender))
        days: dict[int, _Day] = defaultdict(_Day)
        for (day, _, _), messages in pairs.items():
            tally = days[day]
            mine = [when for when, sender in messages if sender == MEMBER]
            tally.messages += len(mine)
            tally.chats += 1 if mine else 0
            opened_at, opener = messages[0]
            if opener == CUSTOMER:
                tally.started += 1
                reply = next((when for when in mine if when >= opened_at), None)
                if reply is not None:
                    tally.answered += 1
                    tally.reply_seconds += reply - opened_at
        return days

    def behavior_data(self, userids: set[str], start: int, end: int) -> list[dict[str, Any]]:
        first, last = day_start(start), day_start(min(end, self.now()))
        chats = self._chat_days(userids, first, last)
        days: dict[int, dict[str, Any]] = {}
        stat_time = first
        while stat_time <= last:
            tally = chats.get(stat_time) or _Day()
            day: dict[str, Any] = {
                "stat_time": stat_time,
                "chat_cnt": tally.chats,
                "message_cnt": tally.messages,
            }
            if tally.started:
                day["reply_percentage"] = round(100 * tally.answered / tally.started, 2)
            if tally.answered:
                day["avg_reply_time"] = round(tally.reply_seconds / 60 / tally.answered)
            day |= {"negative_feedback_cnt": 0, "new_apply_cnt": 0, "new_contact_cnt": 0}
            days[stat_time] = day
            stat_time += DAY  # China time has no DST
        for when, kind, userid, _ in self.contact_log:
            day = days.get(day_start(when))
            if day is not None and userid in userids:
                field_name = "new_contact_cnt" if kind == "new_contact" else "negative_feedback_cnt"
                day[field_name] += 1
        return list(days.values())
