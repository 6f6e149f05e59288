"""The one catch-all route under /cgi-bin/: it logs the call, applies injected faults, checks the
token and the per-API minute limit, then runs the API's handler from the table of every
simulated API. Every answer is HTTP 200 with errcode/errmsg, as WeCom's are (faults may say
otherwise)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ..errors import ApiError, wecom_errmsg
from ..keys import CLOSING, SIMULATOR_STATE
from ..records import Fault
from . import (
    contact_ways,
    contacts,
    directory,
    groupmsg,
    groups,
    media,
    messages,
    moments,
    tags,
    tickets,
    transfers,
)
from .call import ApiCall, Binary, Route, Upload

HANG_SECONDS = 3600.0  # a "timeout" fault outlasts any sane client timeout
MAX_UPLOAD = 20 * 1024 * 1024


async def handle_api(request: web.Request) -> web.StreamResponse:
    state = request.app[SIMULATOR_STATE]
    api = request.match_info["api"].strip("/")
    route = ROUTES.get(api)
    query = dict(request.query)
    upload: Upload | None = None
    bad_json = False
    body: Any = None
    if route is not None and route.multipart:
        upload = await _read_upload(request)
        logged: Any = {"filename": upload.filename, "size": len(upload.data)} if upload else None
    else:
        body, bad_json = _parse_json(await request.read())
        logged = body
    record = state.log_call(api, request.method, query, logged)

    fault = state.take_fault(api)
    if fault is not None:
        record["fault"] = fault.describe()
        faulted = await _apply_fault(request.app, fault, record)
        if faulted is not None:
            return faulted

    # A body that is not a JSON object is not refused as such: WeCom runs the API on the
    # parameters it could read (none) and says so in errmsg (doc 90313 全局错误码). 47001 is
    # WeChat's code for it, not WeCom's.
    call = ApiCall(query, {} if bad_json else body or {}, record, upload)
    warning = ", Warning: wrong json format." if bad_json else ""
    try:
        if route is None:
            raise ApiError(48001, f"api forbidden: {api!r} is not a simulated WeCom API")
        if route.auth:
            state.check_token(query.get("access_token"))
            state.check_caller(api, request.remote)
        state.check_rate(api)
        result = route.handler(state, call)
    except ApiError as exc:
        return _answer(record, {"errcode": exc.errcode, "errmsg": exc.errmsg + warning})
    if isinstance(result, Binary):
        record["answer"] = {"errcode": 0, "errmsg": "ok", "bytes": len(result.data)}
        record["http_status"] = 200
        filename = result.filename.replace('"', "")
        return web.Response(
            body=result.data,
            headers={
                "Content-Type": result.content_type,  # as uploaded, charset and all
                "Content-Disposition": f'attachment; filename="{filename}"',
            },
        )
    record.update(call.notes)
    return _answer(record, {"errcode": 0, "errmsg": "ok" + warning, **result})


def _answer(record: dict[str, Any], answer: dict[str, Any], status: int = 200) -> web.Response:
    record["answer"] = answer
    record["http_status"] = status
    return web.json_response(answer, status=status, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _parse_json(raw: bytes) -> tuple[Any, bool]:
    """The body as logged, and whether it failed to be a JSON object."""
    if not raw.strip():
        return None, False
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return {"_raw": raw[:2000].decode("utf-8", "replace")}, True
    return value, not isinstance(value, dict)


async def _read_upload(request: web.Request) -> Upload | None:
    """The "media" part; a missing or unreadable one is no upload (media/upload: 44001)."""
    if not request.content_type.startswith("multipart/"):
        return None
    try:
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, aiohttp.BodyPartReader) or part.name != "media":
                continue
            data = bytearray()
            while chunk := await part.read_chunk():
                data.extend(chunk)
                if len(data) > MAX_UPLOAD:
                    break
            return Upload(
                part.filename or "media",
                part.headers.get("Content-Type", "application/octet-stream"),
                bytes(data),
            )
    except (ValueError, AssertionError, HttpProcessingError):  # a body that is not multipart
        return None
    return None


async def _apply_fault(
    app: web.Application, fault: Fault, record: dict[str, Any]
) -> web.Response | None:
    if fault.timeout:
        # Hang until the client gives up; end at shutdown so the server can stop.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(app[CLOSING].wait(), HANG_SECONDS)
        record["http_status"] = 504
        return web.Response(status=504, text="simulated timeout")
    if fault.latency:  # real time: the network's delay, which the client's timeout measures
        await asyncio.sleep(fault.latency)
    if fault.errcode is not None:
        answer = {"errcode": fault.errcode, "errmsg": wecom_errmsg(fault.errcode)}
        return _answer(record, answer, fault.http_status or 200)
    if fault.http_status is not None:
        record["http_status"] = fault.http_status
        return web.Response(status=fault.http_status, text=f"simulated HTTP {fault.http_status}")
    return None  # latency only: carry on with the real answer


ROUTES: Mapping[str, Route] = MappingProxyType(
    {
        "gettoken": Route(tickets.gettoken, auth=False),
        "agent/get": Route(tickets.agent_get),
        "department/list": Route(directory.department_list),
        "user/list": Route(directory.user_list),
        "user/simplelist": Route(directory.user_simplelist),
        "user/get": Route(directory.user_get),
        "externalcontact/get": Route(contacts.externalcontact_get),
        "externalcontact/list": Route(contacts.externalcontact_list),
        "externalcontact/batch/get_by_user": Route(contacts.batch_get_by_user),
        "externalcontact/get_follow_user_list": Route(contacts.get_follow_user_list),
        "externalcontact/send_welcome_msg": Route(messages.send_welcome_msg),
        "externalcontact/add_msg_template": Route(groupmsg.add_msg_template),
        "externalcontact/get_groupmsg_list_v2": Route(groupmsg.get_groupmsg_list_v2),
        "externalcontact/get_groupmsg_task": Route(groupmsg.get_groupmsg_task),
        "externalcontact/get_groupmsg_send_result": Route(groupmsg.get_groupmsg_send_result),
        "externalcontact/remind_groupmsg_send": Route(groupmsg.remind_groupmsg_send),
        "externalcontact/cancel_groupmsg_send": Route(groupmsg.cancel_groupmsg_send),
        "externalcontact/add_moment_task": Route(moments.add_moment_task),
        "externalcontact/get_moment_task_result": Route(moments.get_moment_task_result),
        "externalcontact/cancel_moment_task": Route(moments.cancel_moment_task),
        "externalcontact/get_moment_task": Route(moments.get_moment_task),
        "externalcontact/get_moment_customer_list": Route(moments.get_moment_customer_list),
        "externalcontact/get_moment_list": Route(moments.get_moment_list),
        "externalcontact/groupchat/list": Route(groups.groupchat_list),
        "externalcontact/groupchat/get": Route(groups.groupchat_get),
        "externalcontact/groupchat/statistic": Route(groups.groupchat_statistic),
        "externalcontact/groupchat/statistic_group_by_day": Route(
            groups.groupchat_statistic_by_day
        ),
        "externalcontact/groupchat/add_join_way": Route(groups.add_join_way),
        "externalcontact/groupchat/get_join_way": Route(groups.get_join_way),
        "externalcontact/groupchat/update_join_way": Route(groups.update_join_way),
        "externalcontact/groupchat/del_join_way": Route(groups.del_join_way),
        "externalcontact/group_welcome_template/add": Route(groups.group_welcome_add),
        "externalcontact/group_welcome_template/edit": Route(groups.group_welcome_edit),
        "externalcontact/group_welcome_template/get": Route(groups.group_welcome_get),
        "externalcontact/group_welcome_template/del": Route(groups.group_welcome_del),
        "externalcontact/mark_tag": Route(tags.mark_tag),
        "externalcontact/get_corp_tag_list": Route(tags.get_corp_tag_list),
        "externalcontact/add_corp_tag": Route(tags.add_corp_tag),
        "externalcontact/edit_corp_tag": Route(tags.edit_corp_tag),
        "externalcontact/del_corp_tag": Route(tags.del_corp_tag),
        "externalcontact/remark": Route(tags.remark),
        "externalcontact/add_contact_way": Route(contact_ways.add_contact_way),
        "externalcontact/get_contact_way": Route(contact_ways.get_contact_way),
        "externalcontact/update_contact_way": Route(contact_ways.update_contact_way),
        "externalcontact/del_contact_way": Route(contact_ways.del_contact_way),
        "externalcontact/list_contact_way": Route(contact_ways.list_contact_way),
        "externalcontact/transfer_customer": Route(transfers.transfer("in_service")),
        "externalcontact/transfer_result": Route(transfers.transfer_result("in_service")),
        "externalcontact/resigned/transfer_customer": Route(transfers.transfer("resigned")),
        "externalcontact/resigned/transfer_result": Route(transfers.transfer_result("resigned")),
        "externalcontact/get_user_behavior_data": Route(contacts.get_user_behavior_data),
        "message/send": Route(messages.message_send),
        "get_jsapi_ticket": Route(tickets.get_jsapi_ticket),
        "ticket/get": Route(tickets.ticket_get),
        "media/upload": Route(media.media_upload, multipart=True),
        "media/get": Route(media.media_get),
    }
)

SIMULATED_APIS = tuple(ROUTES)
