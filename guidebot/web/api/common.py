"""The JSON API's plumbing: one way to declare an endpoint, authenticate, fail, and document.

    api = ApiRoutes()

    @api.get("/customers", summary="List customers", response=CUSTOMERS,
             query={"guide": text(64), "page": integer(1, 10_000, default=1)})
    async def list_customers(request: web.Request) -> web.Response:
        page = param(request, "page")

Every endpoint lives under /api/v1, answers JSON, requires a principal unless declared public
(guidebot.web.auth: the `Authorization: Bearer <GUIDEBOT_ADMIN_TOKEN>` header or an HQ session
for `hq`, a manager's or a guide's session), and appears in /api/v1/openapi.json. `roles` says
who may call it (default HQ only; others get 403). A view open to managers or guides scopes its
queries with `principal(request)` and answers 404 for anything outside the caller's scope, so it
never confirms that the thing exists. Cookie-session calls that change state need the session's
CSRF token in `X-CSRF-Token`. Errors are `{"error": {"code": ..., "reason": ...}}` with a
fitting status, the router's and aiohttp's own (404, 405, 413, 408) included; views raise
ApiError or let a domain's error through, and guidebot.web.api.errors answers both.

One declaration, two uses: the path, query and body schemas a route declares (built with
guidebot.web.schema) are its part of the OpenAPI document and what the request is held to
before the view runs. A request that does not fit is a 400 naming the field (a path value that
does not fit names no row: 404), so a view reads parsed, bounded values with `param` and
`json_body`. What fits the schema but cannot be taken (values that contradict each other or
what is stored) is a 422. The statuses a route answers are declared with it (`success`,
`errors`), and tests/fuzz/test_openapi_agreement.py holds every answer to the document.

The view-side helpers stay as a second line behind the schema (and for what reaches a view
another way): `int_field` bounds integers to what their column holds (INT32 for `Integer`, INT64
for `BigInteger`) and refuses floats and booleans; `no_nulls` and `known_fields` keep a PATCH
from silently ignoring a null or a misspelt field; `instant_fields` keeps date-times within
years FIRST_YEAR..LAST_YEAR.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from guidebot.clock import FIRST_YEAR, LAST_YEAR
from guidebot.web.auth import (
    ADMIN_COOKIE,
    CSRF_HEADER,
    PRINCIPAL,
    SESSION_COOKIE,
    UNSAFE_METHODS,
    csrf_required,
    principal_of,
)
from guidebot.web.responses import error_response
from guidebot.web.schema import (
    CONTROL,
    Schema,
    SchemaError,
    check,
    text,
    verify_schema,
)
from guidebot.web.schema import INT32_MAX as INT32_MAX  # the views' bounds, re-exported
from guidebot.web.schema import INT64_MAX as INT64_MAX
from guidebot.web.schema import kind as json_kind

CONTROL_CHARACTER = re.compile(CONTROL)

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


def unprocessable(reason: str) -> ApiError:
    """The request fits its schema, but its values contradict each other or what is stored."""
    return ApiError(422, "unprocessable", reason)


def iso(value: datetime | None) -> str | None:
    """An instant as ISO 8601 in JSON, or null."""
    return value.isoformat() if value is not None else None


# The ranges of the database's integer columns (PostgreSQL's; SQLite's INTEGER is 64-bit):
# INT32_MAX for Integer (departments.id, content_items.id, store ids), INT64_MAX for BigInteger
# (task, mass-send, order row ids); guidebot.web.schema holds both.


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
    """The request's JSON object, or a 400 saying what is wrong with it. On a route that
    declares a body this is the body the layer already read and held to the declaration."""
    if BODY in request:
        return request[BODY]
    return await _read_json(request)


async def _read_json(request: web.Request) -> dict[str, Any]:
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


# ---- declarations ------------------------------------------------------------------------------

BODY = web.RequestKey("api_body", dict)
PARAMS = web.RequestKey("api_params", dict)

# Request bodies: JSON routes take small ones; a route that carries files says how much it needs.
JSON_BODY_BYTES = 64 * 1024

# Every route may answer these (a view's own are declared with it).
COMMON_ERRORS = {
    400: "The request does not fit this operation's schema (the reason names the field)",
    404: "No such thing, or not within the caller's scope",
    408: "The body did not arrive within GUIDEBOT_BODY_TIMEOUT_SECONDS",
    413: "The body is larger than this operation takes",
}
ERRORS = {
    **COMMON_ERRORS,
    401: "No valid bearer token or session",
    403: "Not open to the caller's role, or a session call without its CSRF token",
    409: "Conflicts with what is stored",
    422: "Fits the schema, but the values contradict each other or what is stored",
    502: "WeCom refused the call or could not be reached",
}
SUCCESS = {200: "OK", 201: "Created", 202: "Accepted"}


def param(request: web.Request, name: str) -> Any:
    """A declared path or query parameter, parsed and checked (None when absent, or its
    declared default)."""
    return request[PARAMS][name]


@dataclass(slots=True)
class Endpoint:
    method: str
    path: str
    view: View
    summary: str
    public: bool = False
    roles: tuple[str, ...] = ("hq",)  # who may call it: "hq", "manager", "guide"
    query: dict[str, Schema] = field(default_factory=dict)
    path_params: dict[str, Schema] = field(default_factory=dict)  # default: text(128)
    body: Schema | None = None
    body_required: bool = True
    max_body: int = JSON_BODY_BYTES
    response: Schema | None = None  # the body of every success status
    success: tuple[int, ...] = (200,)
    errors: tuple[int, ...] = ()  # beyond COMMON_ERRORS (and 401/403 unless public)
    responses: dict[int, Schema] = field(default_factory=dict)  # a status with its own body

    def __post_init__(self) -> None:
        for name in _path_params(self.path):
            self.path_params.setdefault(name, text(128))
        where = f"{self.method} {self.path}"
        for name, schema in {**self.path_params, **self.query}.items():
            verify_schema(schema, f"{where} {name}")
            if schema.get("type") not in ("string", "integer", "boolean"):
                raise ValueError(f"{where} {name}: parameters are strings, integers or booleans")
        if self.body is not None:
            verify_schema(self.body, f"{where} body")
        if self.response is None:
            raise ValueError(f"{where}: declare the response's schema")

    def error_statuses(self) -> list[int]:
        statuses = set(COMMON_ERRORS) | set(self.errors)
        if not self.public:
            statuses |= {401, 403}
        return sorted(statuses - set(self.success) - set(self.responses))

    def operation(self) -> dict[str, Any]:
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": schema}
            for name, schema in self.path_params.items()
        ] + [
            {"name": name, "in": "query", "required": False, "schema": schema}
            for name, schema in self.query.items()
        ]
        responses: dict[str, Any] = {
            str(status): {
                "description": SUCCESS[status],
                "content": {"application/json": {"schema": self.response}},
            }
            for status in self.success
        }
        for status, schema in self.responses.items():
            responses[str(status)] = {
                "description": ERRORS.get(status) or SUCCESS[status],
                "content": {"application/json": {"schema": schema}},
            }
        for status in self.error_statuses():
            responses[str(status)] = {
                "description": ERRORS[status],
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        op: dict[str, Any] = {
            "summary": self.summary,
            "operationId": self.view.__name__,
            "parameters": parameters,
            "responses": dict(sorted(responses.items())),
        }
        if not self.public:
            op["security"] = self.security()
            op["x-roles"] = list(self.roles)
        if self.body is not None:
            op["requestBody"] = {
                "required": self.body_required,
                "description": f"a JSON object of at most {self.max_body} bytes",
                "content": {"application/json": {"schema": self.body}},
            }
        return op

    def security(self) -> list[dict[str, list[str]]]:
        """Any one of these: the HQ bearer token, or a session (with its CSRF token when the
        call changes something)."""
        unsafe = self.method in UNSAFE_METHODS
        schemes: list[dict[str, list[str]]] = []
        if "hq" in self.roles:
            schemes.append({"bearer": []})
        if {"hq", "manager"} & set(self.roles):
            schemes.append({"adminSession": [], **({"csrf": []} if unsafe else {})})
        if "guide" in self.roles:
            schemes.append({"guideSession": [], **({"csrf": []} if unsafe else {})})
        return schemes


def _path_params(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


class ApiRoutes:
    """Endpoints declared by one domain; `setup_api` mounts several of them."""

    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = []

    def route(self, method: str, url: str, summary: str, **options: Any) -> Callable[[View], View]:
        if "path" in options:  # the path parameters' declarations
            options["path_params"] = options.pop("path")

        def register(view: View) -> View:
            self.endpoints.append(Endpoint(method, url, view, summary, **options))
            return view

        return register

    def get(self, url: str, summary: str, **options: Any) -> Callable[[View], View]:
        return self.route("GET", url, summary, **options)

    def post(self, url: str, summary: str, **options: Any) -> Callable[[View], View]:
        return self.route("POST", url, summary, **options)


# ---- holding a request to its declaration -----------------------------------------------------

_INTEGER = re.compile(r"-?[0-9]{1,20}")
_BOOLEANS = {"true": True, "false": False}  # as OpenAPI writes a boolean in a query


def _from_text(schema: Schema, raw: str, name: str) -> Any:
    """A path or query value, typed and checked against its declaration; SchemaError."""
    if schema["type"] == "integer":
        if not _INTEGER.fullmatch(raw):
            raise SchemaError(
                f"{name!r} must be an integer from {schema['minimum']} to {schema['maximum']}, "
                f"got {raw[:40]!r}"
            )
        value: Any = int(raw)
    elif schema["type"] == "boolean":
        if raw not in _BOOLEANS:
            raise SchemaError(f"{name!r} must be true or false, got {raw[:40]!r}")
        value = _BOOLEANS[raw]
    else:
        value = raw
    check(schema, value, name)
    return value


def _control_in_url(request: web.Request) -> bool:
    parts = [*request.match_info.values(), *request.query.keys(), *request.query.values()]
    return any(CONTROL_CHARACTER.search(part) for part in parts)


async def _hold_to_declaration(endpoint: Endpoint, request: web.Request) -> None:
    """Parse and check the path, the query and the body; ApiError when they do not fit."""
    if _control_in_url(request):
        raise bad_request("the URL may not contain NUL or other control characters (%00-%1F)")
    values: dict[str, Any] = {}
    for name, schema in endpoint.path_params.items():
        raw = request.match_info[name]
        try:
            values[name] = _from_text(schema, raw, name)
        except SchemaError:
            raise not_found(f"no such {name} {raw[:40]!r}") from None
    for name, schema in endpoint.query.items():
        given = request.query.getall(name, [])
        if len(given) > 1:
            raise bad_request(f"query parameter {name!r} is given {len(given)} times")
        raw = given[0] if given else ""
        try:
            values[name] = _from_text(schema, raw, name) if raw != "" else schema.get("default")
        except SchemaError as exc:
            raise bad_request(f"query parameter {exc.reason}") from None
    request[PARAMS] = values
    if endpoint.body is None:
        return
    if not endpoint.body_required and not request.body_exists:
        body: dict[str, Any] = {}
    else:
        body = await _read_json(request)
    try:
        check(endpoint.body, body)
    except SchemaError as exc:
        raise bad_request(exc.reason) from None
    request[BODY] = body


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
        # ApiError and the domains' errors become JSON in guidebot.web.api.errors.
        await _hold_to_declaration(endpoint, request)
        return await endpoint.view(request)

    handle.__name__ = endpoint.view.__name__
    handle.body_limit = endpoint.max_body  # type: ignore[attr-defined]  (guidebot.web.limits)
    return handle


def openapi_document(endpoints: list[Endpoint]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(PREFIX + endpoint.path, {})[endpoint.method.lower()] = endpoint.operation()
    return {
        "openapi": "3.1.0",
        "info": {"title": "guidebot API", "version": "1", "description": API_DESCRIPTION},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "GUIDEBOT_ADMIN_TOKEN: HQ",
                },
                "adminSession": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": ADMIN_COOKIE,
                    "description": "an HQ or store-manager account's session (/admin/login)",
                },
                "guideSession": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": SESSION_COOKIE,
                    "description": "a guide's sidebar session (WeCom OAuth)",
                },
                "csrf": {
                    "type": "apiKey",
                    "in": "header",
                    "name": CSRF_HEADER,
                    "description": "the session's CSRF token: every POST, PATCH and DELETE "
                    "made with a session carries it",
                },
            },
            "schemas": {"Error": ERROR_SCHEMA},
        },
    }


ERROR_SCHEMA: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "reason"],
            "properties": {"code": {"type": "string"}, "reason": {"type": "string"}},
        }
    },
}

API_DESCRIPTION = (
    "Requests are held to this document before anything else happens. A request that does not "
    "fit its operation's schema is a 400 whose reason names the field; a path value that does "
    "not fit names nothing and is a 404; what fits but cannot be taken (values that contradict "
    "each other or what is stored) is a 422. Integers are written without a fraction (1, not "
    "1.0); `multipleOf` is decimal (0.07 is a multiple of 0.01). Formats are checked: `date-"
    "time` is ISO 8601 with a UTC offset, `date` is YYYY-MM-DD, `date-or-time` is either "
    "(without an offset, GUIDEBOT_TIMEZONE's), all within the years 1970 to 9998; `time-zone` "
    "is an IANA name; `http-url` an absolute http(s) URL. No string holds control characters, "
    "except that text meant for people to read may hold line feeds. Every error, a method the "
    'path does not take (405) included, is `{"error": {"code", "reason"}}`. A body must arrive '
    "within GUIDEBOT_BODY_TIMEOUT_SECONDS (408) and be no larger than its operation says (413)."
)


def setup_api(app: web.Application, *groups: ApiRoutes) -> None:
    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(document)

    endpoints = [
        Endpoint(
            "GET",
            "/openapi.json",
            openapi,
            "This document",
            public=True,
            response={"type": "object", "required": ["openapi", "paths"]},
        ),
        *(endpoint for group in groups for endpoint in group.endpoints),
    ]
    document = openapi_document(endpoints)
    for endpoint in endpoints:
        app.router.add_route(endpoint.method, PREFIX + endpoint.path, _guarded(endpoint))
