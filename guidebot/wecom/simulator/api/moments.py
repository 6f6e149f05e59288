"""Moments (客户朋友圈): creating a 企业发表 task, its job, who published, and the list.

Doc ids: add_moment_task 95094 (now 96351), get_moment_task_result 95094, cancel_moment_task
97612, get_moment_list / get_moment_task / get_moment_customer_list 93333 (now 96352).
"""

from __future__ import annotations

from typing import Any

from ..errors import ApiError
from ..records import DAY, keyset_page
from ..state import SimState
from ..state.moments import Moment
from .call import ApiCall, param_int, param_limit, param_str, param_str_list

MAX_TEXT_CHARS = 2000  # doc 95094
MAX_IMAGES = 9
MAX_EXECUTORS = 100_000
KINDS = ("image", "video", "link")


def _content(body: dict[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """doc 95094: text ≤2000 characters; attachments either ≤9 images, or 1 video, or 1
    link; not both empty."""
    text = body.get("text")
    content = ""
    if text is not None:
        if not isinstance(text, dict):
            raise ApiError(40058, "text must be an object")
        content = param_str(text, "content")
        if len(content) > MAX_TEXT_CHARS:
            raise ApiError(40058, "invalid text size")
    attachments = body.get("attachments") or []
    if not isinstance(attachments, list) or not all(isinstance(a, dict) for a in attachments):
        raise ApiError(40058, "attachments must be a list of objects")
    if not content and not attachments:
        raise ApiError(41089)
    kinds = {a.get("msgtype") for a in attachments}
    if kinds - set(KINDS):
        raise ApiError(41065, "invalid attachments msgtype")
    if len(kinds) > 1:
        raise ApiError(41065, "invalid attachments msgtype")
    limit = MAX_IMAGES if kinds == {"image"} else 1
    if len(attachments) > limit:
        raise ApiError(41064, "invalid attachments size")
    for attachment in attachments:
        kind = attachment["msgtype"]
        inner = attachment.get(kind)
        if not isinstance(inner, dict):
            raise ApiError(40058, "invalid msg")
        param_str(inner, "media_id", missing=40058)  # image, video, and a link's cover
        if kind == "link":
            param_str(inner, "url", missing=40058)
    return ({"content": content} if content else None), attachments


def add_moment_task(state: SimState, call: ApiCall) -> dict[str, Any]:
    body = call.body
    text, attachments = _content(body)
    visible = body.get("visible_range") or {}
    if not isinstance(visible, dict):
        raise ApiError(40058, "visible_range must be an object")
    senders = visible.get("sender_list") or {}
    contacts = visible.get("external_contact_list") or {}
    if not isinstance(senders, dict) or not isinstance(contacts, dict):
        raise ApiError(40058, "sender_list and external_contact_list must be objects")
    users = (
        param_str_list(senders, "user_list", max_items=MAX_EXECUTORS)
        if "user_list" in senders
        else None
    )
    departments = senders.get("department_list") or []
    if not isinstance(departments, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in departments
    ):
        raise ApiError(40058, "department_list must be a list of integers")
    job = state.create_moment_task(
        text=text,
        attachments=attachments,
        users=users,
        departments=departments,
        tag_ids=param_str_list(contacts, "tag_list"),
    )
    return {"jobid": job.jobid}


def get_moment_task_result(state: SimState, call: ApiCall) -> dict[str, Any]:
    """GET with ?jobid= (doc 95094); `result` only once status is 3."""
    status, job = state.moment_job(param_str(call.query, "jobid", missing=40058))
    answer: dict[str, Any] = {"status": status, "type": "add_moment_task"}
    if status == 3:
        answer["result"] = {
            "errcode": 0,
            "errmsg": "ok",
            "moment_id": job.moment.moment_id,
            "invalid_sender_list": {
                "user_list": job.invalid_users,
                "department_list": job.invalid_departments,
            },
            "invalid_external_contact_list": {"tag_list": job.invalid_tags},
        }
    return answer


def cancel_moment_task(state: SimState, call: ApiCall) -> dict[str, Any]:
    state.cancel_moment(param_str(call.body, "moment_id", missing=41059))
    return {}


def get_moment_task(state: SimState, call: ApiCall) -> dict[str, Any]:
    """doc 93333: each executor's publish_status, 0 未发表 / 1 已发表; limit ≤1000 (default
    500, more → the default)."""
    moment = state.moment(param_str(call.body, "moment_id", missing=41059))
    limit = param_limit(call.body, 500, 1000, over=500)
    items = [
        ((userid,), {"userid": userid, "publish_status": entry[0]})
        for userid, entry in sorted(moment.executors.items())
    ]
    page, next_cursor = keyset_page(items, param_str(call.body, "cursor"), limit)
    return {"task_list": page, "next_cursor": next_cursor}


def get_moment_customer_list(state: SimState, call: ApiCall) -> dict[str, Any]:
    """doc 93333: the customers an executor's post was shown to, chosen when they published
    (none before); 41061 for a member who is not an executor of the post."""
    moment = state.moment(param_str(call.body, "moment_id", missing=41059))
    userid = param_str(call.body, "userid", missing=41009)
    if userid not in moment.executors:
        raise ApiError(41061)
    limit = param_limit(call.body, 500, 1000, over=500)
    items = [
        ((ext,), {"userid": userid, "external_userid": ext})
        for ext in sorted(moment.audiences.get(userid, ()))
    ]
    page, next_cursor = keyset_page(items, param_str(call.body, "cursor"), limit)
    return {"customer_list": page, "next_cursor": next_cursor}


def _render(moment: Moment) -> dict[str, Any]:
    # doc 93333: a post made by add_moment_task carries no creator.
    out: dict[str, Any] = {
        "moment_id": moment.moment_id,
        "create_time": moment.create_time,
        "create_type": 0,
        "visible_type": moment.visible_type,
    }
    if moment.text is not None:
        out["text"] = moment.text
    images = [{"media_id": a["image"]["media_id"]} for a in moment.attachments if "image" in a]
    if images:
        out["image"] = images
    for attachment in moment.attachments:
        if "video" in attachment:
            out["video"] = {"media_id": attachment["video"]["media_id"], "thumb_media_id": ""}
        if "link" in attachment:
            out["link"] = {
                "title": attachment["link"].get("title", ""),
                "url": attachment["link"]["url"],
            }
    return out


def get_moment_list(state: SimState, call: ApiCall) -> dict[str, Any]:
    """doc 93333: posts created in the open interval (start, end), at most 30 days; limit ≤20
    (default 20, more → the default); filter_type 0 企业 / 1 个人 / 2 all."""
    body = call.body
    start, end = param_int(body, "start_time"), param_int(body, "end_time")
    if start > end or end - start > 30 * DAY:
        raise ApiError(40058, "start_time..end_time must span at most 30 days")
    creator = param_str(body, "creator") or None
    filter_type = param_int(body, "filter_type", default=2)
    if filter_type not in (0, 1, 2):
        raise ApiError(40058, "filter_type must be 0, 1 or 2")
    limit = param_limit(body, 20, 20, over=20)
    for job in list(state.moment_jobs.values()):
        state.moment_job(job.jobid)  # a finished job has made its post
    moments = [
        m
        for m in state.moments.values()
        if start < m.create_time < end and creator is None and filter_type in (0, 2)
    ]
    items = [((m.create_time, m.moment_id), m) for m in moments]
    items.sort(key=lambda item: item[0])
    page, next_cursor = keyset_page(items, param_str(body, "cursor"), limit)
    return {"moment_list": [_render(m) for m in page], "next_cursor": next_cursor}
