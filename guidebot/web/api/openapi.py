"""The OpenAPI document, assembled from the routes' declarations (guidebot.web.api.common).

Requests are declared as pydantic models (guidebot.web.api.declare) and shown here through
their JSON Schema. Answers are documented with the small JSON Schema builders below (`shape`,
`list_of`, ...): tests/fuzz/test_openapi_agreement.py holds every answer to them.
"""

from __future__ import annotations

from typing import Any

from guidebot.web.auth import ADMIN_COOKIE, CSRF_HEADER, SESSION_COOKIE, UNSAFE_METHODS

Schema = dict[str, Any]

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
    "fit its operation's schema is a 400 whose reason (in Chinese, then English) names the "
    "field; an unknown body field or query parameter is one too. A path value that does "
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

# ---- answers -----------------------------------------------------------------------------------

STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
NUMBER: Schema = {"type": "number"}
BOOLEAN: Schema = {"type": "boolean"}
INSTANT: Schema = {"type": "string", "format": "date-time"}
ANY: Schema = {}


def maybe(schema: Schema) -> Schema:
    """The schema, or null."""
    if not schema:
        return schema
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    out = {**schema, "type": [*kinds, "null"]}
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


def shape(properties: dict[str, Schema], *, optional: tuple[str, ...] = ()) -> Schema:
    """An answer's object: every property present unless optional, nothing else."""
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }


def list_of(item: Schema) -> Schema:
    return {"type": "array", "items": item}


def mapping(values: Schema) -> Schema:
    """An object whose keys are data (a step id, a version) and whose values are alike."""
    return {"type": "object", "additionalProperties": values}


# ---- the document ------------------------------------------------------------------------------


def error_statuses(endpoint: Any) -> list[int]:
    statuses = set(COMMON_ERRORS) | set(endpoint.errors)
    if not endpoint.public:
        statuses |= {401, 403}
    return sorted(statuses - set(endpoint.success) - set(endpoint.responses))


def _content(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def operation(endpoint: Any) -> dict[str, Any]:
    """One route's part of the document (an Endpoint of guidebot.web.api.common)."""
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": schema}
        for name, schema in endpoint.path_schema["properties"].items()
    ] + [
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in endpoint.query_schema["properties"].items()
    ]
    responses: dict[str, Any] = {
        str(status): {"description": SUCCESS[status], "content": _content(endpoint.response)}
        for status in endpoint.success
    }
    for status, schema in endpoint.responses.items():
        responses[str(status)] = {
            "description": ERRORS.get(status) or SUCCESS[status],
            "content": _content(schema),
        }
    for status in error_statuses(endpoint):
        responses[str(status)] = {
            "description": ERRORS[status],
            "content": _content({"$ref": "#/components/schemas/Error"}),
        }
    op: dict[str, Any] = {
        "summary": endpoint.summary,
        "operationId": endpoint.view.__name__,
        "parameters": parameters,
        "responses": dict(sorted(responses.items())),
    }
    if not endpoint.public:
        op["security"] = security(endpoint.method, endpoint.roles)
        op["x-roles"] = list(endpoint.roles)
    if endpoint.body_schema is not None:
        op["requestBody"] = {
            "required": endpoint.body_required,
            "description": f"a JSON object of at most {endpoint.max_body} bytes",
            "content": _content(endpoint.body_schema),
        }
    return op


def security(method: str, roles: tuple[str, ...]) -> list[dict[str, list[str]]]:
    """Any one of these: the HQ bearer token, or a session (with its CSRF token when the call
    changes something)."""
    unsafe = method in UNSAFE_METHODS
    schemes: list[dict[str, list[str]]] = []
    if "hq" in roles:
        schemes.append({"bearer": []})
    if {"hq", "manager"} & set(roles):
        schemes.append({"adminSession": [], **({"csrf": []} if unsafe else {})})
    if "guide" in roles:
        schemes.append({"guideSession": [], **({"csrf": []} if unsafe else {})})
    return schemes


SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "GUIDEBOT_ADMIN_TOKEN: HQ"},
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
        "description": "the session's CSRF token: every POST, PATCH and DELETE made with a "
        "session carries it",
    },
}


def openapi_document(endpoints: list[Any], prefix: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(prefix + endpoint.path, {})[endpoint.method.lower()] = operation(endpoint)
    return {
        "openapi": "3.1.0",
        "info": {"title": "guidebot API", "version": "1", "description": API_DESCRIPTION},
        "paths": paths,
        "components": {
            "securitySchemes": SECURITY_SCHEMES,
            "schemas": {"Error": ERROR_SCHEMA},
        },
    }
