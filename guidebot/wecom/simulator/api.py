"""WeCom's server API under /cgi-bin/: real paths, real JSON shapes, WeCom's error codes.

One catch-all route logs the call, applies injected faults, checks the token and the per-API
minute limit, then runs the handler. Handlers parse the request, call SimState, and render.
Every answer is HTTP 200 with errcode/errmsg, as WeCom's are (faults may say otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .keys import CLOSING, SIMULATOR_STATE
from .state import (
    DAY,
    MAX_FOLLOW_USERS_PER_PAGE,
    ApiError,
    Customer,
    Fault,
    MassTask,
    Member,
    Relation,
    SimState,
    TagGroup,
    keyset_page,
    wecom_errmsg,
)

HANG_SECONDS = 3600.0  # a "timeout" fault outlasts any sane client timeout
MAX_UPLOAD = 20 * 1024 * 1024
MEDIA_LIMITS = {"image": 10 << 20, "voice": 2 << 20, "video": 10 << 20, "file": 20 << 20}
MESSAGE_TYPES = ("text", "textcard", "news", "markdown")
ATTACHMENT_TYPES = ("image", "link", "miniprogram", "video", "file")


@dataclass(slots=True)
class Upload:
    filename: str
    content_type: str
    data: bytes


@dataclass(slots=True)
class Binary:
    """A handler answer that is a file, not JSON (media/get)."""

    content_type: str
    filename: str
    data: bytes


@dataclass(slots=True)
class ApiCall:
    query: Mapping[str, str]
    body: dict[str, Any]
    record: dict[str, Any]
    upload: Upload | None = None
    notes: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[SimState, ApiCall], "dict[str, Any] | Binary"]


@dataclass(frozen=True, slots=True)
class Route:
    handler: Handler
    auth: bool = True
    multipart: bool = False


# ---- the dispatcher ----------------------------------------------------------------------


async def handle_api(request: web.Request) -> web.StreamResponse:
    state = request.app[SIMULATOR_STATE]
    api = request.match_info["api"].strip("/")
    route = _ROUTES.get(api)
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
    if fault.latency:
        await asyncio.sleep(fault.latency)
    if fault.errcode is not None:
        answer = {"errcode": fault.errcode, "errmsg": wecom_errmsg(fault.errcode)}
        return _answer(record, answer, fault.http_status or 200)
    if fault.http_status is not None:
        record["http_status"] = fault.http_status
        return web.Response(status=fault.http_status, text=f"simulated HTTP {fault.http_status}")
    return None  # latency only: carry on with the real answer


# ---- parameter parsing -------------------------------------------------------------------


def _str(
    data: Mapping[str, Any],
    key: str,
    *,
    missing: int | None = None,
    max_len: int | None = None,
    default: str = "",
) -> str:
    """A string field; `missing` is the errcode when it is required and absent."""
    value = data.get(key)
    if value is None or value == "":
        if missing is not None:
            raise ApiError(missing, f"missing {key}")
        return default
    if not isinstance(value, str):
        raise ApiError(40058, f"{key} must be a string")
    if max_len is not None and len(value) > max_len:
        raise ApiError(40058, f"{key} is longer than {max_len} characters")
    return value


def _int(
    data: Mapping[str, Any], key: str, *, default: int | None = None, missing: int = 40058
) -> int:
    value = data.get(key)
    if value is None or value == "":
        if default is None:
            raise ApiError(missing, f"missing {key}")
        return default
    if isinstance(value, bool):
        raise ApiError(40058, f"{key} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    raise ApiError(40058, f"{key} must be an integer")


def _limit(data: Mapping[str, Any], default: int, maximum: int, *, over: int) -> int:
    """A page size. Above the maximum WeCom does not refuse: each API's doc says what it
    takes instead (`over`: "超过最大值时取最大值" or "…取默认值")."""
    limit = _int(data, "limit", default=default)
    if limit == 0:
        return default
    if limit < 0:
        raise ApiError(40058, f"limit must be 1-{maximum}")
    return over if limit > maximum else limit


def _str_list(data: Mapping[str, Any], key: str, *, max_items: int | None = None) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(40058, f"{key} must be a list of strings")
    if max_items is not None and len(value) > max_items:
        raise ApiError(40058, f"{key} has more than {max_items} items")
    return value


def _bool(data: Mapping[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    raise ApiError(40058, f"{key} must be a boolean")


def _message_content(
    state: SimState, body: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """text + attachments of a welcome or mass message, checked as WeCom checks them."""
    text = body.get("text")
    if text is not None:
        if not isinstance(text, dict) or not isinstance(text.get("content", ""), str):
            raise ApiError(40058, 'text must be {"content": string}')
        if len(text.get("content", "").encode()) > 4000:
            raise ApiError(45002, "text.content is over 4000 bytes")
        if not text.get("content"):
            text = None
    attachments = body.get("attachments") or []
    if not isinstance(attachments, list):
        raise ApiError(40058, "attachments must be a list")
    if len(attachments) > 9:
        raise ApiError(41064)
    for item in attachments:
        _check_attachment(state, item)
    if text is None and not attachments:
        raise ApiError(44004, "text and attachments are both empty")
    return text, attachments


def _check_attachment(state: SimState, item: Any) -> None:
    msgtype = item.get("msgtype") if isinstance(item, dict) else None
    if msgtype not in ATTACHMENT_TYPES:
        raise ApiError(41065, f"invalid attachment msgtype {msgtype!r}")
    payload = item.get(msgtype)
    if not isinstance(payload, dict):
        raise ApiError(40058, f"attachment {msgtype} needs a {msgtype!r} object")
    if msgtype == "image":
        if payload.get("media_id"):
            state.live_media(_str(payload, "media_id"), "image")
        elif not payload.get("pic_url"):
            raise ApiError(40058, "image needs media_id or pic_url")
    elif msgtype == "link":
        _str(payload, "title", missing=41016, max_len=128)
        _str(payload, "url", missing=41010)
    elif msgtype == "miniprogram":
        for key in ("title", "appid", "page"):
            _str(payload, key, missing=40058)
        state.live_media(_str(payload, "pic_media_id", missing=41006), "image")
    else:
        state.live_media(_str(payload, "media_id", missing=41006), msgtype)


# ---- rendering ---------------------------------------------------------------------------


def _external_contact(customer: Customer) -> dict[str, Any]:
    out: dict[str, Any] = {
        "external_userid": customer.external_userid,
        "name": customer.name,
        "avatar": customer.avatar,
        "type": customer.type,
        "gender": customer.gender,
    }
    if customer.unionid:
        out["unionid"] = customer.unionid
    if customer.type == 2:
        out.update(
            position=customer.position,
            corp_name=customer.corp_name,
            corp_full_name=customer.corp_full_name,
        )
    return out


def _follow(state: SimState, relation: Relation, *, tag_ids_only: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "userid": relation.userid,
        "remark": relation.remark,
        "description": relation.description,
        "createtime": relation.createtime,
    }
    if tag_ids_only:
        out["tag_id"] = list(relation.tag_ids)
    else:
        tags = []
        for tag_id in relation.tag_ids:
            group, tag = state.tag(tag_id)
            tags.append(
                {"group_name": group.group_name, "tag_name": tag.name, "type": 1, "tag_id": tag_id}
            )
        out["tags"] = tags
    if relation.remark_corp_name:
        out["remark_corp_name"] = relation.remark_corp_name
    out["remark_mobiles"] = list(relation.remark_mobiles)
    out["oper_userid"] = relation.oper_userid
    out["add_way"] = relation.add_way
    if relation.state:  # WeCom omits state when the add carried none
        out["state"] = relation.state
    return out


def render_tag_group(group: TagGroup, tag_ids: set[str] | None = None) -> dict[str, Any]:
    tags = [t for t in group.tags.values() if tag_ids is None or t.id in tag_ids]
    tags.sort(key=lambda t: (-t.order, t.create_time, t.id))  # bigger order first
    return {
        "group_id": group.group_id,
        "group_name": group.group_name,
        "create_time": group.create_time,
        "order": group.order,
        "deleted": False,
        "tag": [
            {
                "id": t.id,
                "name": t.name,
                "create_time": t.create_time,
                "order": t.order,
                "deleted": False,
            }
            for t in tags
        ],
    }


def _member(member: Member, *, simple: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "userid": member.userid,
        "name": member.name,
        "department": list(member.department),
    }
    if simple:
        return out
    # Since 2022-06-20 a new self-built app gets no avatar, gender, mobile, email, biz_mail,
    # qr_code or address here (头像、性别、手机、邮箱、企业邮箱、员工个人二维码、地址): doc 90196
    # 读取成员, and the same notice on user/list (doc 90337 获取部门成员详情).
    out.update(
        order=[0] * len(member.department),
        position=member.position,
        is_leader_in_dept=[0] * len(member.department),
        status=1,
        main_department=member.department[0],
    )
    return out


def _task_summary(task: MassTask) -> dict[str, Any]:
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


# ---- handlers ----------------------------------------------------------------------------


def gettoken(state: SimState, call: ApiCall) -> dict[str, Any]:
    token, ttl = state.issue_token(call.query.get("corpid", ""), call.query.get("corpsecret", ""))
    return {"access_token": token, "expires_in": ttl}


def department_list(state: SimState, call: ApiCall) -> dict[str, Any]:
    root = _int(call.query, "id", default=1)
    if root not in state.departments:
        raise ApiError(60123)
    depts = [state.departments[i] for i in state.department_subtree(root)]
    return {
        "department": [
            {
                "id": d.id,
                "name": d.name,
                "name_en": "",
                "department_leader": [],
                "parentid": d.parentid,
                "order": d.order,
            }
            for d in depts
        ]
    }


def _list_members(state: SimState, call: ApiCall, *, simple: bool) -> dict[str, Any]:
    dept = _int(call.query, "department_id", missing=60123)
    fetch_child = call.query.get("fetch_child") == "1"
    members = state.members_in(dept, fetch_child)
    return {"userlist": [_member(m, simple=simple) for m in members]}


def user_list(state: SimState, call: ApiCall) -> dict[str, Any]:
    return _list_members(state, call, simple=False)


def user_simplelist(state: SimState, call: ApiCall) -> dict[str, Any]:
    return _list_members(state, call, simple=True)


def user_get(state: SimState, call: ApiCall) -> dict[str, Any]:
    return _member(state.member(_str(call.query, "userid", missing=41009), errcode=60111))


def externalcontact_get(state: SimState, call: ApiCall) -> dict[str, Any]:
    customer = state.customer(_str(call.query, "external_userid", missing=41035))
    followers = state.followers(customer.external_userid)
    if not followers:
        raise ApiError(84061)
    page, next_cursor = keyset_page(
        [((r.createtime, r.userid), r) for r in followers],
        call.query.get("cursor", ""),
        MAX_FOLLOW_USERS_PER_PAGE,
    )
    out: dict[str, Any] = {
        "external_contact": _external_contact(customer),
        "follow_user": [_follow(state, r, tag_ids_only=False) for r in page],
    }
    if next_cursor:
        out["next_cursor"] = next_cursor
    return out


def externalcontact_list(state: SimState, call: ApiCall) -> dict[str, Any]:
    member = state.member(_str(call.query, "userid", missing=41009))
    relations = state.customers_of(member.userid)
    if not relations:
        raise ApiError(84061)  # WeCom answers "not external contact" for an empty list
    return {"external_userid": [r.external_userid for r in relations]}


def batch_get_by_user(state: SimState, call: ApiCall) -> dict[str, Any]:
    userids = _str_list(call.body, "userid_list")
    if not userids or len(userids) > 100:
        raise ApiError(40058, "userid_list must hold 1-100 userids")
    limit = _limit(call.body, 50, 100, over=100)  # doc 92994: 超过最大值时取最大值
    items = []
    for index, userid in enumerate(userids):
        state.member(userid)
        items += [((index, r.createtime, r.external_userid), r) for r in state.customers_of(userid)]
    page, next_cursor = keyset_page(items, _str(call.body, "cursor"), limit)
    return {
        "external_contact_list": [
            {
                "external_contact": _external_contact(state.customers[r.external_userid]),
                "follow_info": _follow(state, r, tag_ids_only=True),
            }
            for r in page
        ],
        "next_cursor": next_cursor,
    }


def get_follow_user_list(state: SimState, call: ApiCall) -> dict[str, Any]:
    return {"follow_user": list(state.members)}


def send_welcome_msg(state: SimState, call: ApiCall) -> dict[str, Any]:
    code = _str(call.body, "welcome_code", missing=41049)
    text, attachments = _message_content(state, call.body)  # a bad message spends no code
    welcome = state.use_welcome_code(code)
    state.welcomes.append(
        {
            "welcome_code": code,
            "userid": welcome.userid,
            "external_userid": welcome.external_userid,
            "text": text,
            "attachments": attachments,
            # When WeCom handed the code out (the add event) and when the welcome reached it.
            "issued_at": welcome.issued_at,
            "time": welcome.used_at,
        }
    )
    return {}


def add_msg_template(state: SimState, call: ApiCall) -> dict[str, Any]:
    body = call.body
    chat_type = _str(body, "chat_type", default="single")
    if chat_type != "single":
        raise ApiError(40058, f"chat_type {chat_type!r} is not simulated (only single)")
    sender = _str(body, "sender") or None
    if sender is not None:
        state.member(sender)
    targets = (
        _str_list(body, "external_userid", max_items=10_000) if "external_userid" in body else None
    )
    tag_groups: list[list[str]] = []
    tag_filter = body.get("tag_filter")
    if tag_filter:
        groups = tag_filter.get("group_list") if isinstance(tag_filter, dict) else None
        if not isinstance(groups, list):
            raise ApiError(40058, "tag_filter.group_list must be a list")
        for group in groups:
            tags = _str_list(group if isinstance(group, dict) else {}, "tag_list")
            for tag_id in tags:
                if tag_id not in state.tag_index:
                    raise ApiError(40068, f"invalid tagid {tag_id!r}")
            if tags:
                tag_groups.append(tags)
    text, attachments = _message_content(state, body)
    task, fail_list = state.create_task(
        sender=sender,
        external_userids=targets or None,
        tag_groups=tag_groups,
        text=text,
        attachments=attachments,
        allow_select=_bool(body, "allow_select", False),
    )
    return {"fail_list": fail_list, "msgid": task.msgid}


def get_groupmsg_list_v2(state: SimState, call: ApiCall) -> dict[str, Any]:
    body = call.body
    chat_type = _str(body, "chat_type", missing=40058)
    start, end = _int(body, "start_time"), _int(body, "end_time")
    if start > end or end - start > 31 * DAY:
        raise ApiError(40058, "start_time..end_time must span at most one month")
    creator = _str(body, "creator") or None
    filter_type = _int(body, "filter_type", default=2)
    if filter_type not in (0, 1, 2):
        raise ApiError(40058, "filter_type must be 0, 1 or 2")
    limit = _limit(body, 50, 100, over=50)  # doc 93338: 超过最大值时取默认值
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
    page, next_cursor = keyset_page(items, _str(body, "cursor"), limit)
    return {"group_msg_list": [_task_summary(t) for t in page], "next_cursor": next_cursor}


def get_groupmsg_task(state: SimState, call: ApiCall) -> dict[str, Any]:
    task = state.task(_str(call.body, "msgid", missing=41046))
    limit = _limit(call.body, 500, 1000, over=500)  # doc 93338: 超过最大值时取默认值
    items = []
    for index, sender in enumerate(task.senders.values()):
        row: dict[str, Any] = {"userid": sender.userid, "status": sender.status}
        if sender.send_time is not None:
            row["send_time"] = sender.send_time
        items.append(((index,), row))
    page, next_cursor = keyset_page(items, _str(call.body, "cursor"), limit)
    return {"task_list": page, "next_cursor": next_cursor}


def get_groupmsg_send_result(state: SimState, call: ApiCall) -> dict[str, Any]:
    task = state.task(_str(call.body, "msgid", missing=41046))
    userid = _str(call.body, "userid", missing=41009)
    limit = _limit(call.body, 500, 1000, over=500)  # doc 93338: 超过最大值时取默认值
    items = []
    for index, result in enumerate(task.results):
        if result.userid != userid:
            continue
        row: dict[str, Any] = {
            "external_userid": result.external_userid,
            "userid": result.userid,
            "status": result.status,
        }
        if result.send_time is not None:
            row["send_time"] = result.send_time
        items.append(((index,), row))
    page, next_cursor = keyset_page(items, _str(call.body, "cursor"), limit)
    return {"send_list": page, "next_cursor": next_cursor}


def remind_groupmsg_send(state: SimState, call: ApiCall) -> dict[str, Any]:
    state.remind_task(_str(call.body, "msgid", missing=41046))
    return {}


def cancel_groupmsg_send(state: SimState, call: ApiCall) -> dict[str, Any]:
    state.cancel_task(_str(call.body, "msgid", missing=41046))
    return {}


def mark_tag(state: SimState, call: ApiCall) -> dict[str, Any]:
    body = call.body
    state.mark_tag(
        _str(body, "userid", missing=41009),
        _str(body, "external_userid", missing=41035),
        _str_list(body, "add_tag"),
        _str_list(body, "remove_tag"),
    )
    return {}


def get_corp_tag_list(state: SimState, call: ApiCall) -> dict[str, Any]:
    tag_ids = set(_str_list(call.body, "tag_id"))
    group_ids = set(_str_list(call.body, "group_id"))
    groups = sorted(state.tag_groups.values(), key=lambda g: (-g.order, g.create_time, g.group_id))
    if group_ids:  # group_id wins over tag_id
        rendered = [render_tag_group(g) for g in groups if g.group_id in group_ids]
    elif tag_ids:
        rendered = [render_tag_group(g, tag_ids) for g in groups if tag_ids.intersection(g.tags)]
    else:
        rendered = [render_tag_group(g) for g in groups]
    return {"tag_group": rendered}


def add_corp_tag(state: SimState, call: ApiCall) -> dict[str, Any]:
    body = call.body
    raw_tags = body.get("tag")
    if not isinstance(raw_tags, list) or not raw_tags:
        raise ApiError(40058, "tag must be a non-empty list of {name, order}")
    tags = []
    for item in raw_tags:
        if not isinstance(item, dict):
            raise ApiError(40058, "each tag must be an object")
        tags.append((_str(item, "name", missing=41018), _int(item, "order", default=0), None))
    group, added = state.add_tags(
        tags,
        group_id=_str(body, "group_id") or None,
        group_name=_str(body, "group_name") or None,
        group_order=_int(body, "order", default=0),
    )
    return {"tag_group": render_tag_group(group, {t.id for t in added})}


def edit_corp_tag(state: SimState, call: ApiCall) -> dict[str, Any]:
    body = call.body
    target = _str(body, "id", missing=40068)
    name = _str(body, "name", max_len=30) or None
    order = body.get("order")
    if target in state.tag_groups:
        group = state.tag_groups[target]
        group.group_name = name or group.group_name
        group.order = _int(body, "order") if order is not None else group.order
    elif target in state.tag_index:
        group, tag = state.tag(target)
        if name and any(t.name == name and t.id != target for t in group.tags.values()):
            raise ApiError(40071)
        tag.name = name or tag.name
        tag.order = _int(body, "order") if order is not None else tag.order
    else:
        raise ApiError(40068)
    return {}


def del_corp_tag(state: SimState, call: ApiCall) -> dict[str, Any]:
    tag_ids, group_ids = _str_list(call.body, "tag_id"), _str_list(call.body, "group_id")
    if not tag_ids and not group_ids:
        raise ApiError(40058, "tag_id and group_id are both empty")
    state.delete_tags(tag_ids, group_ids)
    return {}


def remark(state: SimState, call: ApiCall) -> dict[str, Any]:
    body = call.body
    relation = state.pair(
        _str(body, "userid", missing=41009), _str(body, "external_userid", missing=41035)
    )
    fields = ("remark", "description", "remark_company", "remark_mobiles", "remark_pic_mediaid")
    if all(body.get(k) in (None, "", []) for k in fields):
        raise ApiError(40058, "remark, description, remark_company, ... are all empty")
    if "remark" in body:
        relation.remark = _str(body, "remark", max_len=20)
    if "description" in body:
        relation.description = _str(body, "description", max_len=150)
    if "remark_company" in body:
        relation.remark_corp_name = _str(body, "remark_company", max_len=20)
    if "remark_mobiles" in body:
        mobiles = _str_list(body, "remark_mobiles")
        relation.remark_mobiles = [m for m in mobiles if m]  # [""] clears
    return {}  # API edits produce no callback (reference §2.4)


# ---- 「联系我」 contact ways ---------------------------------------------------------------


def _contact_way_fields(state: SimState, body: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if "style" in body:
        fields["style"] = _int(body, "style")
    if "remark" in body:
        fields["remark"] = _str(body, "remark", max_len=30)
    if "skip_verify" in body:
        fields["skip_verify"] = _bool(body, "skip_verify", True)
    if "state" in body:
        fields["state"] = _str(body, "state", max_len=30)
    if "user" in body:
        users = _str_list(body, "user")
        for userid in users:
            state.member(userid)
        fields["user"] = users
    if "party" in body:
        party = body["party"]
        if not isinstance(party, list) or not all(isinstance(p, int) for p in party):
            raise ApiError(40058, "party must be a list of department ids")
        for dept in party:
            if dept not in state.departments:
                raise ApiError(60123)
        fields["party"] = party
    for key in ("is_temp", "is_exclusive"):
        if key in body:
            fields[key] = _bool(body, key, False)
    for key in ("expires_in", "chat_expires_in"):
        if key in body:
            fields[key] = _int(body, key)
    for key in ("unionid", "conclusions"):
        if key in body:
            fields[key] = body[key]
    return fields


# The appendix of doc 92228 (配置客户联系「联系我」方式): the mini-program button styles,
# 1-3 for a single-member way, 1-2 for a multi-member one.
CONTACT_WAY_STYLES = {1: (1, 2, 3), 2: (1, 2)}


def _check_way(way: Mapping[str, Any]) -> None:
    """The whole way (as added, or as an update would leave it) against WeCom's rules."""
    if way["style"] not in CONTACT_WAY_STYLES[way["type"]]:
        raise ApiError(41042, f"invalid style {way['style']!r} for a type {way['type']} way")
    users, party = way.get("user") or [], way.get("party") or []
    if not users and not party:
        raise ApiError(40058, "user and party are both empty")
    if way["type"] == 1 and (len(users) != 1 or party):
        raise ApiError(40058, "a type 1 contact way has exactly one user")
    if len(users) > 100:
        raise ApiError(41041)


