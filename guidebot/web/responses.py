"""Answers the HTML faces share: a page rendered from templates/web, a JSON error in the one
shape every face uses (`{"error": {"code", "reason"}}`), and a JSON object read leniently."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from guidebot import i18n
from guidebot.resources import project_dir

TEMPLATES = project_dir("templates") / "web"


@functools.cache
def _environment(directory: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    # The sidebar's pages show Chinese then English (`both`), or one language (`zh_only`,
    # `en_only`), from the catalogs (guidebot.i18n: extracted with these names as keywords);
    # the admin's pages have their own, per-language environment.
    env.globals["both"] = functools.partial(i18n.both, sep=" · ")
    env.globals["zh_only"] = functools.partial(i18n.gettext, lang=i18n.ZH)
    env.globals["en_only"] = functools.partial(i18n.gettext, lang=i18n.EN)
    return env


def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    html = _environment(TEMPLATES).get_template(template).render(**context)
    response = web.Response(text=html, content_type="text/html", status=status)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def error_response(status: int, code: str, reason: str) -> web.Response:
    return web.json_response({"error": {"code": code, "reason": reason}}, status=status)


async def json_object(request: web.Request) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one."""
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None
