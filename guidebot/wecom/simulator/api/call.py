"""What every simulated API handler takes and gives: the call, its upload, the parameter
parsers (WeCom's own errcodes for missing and malformed fields) and the route record."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ApiError
from ..state import SimState


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


def param_str(
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


def param_int(
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


def param_limit(data: Mapping[str, Any], default: int, maximum: int, *, over: int) -> int:
    """A page size. Above the maximum WeCom does not refuse: each API's doc says what it
    takes instead (`over`: "超过最大值时取最大值" or "…取默认值")."""
    limit = param_int(data, "limit", default=default)
    if limit == 0:
        return default
    if limit < 0:
        raise ApiError(40058, f"limit must be 1-{maximum}")
    return over if limit > maximum else limit


def param_str_list(data: Mapping[str, Any], key: str, *, max_items: int | None = None) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(40058, f"{key} must be a list of strings")
    if max_items is not None and len(value) > max_items:
        raise ApiError(40058, f"{key} has more than {max_items} items")
    return value


def param_bool(data: Mapping[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    raise ApiError(40058, f"{key} must be a boolean")