def add_contact_way(state: SimState, call: ApiCall) -> dict[str, Any]:
    body = call.body
    way_type = _int(body, "type", missing=41037)
    scene = _int(body, "scene", missing=41038)
    if way_type not in (1, 2):
        raise ApiError(41039)
    if scene not in (1, 2):
        raise ApiError(41040)
    fields = _contact_way_fields(state, body)
    config_id = secrets.token_hex(16)
    way = {
        "config_id": config_id,
        "type": way_type,
        "scene": scene,
        "style": 1,
        "remark": "",
        "skip_verify": True,
        "state": "",
        "user": [],
        "party": [],
        "is_temp": False,
        "expires_in": 7 * DAY,
        "chat_expires_in": DAY,
        "create_time": int(state.now()),
        **fields,
    }
    _check_way(way)
    if scene == 2:  # only QR ways have a code picture
        way["qr_code"] = f"https://wecom-simulator.invalid/qr/{config_id}"
    state.contact_ways[config_id] = way
    out = {"config_id": config_id}
    if scene == 2:
        out["qr_code"] = way["qr_code"]
    return out


def _contact_way(state: SimState, body: Mapping[str, Any]) -> dict[str, Any]:
    config_id = _str(body, "config_id", missing=41043)
    way = state.contact_ways.get(config_id)
    if way is None:
        raise ApiError(41044)
    return way


