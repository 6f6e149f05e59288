"""The admin's error pages, inside its layout and in its language, and where `/` leads.

Every 4xx and 5xx answer under /admin (an unknown path, an unknown guide or store, a bad date
in the query, a page that is HQ's) is the layout's error page with its message and a way back
to the dashboard, not a bare line of text. A handler's own message (`text=` of the aiohttp
exception, already in the request's language) is shown; else the status's own words.
`/` leads to the admin, or to the sidebar when the visitor holds a guide's session.
"""

from __future__ import annotations

from aiohttp import web

from guidebot import i18n
from guidebot.web.auth import ADMIN_COOKIE, PRINCIPAL, SESSION_COOKIE, principal_of
from guidebot.web.lang import choose_language, language_of
from guidebot.web.pages import render

N_ = i18n.N_
HEADINGS = {
    400: N_("The request is not right"),
    403: N_("Not allowed"),
    404: N_("Page not found"),
    405: N_("Not allowed"),
    413: N_("Too large"),
    429: N_("Too many requests"),
}
MESSAGES = {
    403: N_("You may not open this page."),
    404: N_("There is nothing at this address, or it is not among what you may see."),
    405: N_("This address does not take this kind of request."),
    413: N_("The request is too large."),
    429: N_("Too many requests; please wait a moment."),
    500: N_("Something went wrong on our side; please try again."),
}


def _is_page(request: web.Request) -> bool:
    return request.path == "/admin" or (
        request.path.startswith("/admin/") and not request.path.startswith("/admin/static/")
    )


@web.middleware
async def admin_errors(request: web.Request, handler) -> web.StreamResponse:
    if not _is_page(request):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return await error_page(request, exc.status, exc.text, exc.headers)


async def error_page(
    request: web.Request, status: int, text: str | None, headers=None
) -> web.Response:
    if PRINCIPAL not in request:  # an unknown path: nobody looked yet
        who = await principal_of(request)
        if who is not None and who.role in ("hq", "manager"):
            request[PRINCIPAL] = who
            await choose_language(request, who)
    lang = language_of(request, request.get(PRINCIPAL))
    default = f"{status}: "
    own = text if text and not text.startswith(default) else None
    heading = HEADINGS.get(status, N_("Something went wrong"))
    message = own or MESSAGES.get(status) or MESSAGES[500]
    response = render(
        request,
        "error.html",
        {
            "status": status,
            "heading": i18n.gettext(heading, lang),
            "message": message if own else i18n.gettext(message, lang),
            "back": "/admin",
        },
        status,
    )
    for name in ("Retry-After", "Allow"):
        if headers is not None and name in headers:
            response.headers[name] = headers[name]
    return response


async def root(request: web.Request) -> web.StreamResponse:
    """`/`: the admin (its sign-in when signed out); a guide's session goes to the sidebar."""
    if request.cookies.get(SESSION_COOKIE) and not request.cookies.get(ADMIN_COOKIE):
        who = await principal_of(request)
        if who is not None and who.role == "guide":
            raise web.HTTPSeeOther("/sidebar")
    raise web.HTTPSeeOther("/admin")


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/", root)
