"""One error convention for every path under /api: `{"error": {"code", "reason"}}`.

The `api_errors` middleware answers, in that shape, whatever a request under /api ends in: an
ApiError a view or the declaration raised, a domain's own error (DOMAIN_ERRORS: the one table
from domain exceptions to statuses), the router's 404 for an unknown path and 405 for a method
the path does not take, aiohttp's own errors, and a failure no view expected (a 500 with nothing
of the exception in it). guidebot.web.limits answers over-limit bodies (413) and bodies that
arrive too slowly (408) in the same shape under /api.
"""

from __future__ import annotations

import logging

from aiohttp import web

from guidebot.contacts import errors as contacts
from guidebot.content import errors as content
from guidebot.metrics.orders import OrderConflict, OrderInvalid, OrderNotFound
from guidebot.metrics.report import PeriodError
from guidebot.sop.task_marks import TaskConflict, TaskNotFound
from guidebot.web.api.common import ApiError, View
from guidebot.web.responses import error_response
from guidebot.wecom.client import WeComError

log = logging.getLogger(__name__)

# The first entry an error is an instance of decides its status and code. The layer has held
# each request to its schema, so what a domain still refuses is about meaning (a filter naming
# no guide, a transfer to the guide it comes from): 422, unless the domain says otherwise.
DOMAIN_ERRORS: tuple[tuple[type[Exception], int, str], ...] = (
    (contacts.NotFound, 404, "not_found"),
    (contacts.Invalid, 422, "unprocessable"),
    (contacts.Conflict, 409, "conflict"),
    (contacts.Upstream, 502, "wecom_error"),
    (contacts.ContactsError, 400, "bad_request"),
    (content.NotFound, 404, "not_found"),
    (content.ContentError, 422, "unprocessable"),
    (TaskNotFound, 404, "not_found"),
    (TaskConflict, 409, "conflict"),
    (OrderNotFound, 404, "not_found"),
    (OrderConflict, 409, "conflict"),
    (OrderInvalid, 422, "unprocessable"),  # no customer named, a refund before the payment
    (PeriodError, 422, "unprocessable"),  # each day is a date; together they are no period
    (WeComError, 502, "wecom_error"),
)

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    413: "too_large",
}


def is_api(request: web.Request) -> bool:
    return request.path == "/api" or request.path.startswith("/api/")


def domain_error(exc: Exception) -> ApiError | None:
    """The ApiError a domain's exception stands for, or None when it is no domain error."""
    if isinstance(exc, ApiError):
        return exc
    for kind, status, code in DOMAIN_ERRORS:
        if isinstance(exc, kind):
            return ApiError(status, code, getattr(exc, "reason", None) or str(exc))
    return None


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    reason = {
        404: f"no such API path {request.path[:80]!r}",
        405: f"{request.method} is not allowed here; allowed: {exc.headers.get('Allow', '')}",
    }.get(exc.status, exc.reason)
    response = error_response(exc.status, _HTTP_CODES.get(exc.status, "error"), reason)
    if "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


@web.middleware
async def api_errors(request: web.Request, handler: View) -> web.StreamResponse:
    """Under /api every error is JSON (see the module docstring)."""
    if not is_api(request):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_error(request, exc)
    except Exception as exc:
        known = domain_error(exc)
        if known is not None:
            return error_response(known.status, known.code, known.reason)
        log.exception("API %s %s failed", request.method, request.path)
        return error_response(500, "internal", "an unexpected error; it has been logged")