def get_contact_way(state: SimState, call: ApiCall) -> dict[str, Any]:
    way = _contact_way(state, call.body)
    return {"contact_way": {k: v for k, v in way.items() if k != "create_time"}}


def update_contact_way(state: SimState, call: ApiCall) -> dict[str, Any]:
    way = _contact_way(state, call.body)
    updated = {**way, **_contact_way_fields(state, call.body)}
    _check_way(updated)  # validate the whole way before changing any of it
    way.update(updated)
    return {}


def del_contact_way(state: SimState, call: ApiCall) -> dict[str, Any]:
    way = _contact_way(state, call.body)
    del state.contact_ways[way["config_id"]]
    return {}


def list_contact_way(state: SimState, call: ApiCall) -> dict[str, Any]:
    now = int(state.now())
    end = _int(call.body, "end_time", default=now)
    start = _int(call.body, "start_time", default=end - 90 * DAY)
    if start > end or end - start > 90 * DAY:
        raise ApiError(40058, "start_time..end_time must span at most 90 days")
    limit = _limit(call.body, 100, 1000, over=1000)  # doc 92228: 默认为100条，最多支持1000条
    ways = sorted(
        (w for w in state.contact_ways.values() if start <= w["create_time"] <= end),
        key=lambda w: (w["create_time"], w["config_id"]),
    )
    page, next_cursor = keyset_page(
        [((w["create_time"], w["config_id"]), {"config_id": w["config_id"]}) for w in ways],
        _str(call.body, "cursor"),
        limit,
    )
    return {"contact_way": page, "next_cursor": next_cursor}


