"""The JSON API's plumbing: one way to declare an endpoint, authenticate, fail, and document.

    api = ApiRoutes()

    class CustomerFilter(Query):                      # guidebot.web.api.declare
        guide: USERID = None
        page: Int(1, 10_000) = 1

    @api.get("/customers", summary="List customers", query=CustomerFilter, response=CUSTOMERS)
    async def list_customers(request: web.Request) -> web.Response:
        wanted = query_of(request, CustomerFilter)    # wanted.page, wanted.guide

Every endpoint lives under /api/v1, answers JSON, requires a principal unless declared public
(guidebot.web.auth: the `Authorization: Bearer <GUIDEBOT_ADMIN_TOKEN>` header or an HQ session
for `hq`, a manager's or a guide's session), and appears in /api/v1/openapi.json. `roles` says
who may call it (default HQ only; others get 403). A view open to managers or guides scopes its
queries with `principal(request)` and answers 404 for anything outside the caller's scope, so it
never confirms that the thing exists. Cookie-session calls that change state need the session's
CSRF token in `X-CSRF-Token`. Errors are `{"error": {"code": ..., "reason": ...}}` with a
fitting status, the router's and aiohttp's own (404, 405, 413, 408) included; views raise
ApiError or let a domain's error through, and guidebot.web.api.errors answers both.

One declaration, two uses: the query and body models and the path parameters' types a route
declares (pydantic, guidebot.web.api.declare) are its part of the OpenAPI document
(guidebot.web.api.openapi) and what the request is held to before the view runs. A request that
does not fit, an unknown query parameter or body field included, is a 400 naming the field (a
path value that does not fit names no row: 404), so a view reads parsed, bounded values:
`query_of`/`body_of` give the models, `param` one path or query value by name, `json_body` the
body as the client sent it. What fits the schema but cannot be taken (values that contradict each
other or what is stored) is a 422. The statuses a route answers are declared with it (`success`,
`errors`), and tests/fuzz/test_openapi_agreement.py holds every answer to the document.

The view-side helpers stay as a second line behind the declaration (and for what reaches a view
another way): `int_field` bounds integers to what their column holds (INT32 for `Integer`, INT64
for `BigInteger`) and refuses floats and booleans; `instant_fields` keeps date-times within
years FIRST_YEAR..LAST_YEAR. (A null or a misspelt field in a PATCH is the declaration's: a
field that may not be cleared is not nullable, and an unknown field is refused.)
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import ValidationError, create_model

from guidebot.clock import FIRST_YEAR, LAST_YEAR
from guidebot.web.api.declare import (
    Body,
    Declared,
    Invalid,
    Query,
    Text,
    json_schema,
    validate,
    verify_schema,
)
from guidebot.web.api.openapi import Schema, openapi_document
from guidebot.web.auth import PRINCIPAL, csrf_required, principal_of
from guidebot.web.formats import CONTROL_CHARACTER as CONTROL_CHARACTER  # for guidebot.web.links
from guidebot.web.formats import INT32_MAX as INT32_MAX  # the views' bounds, re-exported
from guidebot.web.formats import INT64_MAX as INT64_MAX
from guidebot.web.formats import kind as json_kind
from guidebot.web.responses import error_response

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
View = Callable[[web.Request], Awaitable[web.StreamResponse]]
Q = TypeVar("Q", bound=Query)
B = TypeVar("B", bound=Body)


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
# (task, mass-send, order row ids); guidebot.web.formats holds both.


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
MODELS = web.RequestKey("api_models", dict)  # "query" and "body": the validated models

# Request bodies: JSON routes take small ones; a route that carries files says how much it needs.
JSON_BODY_BYTES = 64 * 1024


def param(request: web.Request, name: str) -> Any:
    """A declared path or query parameter, parsed and checked (None when absent, or its
    declared default)."""
    return request[PARAMS][name]


def query_of(request: web.Request, model: type[Q]) -> Q:
    """The route's query parameters, as the model it declared."""
    found = request[MODELS]["query"]
    assert isinstance(found, model), (type(found), model)
    return found


def body_of(request: web.Request, model: type[B]) -> B:
    """The route's body, as the model it declared (`model_fields_set`: what the client sent)."""
    found = request[MODELS]["body"]
    assert isinstance(found, model), (type(found), model)
    return found


class NoQuery(Query):
    """A route without query parameters refuses any."""


