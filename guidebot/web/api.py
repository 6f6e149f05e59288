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
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

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
    return body


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