# ---- transfers ---------------------------------------------------------------------------


def _transfer(kind: str) -> Handler:
    def handler(state: SimState, call: ApiCall) -> dict[str, Any]:
        body = call.body
        if kind == "in_service":
            _str(body, "transfer_success_msg", max_len=200)
        customers = state.start_transfer(
            kind,
            _str(body, "handover_userid"),
            _str(body, "takeover_userid"),
            _str_list(body, "external_userid"),
        )
        return {"customer": customers}

    return handler


def _transfer_result(kind: str) -> Handler:
    def handler(state: SimState, call: ApiCall) -> dict[str, Any]:
        body = call.body
        handover = _str(body, "handover_userid", missing=41009)
        takeover = _str(body, "takeover_userid", missing=41009)
        transfers = state.transfer_results(kind, handover, takeover)
        items = [
            (
                (t.created_at, t.external_userid),
                {
                    "external_userid": t.external_userid,
                    "status": t.status,
                    "takeover_time": t.takeover_time or 0,
                },
            )
            for t in sorted(transfers, key=lambda t: (t.created_at, t.external_userid))
        ]
        page, next_cursor = keyset_page(items, _str(body, "cursor"), 1000)
        return {"customer": page, "next_cursor": next_cursor}

    return handler


# ---- statistics --------------------------------------------------------------------------