@dataclass(slots=True)
class Endpoint:
    method: str
    path: str
    view: View
    summary: str
    public: bool = False
    roles: tuple[str, ...] = ("hq",)  # who may call it: "hq", "manager", "guide"
    query: type[Query] = NoQuery
    path_params: dict[str, Any] = field(default_factory=dict)  # name: type; default Text(128)
    body: type[Body] | None = None
    body_required: bool = True
    max_body: int = JSON_BODY_BYTES
    response: Schema | None = None  # the body of every success status
    success: tuple[int, ...] = (200,)
    errors: tuple[int, ...] = ()  # beyond COMMON_ERRORS (and 401/403 unless public)
    responses: dict[int, Schema] = field(default_factory=dict)  # a status with its own body
    path_model: type[Declared] = Declared
    path_schema: Schema = field(default_factory=dict)
    query_schema: Schema = field(default_factory=dict)
    body_schema: Schema | None = None

    def __post_init__(self) -> None:
        where = f"{self.method} {self.path}"
        fields = {name: (self.path_params.get(name, Text(128)), ...) for name in _names(self.path)}
        self.path_model = create_model(  # type: ignore[call-overload]
            f"{self.view.__name__}_path", __base__=Declared, **fields
        )
        self.path_schema = json_schema(self.path_model)
        self.query_schema = json_schema(self.query)
        for schema in (self.path_schema, self.query_schema):
            for name, sub in schema.get("properties", {}).items():
                verify_schema(sub, f"{where} {name}")
                if sub.get("type") not in ("string", "integer", "boolean"):
                    raise ValueError(
                        f"{where} {name}: parameters are strings, integers or booleans"
                    )
        if self.body is not None:
            self.body_schema = json_schema(self.body)
            verify_schema(self.body_schema, f"{where} body")
        if self.response is None:
            raise ValueError(f"{where}: declare the response's schema")


def _names(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


class ApiRoutes:
    """Endpoints declared by one domain; `setup_api` mounts several of them."""

    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = []

    def route(self, method: str, url: str, summary: str, **options: Any) -> Callable[[View], View]:
        if "path" in options:  # the path parameters' types
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
    """A path or query value typed as its declaration says (the model then checks it)."""
    if schema.get("type") == "integer":
        if not _INTEGER.fullmatch(raw):
            lo, hi = schema["minimum"], schema["maximum"]
            raise Invalid(
                f"{name!r} 应为 {lo} 到 {hi} 之间的整数 / {name!r} must be an integer from {lo} "
                f"to {hi}, got {raw[:40]!r}"
            )
        return int(raw)
    if schema.get("type") == "boolean":
        if raw not in _BOOLEANS:
            raise Invalid(
                f"{name!r} 应为 true 或 false / {name!r} must be true or false, got {raw[:40]!r}"
            )
        return _BOOLEANS[raw]
    return raw


def _control_in_url(request: web.Request) -> bool:
    parts = [*request.match_info.values(), *request.query.keys(), *request.query.values()]
    return any(CONTROL_CHARACTER.search(part) for part in parts)


def _hold_path(endpoint: Endpoint, request: web.Request) -> Declared:
    """The path's values; one that does not fit names no row (404)."""
    given: dict[str, Any] = {}
    for name, schema in endpoint.path_schema["properties"].items():
        try:
            given[name] = _from_text(schema, request.match_info[name], name)
        except Invalid:
            raise _no_such(request, name) from None
    try:
        return endpoint.path_model.model_validate(given)
    except ValidationError as exc:
        raise _no_such(request, str(exc.errors(include_url=False)[0]["loc"][0])) from None


def _no_such(request: web.Request, name: str) -> ApiError:
    return not_found(f"no such {name} {request.match_info[name][:40]!r}")


def _hold_query(endpoint: Endpoint, request: web.Request) -> Query:
    declared = endpoint.query_schema["properties"]
    given: dict[str, Any] = {}
    for name in dict.fromkeys(request.query.keys()):
        values = request.query.getall(name)
        if len(values) > 1:
            raise bad_request(
                f"查询参数 {name[:40]!r} 重复了 {len(values)} 次 / "
                f"query parameter {name[:40]!r} is given {len(values)} times"
            )
        if values[0] == "" and name in declared:
            continue  # an empty value is no value
        try:
            given[name] = _from_text(declared[name], values[0], name) if name in declared else ""
        except Invalid as exc:  # "'page' 应为… / 'page' must be…"
            zh, en = exc.reason.split(" / ", 1)
            raise bad_request(f"查询参数 {zh} / query parameter {en}") from None
    try:
        return validate(endpoint.query, given, query=True)  # type: ignore[return-value]
    except Invalid as exc:
        raise bad_request(exc.reason) from None


async def _hold_to_declaration(endpoint: Endpoint, request: web.Request) -> None:
    """Parse and check the path, the query and the body; ApiError when they do not fit."""
    if _control_in_url(request):
        raise bad_request(
            "URL 不能包含 NUL 或其他控制字符 / "
            "the URL may not contain NUL or other control characters (%00-%1F)"
        )
    path = _hold_path(endpoint, request)
    found = _hold_query(endpoint, request)
    request[PARAMS] = {**path.model_dump(by_alias=True), **found.model_dump(by_alias=True)}
    request[MODELS] = {"query": found}
    if endpoint.body is None:
        return
    if not endpoint.body_required and not request.body_exists:
        body: dict[str, Any] = {}
    else:
        body = await _read_json(request)
    try:
        request[MODELS]["body"] = validate(endpoint.body, body)
    except Invalid as exc:
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


def setup_api(app: web.Application, *groups: ApiRoutes) -> None:
    document: dict | None = None

    async def openapi(request: web.Request) -> web.Response:
        # Written on the first request, not at start-up: few apps are ever asked for it.
        nonlocal document
        if document is None:
            document = openapi_document(endpoints, PREFIX)
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
    for endpoint in endpoints:
        app.router.add_route(endpoint.method, PREFIX + endpoint.path, _guarded(endpoint))
