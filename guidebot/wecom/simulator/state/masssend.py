"""Mass messages (企业群发): tasks, the guide's confirmation, reminders and monthly caps."""

from __future__ import annotations

import secrets
from typing import Any

from ..errors import ApiError, ControlError
from ..records import (
    ACTIVE,
    DAY,
    FOLLOWING,
    REMINDS_PER_DAY,
    SEND_CAPPED,
    SEND_NOT_FRIEND,
    SEND_OK,
    MassTask,
    Relation,
    SenderTask,
    SendResult,
    month_of,
)
from .core import StateCore

__all__ = ["MassSendState"]


class MassSendState(StateCore):
    """Mass-send tasks."""

    def create_task(
        self,
        *,
        sender: str | None,
        external_userids: list[str] | None,
        tag_groups: list[list[str]],
        text: dict[str, Any] | None,
        attachments: list[dict[str, Any]],
        allow_select: bool,
    ) -> tuple[MassTask, list[str]]:
        """A task only: nothing reaches a customer until the guide confirms it."""
        fail_list: list[str] = []
        targets: list[Relation] = []
        if external_userids is not None:
            for ext in dict.fromkeys(external_userids):
                relation = self._sender_for(ext, sender)
                if relation is None or not self._has_tags(relation, tag_groups):
                    fail_list.append(ext)
                else:
                    targets.append(relation)
        else:
            pool = (
                self.customers_of(sender)
                if sender
                else [r for r in self.relations.values() if r.status in FOLLOWING]
            )
            chosen: dict[str, Relation] = {}
            for relation in sorted(pool, key=lambda r: (r.createtime, r.userid)):
                if self._has_tags(relation, tag_groups):
                    chosen[relation.external_userid] = relation  # the latest guide wins
            targets = list(chosen.values())
        if not targets:
            raise ApiError(41048)
        senders = {r.userid: SenderTask(r.userid) for r in targets}
        task = MassTask(
            msgid="msg" + secrets.token_urlsafe(21),
            create_time=int(self.now()),
            chat_type="single",
            text=text,
            attachments=attachments,
            allow_select=allow_select,
            senders=senders,
            results=[SendResult(r.external_userid, r.userid) for r in targets],
        )
        self.tasks[task.msgid] = task
        return task, fail_list

    def _sender_for(self, external_userid: str, sender: str | None) -> Relation | None:
        if sender:
            relation = self.relations.get((sender, external_userid))
            return relation if relation is not None and relation.status in FOLLOWING else None
        followers = self.followers(external_userid)
        # WeCom sends through the guide the customer talked to last; the newest stands in.
        return followers[-1] if followers else None

    def _has_tags(self, relation: Relation, tag_groups: list[list[str]]) -> bool:
        # Groups are ANDed, tags within a group ORed (WeCom's tag_filter).
        return all(set(group) & set(relation.tag_ids) for group in tag_groups)

    def task(self, msgid: str) -> MassTask:
        if not msgid:
            raise ApiError(41046)
        task = self.tasks.get(msgid)
        if task is None:
            raise ApiError(41047)
        return task

    def create_group_task(
        self,
        *,
        sender: str,
        chat_ids: list[str] | None,
        text: dict[str, Any] | None,
        attachments: list[dict[str, Any]],
        allow_select: bool,
    ) -> MassTask:
        """chat_type group (doc 92135): a task for the sender, owner of the groups it goes to:
        those of chat_id_list the sender owns and are live, or without a list all of the
        sender's live groups (the owner picks them in the client). Which errcode a list of
        nobody's groups gets is not documented; the simulator answers 41048 as for customers."""
        groups = getattr(self, "groups", {})
        owned = {c: g for c, g in groups.items() if g.owner == sender and not g.dismissed}
        if chat_ids is not None:  # in the list's order
            live = [owned[c] for c in dict.fromkeys(chat_ids) if c in owned]
        else:  # oldest first; created in the same second, in the order they were made
            live = sorted(owned.values(), key=lambda g: g.create_time)
        if not live:
            raise ApiError(41048)
        task = MassTask(
            msgid="msg" + secrets.token_urlsafe(21),
            create_time=int(self.now()),
            chat_type="group",
            text=text,
            attachments=attachments,
            allow_select=allow_select,
            senders={sender: SenderTask(sender)},
            results=[SendResult("", sender, chat_id=g.chat_id) for g in live],
        )
        self.tasks[task.msgid] = task
        return task

    def confirm_task(
        self, msgid: str, userid: str, only: list[str] | None = None
    ) -> list[SendResult]:
        """The guide taps send: each customer gets it, or fails as not-a-friend or capped."""
        task = self.tasks.get(msgid)
        if task is None:
            raise ControlError(f"unknown msgid {msgid!r}")
        sender = task.senders.get(userid)
        if sender is None:
            raise ControlError(f"{userid!r} is not a sender of {msgid!r}")
        if task.canceled:
            raise ControlError("the task was canceled", 409)
        if sender.status != 0:
            raise ControlError(f"{userid!r} already sent {msgid!r}", 409)
        now = self.now()
        month = month_of(now)
        cap = self.cap_for(now)
        mine = [r for r in task.results if r.userid == userid]
        for result in mine:
            if result.chat_id is not None:
                if only is None or result.chat_id in only:
                    self._send_to_group(result, userid, now, month, cap)
                continue
            if only is not None and result.external_userid not in only:
                continue
            relation = self.relations.get((userid, result.external_userid))
            receipts = self.mass_receipts.setdefault(result.external_userid, [])
            if relation is None or relation.status != ACTIVE:
                result.status = SEND_NOT_FRIEND
            elif sum(1 for t in receipts if month_of(t) == month) >= cap:
                result.status = SEND_CAPPED
            else:
                result.status = SEND_OK
                result.send_time = int(now)
                receipts.append(now)
                self.record_chat(userid, result.external_userid, "member")
        sender.status = 2
        sender.send_time = int(now)
        return mine

    def _send_to_group(
        self, result: SendResult, userid: str, now: float, month: Any, cap: int
    ) -> None:
        """A group send: the cap counts per customer group as per customer (doc 92135); a
        group dismissed or handed to another owner since gets status 2 (the document names
        only the customer's case: an inference)."""
        group = getattr(self, "groups", {}).get(result.chat_id)
        receipts = self.mass_receipts.setdefault(f"chat:{result.chat_id}", [])
        if group is None or group.dismissed or group.owner != userid:
            result.status = SEND_NOT_FRIEND
        elif sum(1 for t in receipts if month_of(t) == month) >= cap:
            result.status = SEND_CAPPED
        else:
            result.status = SEND_OK
            result.send_time = int(now)
            receipts.append(now)

    def remind_task(self, msgid: str) -> None:
        task = self.task(msgid)
        if task.canceled:
            raise ApiError(41093)
        now = self.now()
        task.reminders = [t for t in task.reminders if t > now - DAY]
        if len(task.reminders) >= REMINDS_PER_DAY:
            raise ApiError(41094)
        task.reminders.append(now)

    def cancel_task(self, msgid: str) -> None:
        self.task(msgid).canceled = True