def get_user_behavior_data(state: SimState, call: ApiCall) -> dict[str, Any]:
    body = call.body
    userids = _str_list(body, "userid", max_items=100)
    party = body.get("partyid") or []
    if not isinstance(party, list) or not all(isinstance(p, int) for p in party):
        raise ApiError(40058, "partyid must be a list of department ids")
    if len(party) > 100:
        raise ApiError(40058, "partyid has more than 100 items")
    if not userids and not party:
        raise ApiError(40058, "userid and partyid are both empty")
    start, end = _int(body, "start_time"), _int(body, "end_time")
    now = state.now()
    if start > end or end - start > 30 * DAY:
        raise ApiError(40058, "start_time..end_time must span at most 30 days")
    if start < now - 180 * DAY:
        raise ApiError(40058, "only the last 180 days can be queried")
    wanted = {state.member(u).userid for u in userids}
    for dept in party:
        wanted.update(m.userid for m in state.members_in(dept, fetch_child=True))
    return {"behavior_data": state.behavior_data(wanted, start, end)}


# ---- app messages ------------------------------------------------------------------------


def _message_payload(body: Mapping[str, Any], msgtype: str) -> dict[str, Any]:
    payload = body.get(msgtype)
    if not isinstance(payload, dict):
        raise ApiError(40058, f"{msgtype} must be an object")
    if msgtype in ("text", "markdown"):
        content = _str(payload, "content", missing=44004)
        if len(content.encode()) > 2048:
            raise ApiError(45002, "content is over 2048 bytes")
    elif msgtype == "textcard":
        _str(payload, "title", missing=41016)
        _str(payload, "description", missing=41033)
        _str(payload, "url", missing=41010)
    else:  # news
        articles = payload.get("articles")
        if not isinstance(articles, list) or not articles:
            raise ApiError(40058, "news.articles must hold 1-8 articles")
        if len(articles) > 8:
            raise ApiError(45008)
        for article in articles:
            _str(article if isinstance(article, dict) else {}, "title", missing=41016)
    return payload


