"""The JSON API's plumbing: one way to declare an endpoint, authenticate, fail, and document.

    api = ApiRoutes()

    @api.get("/customers", summary="List customers", query={"guide": "string", "page": "integer"})
    async def list_customers(request: web.Request) -> web.Response: ...

Every endpoint lives under /api/v1, answers JSON, requires a principal unless declared public
(guidebot.web.auth: the `Authorization: Bearer <GUIDEBOT_ADMIN_TOKEN>` header or an HQ session
for `hq`, a manager's or a guide's session), and appears in /api/v1/openapi.json. `roles` says
who may call it (default HQ only; others get 403). A view open to managers or guides scopes its
queries with `principal(request)` and answers 404 for anything outside the caller's scope, so it
never confirms that the thing exists. Cookie-session calls that change state need the session's
CSRF token in `X-CSRF-Token`. Errors are `{"error": {"code": ..., "reason": ...}}` with a
fitting status; views raise ApiError.

Input is checked before it reaches the database, so bad input is a 400 that changed nothing:
`json_body` refuses non-objects, ±Infinity/NaN and strings holding NUL or a lone surrogate;
`int_field` bounds integers to what their column holds (INT32 for `Integer`, INT64 for
`BigInteger`) and refuses floats and booleans; `path_id` turns an id no row can have into 404;
`no_nulls` and `known_fields` keep a PATCH from silently ignoring a null or a misspelt field;
`instant_fields` keeps date-times within years FIRST_YEAR..LAST_YEAR.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from guidebot.clock import FIRST_YEAR, LAST_YEAR
from guidebot.web.auth import PRINCIPAL, csrf_required, principal_of

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
View = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason


def not_found(reason: str) -> ApiError:
    return ApiError(404, "not_found", reason)


def bad_request(reason: str) -> ApiError:
    return ApiError(400, "bad_request", reason)


def error_response(status: int, code: str, reason: str) -> web.Response:
    return web.json_response({"error": {"code": code, "reason": reason}}, status=status)


def iso(value: datetime | None) -> str | None:
    """An instant as ISO 8601 in JSON, or null."""
    return value.isoformat() if value is not None else None


# The ranges of the database's integer columns (PostgreSQL's; SQLite's INTEGER is 64-bit).
INT32_MAX = 2**31 - 1  # Integer: departments.id, content_items.id, store ids
INT64_MAX = 2**63 - 1  # BigInteger: task, mass-send, order row ids


def json_kind(value: Any) -> str:
    """The JSON type of a decoded value, for reasons ("got a boolean")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction" if value != int(value) else "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def int_field(
    body: dict[str, Any], name: str, *, lo: int, hi: int, required: bool = True
) -> int | None:
    """body[name] as an integer in lo..hi; absent or null is None unless required.

    A boolean (an int to Python), a float (even 2.0), a string or an integer out of range is a
    400 naming the field, so nothing too large for its column ever reaches the database.
    """
    value = body.get(name)
    if value is None:
        if required:
            raise bad_request(f"{name!r} is required: an integer from {lo} to {hi}")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"{name!r} must be an integer from {lo} to {hi}, got {json_kind(value)}")
    if not lo <= value <= hi:
        raise bad_request(f"{name!r} must be an integer from {lo} to {hi}")
    return value


def path_id(request: web.Request, what: str, *, name: str = "id", hi: int = INT64_MAX) -> int:
    """A row id from the path: 1..hi in ASCII digits; anything else names no row (404)."""
    raw = request.match_info[name]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(hi))) or not (
        1 <= int(raw) <= hi
    ):
        raise not_found(f"no {what} {raw[:40]!r}")
    return int(raw)


def no_nulls(body: dict[str, Any], *names: str) -> None:
    """PATCH: null for a field that cannot be cleared is a 400, never read as "not given"."""
    for name in names:
        if name in body and body[name] is None:
            raise bad_request(
                f"{name!r} cannot be cleared (null); leave it out to keep the current value"
            )


def known_fields(body: dict[str, Any], *names: str) -> None:
    """A misspelt field is a 400, not silently ignored."""
    unknown = sorted(set(body) - set(names))
    if unknown:
        raise bad_request(f"unknown field {unknown[0][:40]!r}; fields are {', '.join(names)}")


def check_instant(value: datetime, name: str) -> datetime:
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise bad_request(f"{name!r} must fall in the years {FIRST_YEAR} to {LAST_YEAR}")
    return value


def instant_fields(body: dict[str, Any], *names: str) -> None:
    """Date-time strings that parse must fall in FIRST_YEAR..LAST_YEAR (the domain parses them
    and gives its own reason for one that does not parse)."""
    for name in names:
        value = body.get(name)
        if not isinstance(value, str):
            continue
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            continue
        check_instant(parsed, name)


