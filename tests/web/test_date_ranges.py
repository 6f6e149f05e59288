"""Every admin page that takes a date range shows it the same way: from, to and the presets
今天, 本周, 本月, 近 30 天 in the same form, dated from today in HQ's time zone (admin.js turns a
preset into the two dates and sends the form). Found by walking every page, so a page added
later with a range and no presets fails here."""

from __future__ import annotations

import re

from tests.web.conftest import admin_cookie
from tests.web.workbench import seed_week, walk

PRESETS = {"zh": ["今天", "本周", "本月", "近 30 天"], "en": ["Today", "This week", "This month"]}


def _forms_with_a_range(html: str) -> list[str]:
    forms = re.findall(r"<form\b.*?</form>", html, re.S)
    return [f for f in forms if re.search(r'<input type="date" name="from"', f)]


async def test_every_page_with_a_date_range_has_the_presets(h, sessions):
    await seed_week(h)
    today = h.clock.now().astimezone(h.settings.tz).date().isoformat()
    cookie = admin_cookie(await sessions.account("boss", "hq", []))
    with_range = set()
    for lang in ("zh", "en"):
        pages = await walk(h, cookie, lang=lang)
        for url, (route, html) in pages.items():
            if 'name="from"' not in html:
                continue
            forms = _forms_with_a_range(html)
            assert len(forms) == 1, (url, "a `from` date outside the one range form")
            form = forms[0]
            assert '<input type="date" name="to"' in form, url
            buttons = re.findall(
                r'<button type="button" class="preset" data-preset="(\w+)" '
                r'data-today="([\d-]+)">([^<]+)</button>',
                form,
            )
            assert [b[0] for b in buttons] == ["today", "week", "month", "last30"], url
            assert {b[1] for b in buttons} == {today}, url
            words = [b[2] for b in buttons]
            assert words[: len(PRESETS[lang])] == PRESETS[lang], (url, words)
            with_range.add(route)
    # The pages known to take a range are among them (others may join; none may lack presets).
    assert {
        "/admin",
        "/admin/stores",
        "/admin/guides",
        "/admin/guides/{userid}",
        "/admin/groups",
        "/admin/cohorts",
        "/admin/audit",
    } <= with_range, with_range