def message_send(state: SimState, call: ApiCall) -> dict[str, Any]:
    body = call.body
    agentid = _int(body, "agentid", missing=41011)
    if agentid != state.config.identity.agent_id:
        raise ApiError(40056)
    msgtype = _str(body, "msgtype", missing=40008)
    if msgtype not in MESSAGE_TYPES:
        raise ApiError(40008, f"msgtype {msgtype!r} is not simulated ({', '.join(MESSAGE_TYPES)})")
    payload = _message_payload(body, msgtype)

    recipients: dict[str, None] = {}
    invalid_users: list[str] = []
    invalid_parties: list[str] = []
    touser = _str(body, "touser")
    if touser == "@all":
        recipients.update(dict.fromkeys(state.members))
    elif touser:
        names = [u for u in touser.split("|") if u]
        if len(names) > 1000:
            raise ApiError(40032)
        for name in names:
            if name in state.members:
                recipients[name] = None
            else:
                invalid_users.append(name)
    for part in (p for p in _str(body, "toparty").split("|") if p):
        if part.isdigit() and int(part) in state.departments:
            recipients.update(
                dict.fromkeys(m.userid for m in state.members_in(int(part), fetch_child=True))
            )
        else:
            invalid_parties.append(part)
    invalid_tags = [t for t in _str(body, "totag").split("|") if t]  # member tags: not simulated
    if not recipients:
        raise ApiError(81013)

    window = None
    if _bool(body, "enable_duplicate_check", False):
        window = float(_int(body, "duplicate_check_interval", default=1800))
    outcomes: dict[str, list[str]] = {"sent": [], "dropped": [], "duplicate": []}
    for userid in recipients:
        outcomes[state.deliver_app_message(userid, msgtype, payload, window)].append(userid)
    call.notes["delivered_to"] = outcomes["sent"]
    call.notes["dropped"] = outcomes["dropped"]  # over the per-member minute limit
    if outcomes["duplicate"]:
        call.notes["duplicate_skipped"] = outcomes["duplicate"]

    out: dict[str, Any] = {}
    if invalid_users:
        out["invaliduser"] = "|".join(invalid_users)
    if invalid_parties:
        out["invalidparty"] = "|".join(invalid_parties)
    if invalid_tags:
        out["invalidtag"] = "|".join(invalid_tags)
    out["msgid"] = secrets.token_urlsafe(24)
    return out