def query_int(request: web.Request, name: str, default: int, *, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"query parameter {name!r} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise bad_request(f"query parameter {name!r} must be between {lo} and {hi}")
    return value


def _finite(raw: str) -> float:
    value = float(raw)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {raw[:20]!r} is out of range")
    return value


def _no_constant(raw: str) -> None:
    raise ValueError(f"{raw} is not a JSON number")


def _loads(text: str) -> Any:
    return json.loads(text, parse_float=_finite, parse_constant=_no_constant)


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or a 400 saying what is wrong with it."""
    try:
        body = await request.json(loads=_loads)
    except RecursionError:
        raise bad_request("body is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits, ±inf
        raise bad_request(f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("body must be a JSON object")
    _check_strings(body)
    return body


def _check_strings(body: Any) -> None:
    """No string, key or value, may hold NUL (PostgreSQL refuses it in text) or a lone
    surrogate (it has no UTF-8 form)."""
    stack = [body]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str):
            if "\x00" in value:
                raise bad_request("body: strings may not contain NUL (\\u0000)")
            if not value.isascii():
                try:
                    value.encode()
                except UnicodeEncodeError:
                    raise bad_request("body: a string holds a lone UTF-16 surrogate") from None


@dataclass(slots=True)
class Endpoint:
    method: str
    path: str
    view: View
    summary: str
    public: bool = False
    roles: tuple[str, ...] = ("hq",)  # who may call it: "hq", "manager", "guide"
    query: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None

    def operation(self) -> dict[str, Any]:
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _path_params(self.path)
        ] + [
            {"name": name, "in": "query", "required": False, "schema": {"type": kind}}
            for name, kind in self.query.items()
        ]
        op: dict[str, Any] = {
            "summary": self.summary,
            "operationId": self.view.__name__,
            "parameters": parameters,
            "responses": {
                "200": {"description": "OK"},
                "400": {"$ref": "#/components/responses/Error"},
                "404": {"$ref": "#/components/responses/Error"},
            },
        }
        if not self.public:
            op["security"] = [{"bearer": []}]
            op["x-roles"] = list(self.roles)
            op["responses"]["401"] = {"$ref": "#/components/responses/Error"}
            op["responses"]["403"] = {"$ref": "#/components/responses/Error"}
        if self.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": self.body}},
            }
        return op


def _path_params(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


class ApiRoutes:
    """Endpoints declared by one domain; `setup_api` mounts several of them."""

    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = []

    def route(self, method: str, path: str, summary: str, **options: Any) -> Callable[[View], View]:
        def register(view: View) -> View:
            self.endpoints.append(Endpoint(method, path, view, summary, **options))
            return view

        return register

    def get(self, path: str, summary: str, **options: Any) -> Callable[[View], View]:
        return self.route("GET", path, summary, **options)

    def post(self, path: str, summary: str, **options: Any) -> Callable[[View], View]:
        return self.route("POST", path, summary, **options)


def _url_parts(request: web.Request) -> list[str]:
    return [*request.match_info.values(), *request.query.keys(), *request.query.values()]


def _guarded(endpoint: Endpoint) -> View:
    async def handle(request: web.Request) -> web.StreamResponse:
        if not endpoint.public:
            who = await principal_of(request)
            if who is None:
                return error_response(
                    401, "unauthorized", "a valid Bearer admin token or a session is required"
                )
            if who.role not in endpoint.roles:
                return error_response(403, "forbidden", f"not open to the {who.role} role")
            if csrf_required(request, who):
                return error_response(403, "csrf", "a valid X-CSRF-Token header is required")
            request[PRINCIPAL] = who
        if any("\x00" in part for part in _url_parts(request)):
            return error_response(400, "bad_request", "the URL may not contain NUL (%00)")
        try:
            return await endpoint.view(request)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.reason)

    handle.__name__ = endpoint.view.__name__
    return handle


def openapi_document(endpoints: list[Endpoint]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(PREFIX + endpoint.path, {})[endpoint.method.lower()] = endpoint.operation()
    return {
        "openapi": "3.1.0",
        "info": {"title": "guidebot API", "version": "1"},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Error": {
                    "description": "An error with a reason",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "error": {
                                        "type": "object",
                                        "properties": {
                                            "code": {"type": "string"},
                                            "reason": {"type": "string"},
                                        },
                                    }
                                },
                            }
                        }
                    },
                }
            },
        },
    }


def setup_api(app: web.Application, *groups: ApiRoutes) -> None:
    endpoints = [endpoint for group in groups for endpoint in group.endpoints]
    document = openapi_document(endpoints)

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(document)

    app.router.add_get(f"{PREFIX}/openapi.json", openapi)
    for endpoint in endpoints:
        app.router.add_route(endpoint.method, PREFIX + endpoint.path, _guarded(endpoint))
