"""Mass sends (企业群发): creating the task, reading it back, reminding and cancelling."""

from __future__ import annotations

from typing import Any

from ..errors import ApiError
from ..records import DAY, SEND_OK, MassTask, keyset_page
from ..state import SimState
from .call import (
    ApiCall,
    param_bool,
    param_int,
    param_limit,
    param_str,
    param_str_list,
)
from .messages import message_content


def render_task_summary(task: MassTask) -> dict[str, Any]:
    # API-created tasks are 企业发表 (create_type 0) and carry no creator, as in WeCom.
    out: dict[str, Any] = {
        "msgid": task.msgid,
        "create_time": str(task.create_time),
        "create_type": 0,
    }
    if task.text is not None:
        out["text"] = task.text
    out["attachments"] = task.attachments
    return out


def add_msg_template(state: SimState, call: ApiCall) -> dict[str, Any]:
    body = call.body
    chat_type = param_str(body, "chat_type", default="single")
    if chat_type not in ("single", "group"):
        raise ApiError(40058, f"chat_type must be single or group, got {chat_type!r}")
    sender = param_str(body, "sender") or None
    if sender is not None:
        state.member(sender)
    if chat_type == "group":
        return _add_group_template(state, body, sender)
    if "chat_id_list" in body:
        raise ApiError(40058, "chat_id_list is only for chat_type group")
    targets = (
        param_str_list(body, "external_userid", max_items=10_000)
        if "external_userid" in body
        else None
    )
    tag_groups: list[list[str]] = []
    tag_filter = body.get("tag_filter")
    if tag_filter:
        groups = tag_filter.get("group_list") if isinstance(tag_filter, dict) else None
        if not isinstance(groups, list):
            raise ApiError(40058, "tag_filter.group_list must be a list")
        for group in groups:
            tags = param_str_list(group if isinstance(group, dict) else {}, "tag_list")
            for tag_id in tags:
                if tag_id not in state.tag_index:
                    raise ApiError(40068, f"invalid tagid {tag_id!r}")
            if tags:
                tag_groups.append(tags)
    text, attachments = message_content(state, body)
    task, fail_list = state.create_task(
        sender=sender,
        external_userids=targets or None,
        tag_groups=tag_groups,
        text=text,
        attachments=attachments,
        allow_select=param_bool(body, "allow_select", False),
    )
    return {"fail_list": fail_list, "msgid": task.msgid}


def _add_group_template(state: SimState, body: dict[str, Any], sender: str | None) -> dict:
    """doc 92135: for chat_type group the sender is required, external_userid is only for
    single, chat_id_list holds at most 2000 groups."""
    if sender is None:
        raise ApiError(40058, "sender is required for chat_type group")
    if "external_userid" in body:
        raise ApiError(40058, "external_userid is only for chat_type single")
    chat_ids = (
        param_str_list(body, "chat_id_list", max_items=2000) if "chat_id_list" in body else None
    )
    text, attachments = message_content(state, body)
    task = state.create_group_task(
        sender=sender,
        chat_ids=chat_ids or None,
        text=text,
        attachments=attachments,
        allow_select=param_bool(body, "allow_select", False),
    )
    return {"fail_list": [], "msgid": task.msgid}


def get_groupmsg_list_v2(state: SimState, call: ApiCall) -> dict[str, Any]:
    body = call.body
    chat_type = param_str(body, "chat_type", missing=40058)
    start, end = param_int(body, "start_time"), param_int(body, "end_time")
    if start > end or end - start > 31 * DAY:
        raise ApiError(40058, "start_time..end_time must span at most one month")
    creator = param_str(body, "creator") or None
    filter_type = param_int(body, "filter_type", default=2)
    if filter_type not in (0, 1, 2):
        raise ApiError(40058, "filter_type must be 0, 1 or 2")
    limit = param_limit(body, 50, 100, over=50)  # doc 93338: 超过最大值时取默认值
    tasks = [
        t
        for t in state.tasks.values()
        if t.chat_type == chat_type
        and start <= t.create_time <= end
        and creator is None  # API tasks have no creator, so a creator filter excludes them
        and filter_type in (0, 2)
    ]
    items = [
        ((t.create_time, t.msgid), t) for t in sorted(tasks, key=lambda t: (t.create_time, t.msgid))
    ]
    page, next_cursor = keyset_page(items, param_str(body, "cursor"), limit)
    return {"group_msg_list": [render_task_summary(t) for t in page], "next_cursor": next_cursor}


def get_groupmsg_task(state: SimState, call: ApiCall) -> dict[str, Any]:
    task = state.task(param_str(call.body, "msgid", missing=41046))
    limit = param_limit(call.body, 500, 1000, over=500)  # doc 93338: 超过最大值时取默认值
    items = []
    for index, sender in enumerate(task.senders.values()):
        row: dict[str, Any] = {"userid": sender.userid, "status": sender.status}
        if sender.send_time is not None:
            row["send_time"] = sender.send_time
        items.append(((index,), row))
    page, next_cursor = keyset_page(items, param_str(call.body, "cursor"), limit)
    return {"task_list": page, "next_cursor": next_cursor}


def get_groupmsg_send_result(state: SimState, call: ApiCall) -> dict[str, Any]:
    task = state.task(param_str(call.body, "msgid", missing=41046))
    userid = param_str(call.body, "userid", missing=41009)
    limit = param_limit(call.body, 500, 1000, over=500)  # doc 93338: 超过最大值时取默认值
    items = []
    for index, result in enumerate(task.results):
        if result.userid != userid:
            continue
        if result.chat_id is not None:
            # doc 93338: a group send lists chat_id (no external_userid), and only the groups
            # it was sent to: until the owner sends there is nothing to list.
            if result.status != SEND_OK:
                continue
            row: dict[str, Any] = {"chat_id": result.chat_id}
        else:
            row = {"external_userid": result.external_userid}
        row |= {"userid": result.userid, "status": result.status}
        if result.send_time is not None:
            row["send_time"] = result.send_time
        items.append(((index,), row))
    page, next_cursor = keyset_page(items, param_str(call.body, "cursor"), limit)
    return {"send_list": page, "next_cursor": next_cursor}


def remind_groupmsg_send(state: SimState, call: ApiCall) -> dict[str, Any]:
    state.remind_task(param_str(call.body, "msgid", missing=41046))
    return {}


def cancel_groupmsg_send(state: SimState, call: ApiCall) -> dict[str, Any]:
    state.cancel_task(param_str(call.body, "msgid", missing=41046))
    return {}