# ---- JS-SDK tickets and media ------------------------------------------------------------


def get_jsapi_ticket(state: SimState, call: ApiCall) -> dict[str, Any]:
    return {"ticket": state.issue_ticket("jsapi"), "expires_in": 7200}


def ticket_get(state: SimState, call: ApiCall) -> dict[str, Any]:
    if call.query.get("type") != "agent_config":
        raise ApiError(40058, "type must be agent_config")
    return {"ticket": state.issue_ticket("agent_config"), "expires_in": 7200}


def jsapi_signature(ticket: str, noncestr: str, timestamp: str | int, url: str) -> str:
    """WeCom's JS-SDK signature: fixed field order, no URL encoding (reference §5)."""
    raw = f"jsapi_ticket={ticket}&noncestr={noncestr}&timestamp={timestamp}&url={url}"
    return hashlib.sha1(raw.encode()).hexdigest()


def media_upload(state: SimState, call: ApiCall) -> dict[str, Any]:
    kind = call.query.get("type", "")
    if kind not in MEDIA_LIMITS:
        raise ApiError(40005, "type must be image, voice, video or file")
    upload = call.upload
    if upload is None or not upload.data:
        raise ApiError(44001, "multipart field 'media' is missing or empty")
    if len(upload.data) < 5:
        raise ApiError(40006, "a media file has at least 5 bytes")
    if len(upload.data) > MEDIA_LIMITS[kind]:
        raise ApiError(45001)
    if kind == "image" and not upload.data.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")):
        raise ApiError(40004, "an image must be JPG or PNG")
    media = state.add_media(kind, upload.filename, upload.content_type, upload.data)
    return {"type": kind, "media_id": media.media_id, "created_at": str(int(media.created_at))}


