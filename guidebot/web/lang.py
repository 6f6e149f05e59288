"""Which language a page speaks, and the admin pages' Jinja2 environment in that language.

The choice, first that applies: `?lang=zh|en` on the request (it changes the choice: saved on the
signed-in account and in the `gb_lang` cookie); the signed-in account's saved language; the
`gb_lang` cookie; Simplified Chinese. The words come from guidebot.i18n's catalogs through
Jinja2's i18n extension (`_("...")`, `{% trans %}`); one environment per language.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import jinja2
from aiohttp import web

from guidebot import i18n
from guidebot.metrics import kpis
from guidebot.resources import project_dir
from guidebot.sop.holdout import MIN_PER_GROUP
from guidebot.web.accounts import save_language
from guidebot.web.auth import Principal
from guidebot.web.keys import SESSIONS, SETTINGS

LANG_COOKIE = "gb_lang"
LANG_COOKIE_AGE = 365 * 24 * 3600
LANG = web.RequestKey("lang", str)  # the language chosen for this request
TEMPLATES = project_dir("templates") / "web"


def asked(request: web.Request) -> str | None:
    """The language `?lang=` asks for, if it names one."""
    return i18n.normalize(request.query.get("lang"))


def language_of(request: web.Request, who: Principal | None = None) -> str:
    """The request's language (see the module's docstring), kept on the request."""
    chosen = request.get(LANG)
    if chosen is None:
        chosen = (
            asked(request)
            or (who.language if who is not None else None)
            or i18n.normalize(request.cookies.get(LANG_COOKIE))
            or i18n.DEFAULT
        )
        request[LANG] = chosen
    return chosen


async def choose_language(request: web.Request, who: Principal) -> str:
    """language_of for a signed-in admin; `?lang=` different from the account's is saved."""
    chosen = language_of(request, who)
    wanted = asked(request)
    if wanted is not None and who.account_id is not None and who.language != wanted:
        async with request.app[SESSIONS]() as session, session.begin():
            await save_language(session, who.account_id, wanted)
    return chosen


def remember(request: web.Request, response: web.StreamResponse) -> None:
    """A `?lang=` choice is kept in the cookie for the next visit."""
    wanted = asked(request)
    if wanted is not None and request.cookies.get(LANG_COOKIE) != wanted:
        response.set_cookie(
            LANG_COOKIE,
            wanted,
            max_age=LANG_COOKIE_AGE,
            path="/",
            httponly=True,
            samesite="Lax",
            secure=request.app[SETTINGS].public_url.startswith("https://"),
        )


def switch_href(request: web.Request, lang: str) -> str:
    """This page in the other language: the same query with `lang=` set."""
    query = {k: v for k, v in request.query.items() if k != "lang"}
    query["lang"] = i18n.short(lang)
    return str(request.rel_url.with_query(query))


# ---- the admin pages' environment -----------------------------------------------------------


@functools.cache
def environment(lang: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES / "admin"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(i18n.translations(lang), newstyle=True)  # type: ignore[attr-defined]
    env.filters["kpi"] = functools.partial(format_kpi, lang=lang)
    env.filters["number"] = functools.partial(i18n.format_number, lang=lang)
    env.filters["percent"] = functools.partial(i18n.format_percent, lang=lang)
    env.filters["money"] = functools.partial(i18n.format_money, lang=lang)
    env.filters["day"] = functools.partial(i18n.format_date, lang=lang)
    env.filters["when"] = functools.partial(i18n.format_datetime, lang=lang)
    env.globals["label"] = functools.partial(i18n.label, lang=lang)
    env.filters["weekdays"] = functools.partial(i18n.weekdays, lang=lang)
    env.filters["channel_word"] = lambda code: i18n.label("channel", code, lang)
    env.globals["kpi_title"] = lambda name: kpis.KPI_BY_NAME[name].title(lang)
    env.globals["kpi_definition"] = lambda name: kpis.KPI_BY_NAME[name].explain(lang)
    env.filters["words"] = functools.partial(i18n.join, lang=lang)  # 、 or ", "
    env.filters["store_word"] = lambda code, names: names.get(code, code)
    env.globals["lang"] = lang
    env.globals["holdout_minimum"] = MIN_PER_GROUP  # below it a lift is refused (sop.holdout)
    env.globals["html_lang"] = "zh-CN" if lang == i18n.ZH else "en"
    return env


def format_kpi(value: Any, name: str, lang: str = i18n.DEFAULT) -> str:
    if value is None:
        return "–"
    kind = kpis.KPI_BY_NAME[name].kind
    if kind == "rate":
        return i18n.format_percent(float(value), lang)
    if kind == "minutes":
        return i18n.gettext("%(minutes)s min", lang, minutes=i18n.format_number(value, lang))
    if kind == "money":
        return i18n.format_money(value, lang)
    return i18n.format_number(value, lang)


def json_script(data: Any) -> str:
    # Inside <script type="application/json">: no "<" at all, so nothing can end the tag.
    return json.dumps(data, ensure_ascii=False).replace("<", "\\u003c")
