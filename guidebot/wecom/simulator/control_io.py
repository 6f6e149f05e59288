"""Reading /_sim control requests and writing their answers (the control API: .control)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .errors import ControlError
from .keys import SIMULATOR_STATE
from .records import Relation
from .state import SimState


def sim_state(request: web.Request) -> SimState:
    return request.config_dict[SIMULATOR_STATE]


async def read_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ControlError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ControlError("body must be a JSON object")
    return value


def field_str(body: dict[str, Any], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if value is None:
        raise ControlError(f"{key!r} is required")
    if not isinstance(value, str) or (not value and default is None):
        raise ControlError(f"{key!r} must be a non-empty string")
    return value


def field_opt_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise ControlError(f"{key!r} must be a string")
    return value


def field_int(body: dict[str, Any], key: str, default: int | None = None) -> int:
    value = body.get(key, default)
    if value is None:
        raise ControlError(f"{key!r} is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ControlError(f"{key!r} must be an integer")
    return value


def field_bool(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise ControlError(f"{key!r} must be true or false")
    return value


def field_str_list(body: dict[str, Any], key: str) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ControlError(f"{key!r} must be a list of strings")
    return value


def json_answer(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda v: json.dumps(v, ensure_ascii=False))


def relation_view(relation: Relation) -> dict[str, Any]:
    return {
        "userid": relation.userid,
        "external_userid": relation.external_userid,
        "status": relation.status,
        "createtime": relation.createtime,
        "state": relation.state,
        "remark": relation.remark,
        "description": relation.description,
        "tag_ids": list(relation.tag_ids),
        "remark_mobiles": list(relation.remark_mobiles),
        "add_way": relation.add_way,
        "oper_userid": relation.oper_userid,
    }