def media_get(state: SimState, call: ApiCall) -> dict[str, Any] | Binary:
    media = state.live_media(_str(call.query, "media_id", missing=41006))
    return Binary(media.content_type, media.filename, media.data)


_ROUTES: Mapping[str, Route] = MappingProxyType(
    {
        "gettoken": Route(gettoken, auth=False),
        "department/list": Route(department_list),
        "user/list": Route(user_list),
        "user/simplelist": Route(user_simplelist),
        "user/get": Route(user_get),
        "externalcontact/get": Route(externalcontact_get),
        "externalcontact/list": Route(externalcontact_list),
        "externalcontact/batch/get_by_user": Route(batch_get_by_user),
        "externalcontact/get_follow_user_list": Route(get_follow_user_list),
        "externalcontact/send_welcome_msg": Route(send_welcome_msg),
        "externalcontact/add_msg_template": Route(add_msg_template),
        "externalcontact/get_groupmsg_list_v2": Route(get_groupmsg_list_v2),
        "externalcontact/get_groupmsg_task": Route(get_groupmsg_task),
        "externalcontact/get_groupmsg_send_result": Route(get_groupmsg_send_result),
        "externalcontact/remind_groupmsg_send": Route(remind_groupmsg_send),
        "externalcontact/cancel_groupmsg_send": Route(cancel_groupmsg_send),
        "externalcontact/mark_tag": Route(mark_tag),
        "externalcontact/get_corp_tag_list": Route(get_corp_tag_list),
        "externalcontact/add_corp_tag": Route(add_corp_tag),
        "externalcontact/edit_corp_tag": Route(edit_corp_tag),
        "externalcontact/del_corp_tag": Route(del_corp_tag),
        "externalcontact/remark": Route(remark),
        "externalcontact/add_contact_way": Route(add_contact_way),
        "externalcontact/get_contact_way": Route(get_contact_way),
        "externalcontact/update_contact_way": Route(update_contact_way),
        "externalcontact/del_contact_way": Route(del_contact_way),
        "externalcontact/list_contact_way": Route(list_contact_way),
        "externalcontact/transfer_customer": Route(_transfer("in_service")),
        "externalcontact/transfer_result": Route(_transfer_result("in_service")),
        "externalcontact/resigned/transfer_customer": Route(_transfer("resigned")),
        "externalcontact/resigned/transfer_result": Route(_transfer_result("resigned")),
        "externalcontact/get_user_behavior_data": Route(get_user_behavior_data),
        "message/send": Route(message_send),
        "get_jsapi_ticket": Route(get_jsapi_ticket),
        "ticket/get": Route(ticket_get),
        "media/upload": Route(media_upload, multipart=True),
        "media/get": Route(media_get),
    }
)

SIMULATED_APIS = tuple(_ROUTES)
