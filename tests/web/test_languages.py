"""The admin in Simplified Chinese by default, English by choice (per request, remembered in a
cookie and on the account); display names instead of codes; KPI definitions on the tiles;
styled error pages; `/`; the guides list; stopped tasks apart from skipped ones."""

from __future__ import annotations

import re
from datetime import timedelta

from markupsafe import escape
from sqlalchemy import select

from guidebot.metrics import kpis
from guidebot.web.accounts import Account
from guidebot.web.keys import SOP
from guidebot.web.lang import LANG_COOKIE
from tests.metrics.conftest import at
from tests.web.conftest import admin_cookie, guide_cookie

PERIOD = {"from": "2026-03-09", "to": "2026-03-15"}


def _visible(html: str) -> str:
    """The page's text as a reader sees it: no tags, attributes, scripts or JSON."""
    html = re.sub(r"<script.*?</script>", " ", html, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def _with(cookie: dict[str, str], **more: str) -> dict[str, str]:
    extra = "; ".join(f"{k}={v}" for k, v in more.items())
    return {"Cookie": f"{cookie['Cookie']}; {extra}" if extra else cookie["Cookie"]}


async def _language(h, username: str) -> str | None:
    async with h.sessions() as session:
        return await session.scalar(select(Account.language).where(Account.username == username))


async def test_chinese_by_default_english_when_asked_and_the_choice_is_kept(h, sessions):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await h.settle()
    boss = admin_cookie(await sessions.account("boss", "hq", []))

    response = await h.client.get("/admin", params=PERIOD, headers=boss)
    html = await response.text()
    assert '<html lang="zh-CN">' in html and "<h1>概览 · 全部门店 · 2026年3月9日" in html
    assert ">门店</a>" in html and ">导购</a>" in html and ">退出登录</button>" in html
    assert LANG_COOKIE not in response.headers.get("Set-Cookie", "")
    assert await _language(h, "boss") is None

    # ?lang=en: this page in English, the choice saved on the account and in a cookie.
    response = await h.client.get("/admin", params={**PERIOD, "lang": "en"}, headers=boss)
    html = await response.text()
    assert '<html lang="en">' in html and "<h1>Dashboard · All stores · Mar 9, 2026" in html
    assert ">Sign out</button>" in html and "概览" not in html
    assert f"{LANG_COOKIE}=en" in response.headers["Set-Cookie"]
    assert await _language(h, "boss") == "en"

    # The account's choice wins over a cookie saying otherwise (another browser's).
    response = await h.client.get("/admin/stores", headers=_with(boss, **{LANG_COOKIE: "zh"}))
    assert "<h1>Stores ·" in await response.text()
    # Switching back is a link on every page, and is saved the same way.
    assert 'href="/admin/stores?lang=zh"' in await response.text()
    response = await h.client.get("/admin/stores", params={"lang": "zh"}, headers=boss)
    assert "<h1>门店 ·" in await response.text()
    assert await _language(h, "boss") == "zh_CN"
    response = await h.client.get("/admin/stores", headers=boss)
    assert "<h1>门店 ·" in await response.text()


async def test_signed_out_the_cookie_remembers_the_language(h, sessions):
    response = await h.client.get("/admin/login")
    assert "<h1>登录 guidebot</h1>" in await response.text()
    response = await h.client.get("/admin/login", params={"lang": "en"})
    assert "<h1>Sign in to guidebot</h1>" in await response.text()
    cookie = response.cookies[LANG_COOKIE]
    assert cookie.value == "en" and cookie["httponly"] and cookie["samesite"] == "Lax"
    h.client.session.cookie_jar.clear()
    response = await h.client.get("/admin/login", headers={"Cookie": f"{LANG_COOKIE}=en"})
    assert "<h1>Sign in to guidebot</h1>" in await response.text()
    # A language guidebot has no catalog for is not a choice.
    response = await h.client.get("/admin/login", params={"lang": "fr"})
    assert "<h1>登录 guidebot</h1>" in await response.text()
    assert LANG_COOKIE not in response.headers.get("Set-Cookie", "")


async def test_kpi_tiles_carry_their_definition_from_the_one_kpi_table(h, sessions):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await h.settle()
    boss = admin_cookie(await sessions.account("boss", "hq", []))
    for lang, path in (("zh_CN", "/admin"), ("en", "/admin/guides/g1")):
        params = {**PERIOD, "lang": "en" if lang == "en" else "zh"}
        html = await (await h.client.get(path, params=params, headers=boss)).text()
        for kpi in kpis.KPIS:
            tile = re.search(
                rf'<div class="kpi" data-kpi-name="{kpi.name}">(.*?)</details>', html, re.S
            )[1]
            title, definition = kpi.title(lang), kpi.explain(lang)
            # The definition a hover away (title) and a tap away (<details>), the name shown.
            assert f'title="{_escaped(definition)}">{_escaped(title)} ' in tile, (lang, kpi.name)
            assert f'<p class="definition">{_escaped(definition)}</p>' in tile
        if lang != "zh_CN":
            continue  # English words may be spelled like a code ("forwards")
        # No KPI's code among the words (a definition may name WeCom's own fields).
        visible = _visible(re.sub(r'<p class="definition">.*?</p>', "", html, flags=re.S))
        assert not [name for name in kpis.KPI_NAMES if name in visible], visible


def _escaped(text: str) -> str:
    return str(escape(text))


async def test_error_pages_are_in_the_layout_in_the_language_with_a_way_back(h, sessions):
    boss = admin_cookie(await sessions.account("boss", "hq", []))
    for path, status, words in [
        ("/admin/nowhere", 404, "页面不存在"),
        ("/admin/guides/nobody", 404, "页面不存在"),
        ("/admin/stores?store=99", 404, "页面不存在"),
        ("/admin?from=2026-13-01", 400, "“开始日期”的 &#39;2026-13-01&#39; 不是有效日期"),
        ("/admin/guides?from=2026-03-10&to=2026-03-01", 400, "开始日期 2026-03-10 晚于结束日期"),
    ]:
        response = await h.client.get(path, headers=boss)
        html = await response.text()
        assert response.status == status, (path, html)
        assert response.content_type == "text/html"
        assert words in html and 'class="card problem"' in html, path
        assert '<a class="back" href="/admin">← 返回概览</a>' in html
        assert ">退出登录</button>" in html  # the signed-in layout, navigation and all
    response = await h.client.get("/admin?from=tomorrow&lang=en", headers=boss)
    html = await response.text()
    assert response.status == 400
    assert "&#39;from&#39; must be a date YYYY-MM-DD, got &#39;tomorrow&#39;" in html
    assert "← Back to the dashboard" in html
    # Signed out, an unknown path is the same page without the navigation.
    h.client.session.cookie_jar.clear()
    response = await h.client.get("/admin/nowhere/at/all")
    assert response.status == 404 and "页面不存在" in await response.text()
    # A manager asking for HQ's page is told it is not there, in the layout.
    m11 = admin_cookie(await sessions.account("m11", "manager", ["11"]))
    response = await h.client.get("/admin/playbooks", headers=m11)
    assert response.status == 404 and 'class="card problem"' in await response.text()


async def test_the_admin_script_is_served_from_the_machine(h):
    response = await h.client.get("/admin/static/admin.js")
    assert response.status == 200 and response.content_type == "application/javascript"
    script = await response.text()
    assert "table.sortable" in script and "data-preset" in script


async def test_the_root_leads_to_the_admin_or_a_guide_s_sidebar(h, sessions):
    response = await h.client.get("/", allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (303, "/admin")
    boss = admin_cookie(await sessions.account("boss", "hq", []))
    response = await h.client.get("/", headers=boss, allow_redirects=False)
    assert response.headers["Location"] == "/admin"
    g1 = guide_cookie(sessions.guide("g1"))
    response = await h.client.get("/", headers=g1, allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (303, "/sidebar")
    response = await h.client.get("/", headers={"Cookie": "gb_guide=forged"})
    assert response.url.path == "/admin/login"  # followed: the admin's sign-in page


async def _tasks_in_every_state(h) -> None:
    """g1: wmc01's reminder sent and left open, wmc02's skipped by g1; g3: wmc03 left before
    the reminder (stopped); g2: wmc04's reminder sent and open."""
    h.set_time(at(9, 10))
    for guide, customer in (("g1", "wmc01"), ("g1", "wmc02"), ("g3", "wmc03"), ("g2", "wmc04")):
        await h.add(guide, customer)
    await h.tick()
    h.set_time(at(9, 11))
    await h.lose("g3", "wmc03")
    h.set_time(at(10, 11))
    await h.tick()
    await h.skip("g1", "wmc02", "顾客出差")
    await h.settle()


async def test_the_guides_list(h, sessions):
    await _tasks_in_every_state(h)
    h.set_time(at(10, 12))
    boss = admin_cookie(await sessions.account("boss", "hq", []))
    response = await h.client.get("/admin/guides", params=PERIOD, headers=boss)
    html = await response.text()
    assert response.status == 200
    rows = _rows(html)
    assert set(rows) == {"g1", "g2", "g3"}
    g1 = rows["g1"]
    # name, store, customers, open, overdue, then the key KPIs (new customers first)
    assert g1[:6] == ["王芳", "张江店", "2", "1", "0", "2"], g1
    assert rows["g3"][2:5] == ["0", "0", "0"]  # wmc03 left: no customer, nothing to do
    assert 'href="/admin/guides/g1?from=2026-03-09&amp;to=2026-03-15"' in html
    assert 'class="sortable"' in html and 'title="当前与导购保持好友关系的客户"' in html
    # A day later the open reminder is overdue (more than 24 hours past due).
    h.set_time(at(11, 12))
    boss = admin_cookie(await sessions.account("boss2", "hq", []))
    rows = _rows(await (await h.client.get("/admin/guides", headers=boss)).text())
    assert rows["g1"][3:5] == ["1", "1"] and rows["g2"][3:5] == ["1", "1"]
    # A manager sees their store's guides only; English on request.
    m11 = admin_cookie(await sessions.account("m11", "manager", ["11"]))
    response = await h.client.get("/admin/guides", params={"lang": "en"}, headers=m11)
    html = await response.text()
    assert set(_rows(html)) == {"g1", "g3"}
    assert "<th>Guide</th><th>Store</th>" in html and "Open tasks" in html


async def test_the_guides_list_comes_a_page_at_a_time_and_exports_whole(h, sessions, monkeypatch):
    """Two guides to a page here (a hundred in production): the order runs on across pages,
    the links keep the period and the store, and the export holds every guide."""
    from guidebot.web import guides_page

    await _tasks_in_every_state(h)
    h.set_time(at(11, 12))  # g1's and g2's reminders overdue, g3 with nothing to do
    boss = admin_cookie(await sessions.account("boss", "hq", []))
    whole = _rows(await (await h.client.get("/admin/guides", params=PERIOD, headers=boss)).text())
    monkeypatch.setattr(guides_page, "GUIDES_PER_PAGE", 2)
    first = await (await h.client.get("/admin/guides", params=PERIOD, headers=boss)).text()
    assert list(_rows(first)) == ["g2", "g1"]  # overdue first, then by name (李娜, 王芳)
    assert "第 1 页，共 2 页 · 共 3 位导购" in _visible(first)
    assert 'href="?from=2026-03-09&amp;to=2026-03-15&amp;page=2"' in first
    second = await (
        await h.client.get("/admin/guides", params={**PERIOD, "page": "2"}, headers=boss)
    ).text()
    assert list(_rows(second)) == ["g3"] and "第 2 页，共 2 页" in _visible(second)
    # Each page's figures, summed for its own guides, are those of the list on one page.
    assert {**_rows(first), **_rows(second)} == whole
    assert 'href="?from=2026-03-09&amp;to=2026-03-15&amp;page=1"' in second
    assert "page=3" not in second
    past = await h.client.get("/admin/guides", params={**PERIOD, "page": "9"}, headers=boss)
    assert list(_rows(await past.text())) == ["g3"]  # past the end: the last page
    export = await h.client.get("/admin/guides", params={**PERIOD, "format": "csv"}, headers=boss)
    assert export.status == 200
    assert [line.split(",")[0] for line in (await export.text()).splitlines()[1:]] == [
        "李娜",
        "王芳",
        "张伟",
    ]
    bad = await h.client.get("/admin/guides", params={"page": "0"}, headers=boss)
    assert bad.status == 400


async def test_the_guides_list_finds_guides_by_a_part_of_their_name_or_userid(
    h, sessions, monkeypatch
):
    from guidebot.web import guides_page

    await _tasks_in_every_state(h)
    boss = admin_cookie(await sessions.account("boss", "hq", []))

    async def found(q: str, **more: str) -> list[str]:
        params = {**PERIOD, "q": q, **more}
        response = await h.client.get("/admin/guides", params=params, headers=boss)
        assert response.status == 200
        return list(_rows(await response.text()))

    assert await found("王") == ["g1"]  # 王芳
    assert await found("G2") == ["g2"]  # the userid, whatever the case
    assert await found("nobody") == []
    html = await (await h.client.get("/admin/guides", params={"q": "张"}, headers=boss)).text()
    assert 'name="q" value="张"' in html and 'placeholder="姓名或导购账号"' in html
    # Paging keeps the words, and the export holds what was found.
    monkeypatch.setattr(guides_page, "GUIDES_PER_PAGE", 1)
    page = await (
        await h.client.get("/admin/guides", params={**PERIOD, "q": "g"}, headers=boss)
    ).text()
    assert "q=g&amp;page=2" in page
    export = await h.client.get(
        "/admin/guides", params={**PERIOD, "q": "李", "format": "csv"}, headers=boss
    )
    assert [line.split(",")[0] for line in (await export.text()).splitlines()[1:]] == ["李娜"]


def _rows(html: str) -> dict[str, list[str]]:
    body = re.search(r'<table id="guides"[^>]*>.*?<tbody>(.*?)</tbody>', html, re.S)[1]
    return {
        guide: [_visible(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for guide, row in re.findall(r'<tr data-guide="([^"]+)">(.*?)</tr>', body, re.S)
    }


async def test_stopped_tasks_are_shown_apart_from_skipped_ones_with_their_reason(h, sessions):
    await _tasks_in_every_state(h)
    boss = admin_cookie(await sessions.account("boss", "hq", []))
    html = await (await h.client.get("/admin/playbooks", headers=boss)).text()
    table = re.search(r'data-testid="steps-week_sop">(.*?)</table>', html, re.S)[1]
    headers = [_visible(c) for c in re.findall(r"<th[^>]*>(.*?)</th>", table, re.S)]
    assert headers == [
        "步骤",
        "等待中",
        "已发送",
        "已完成",
        "导购已跳过",
        "已停止",
        "已过期",
        "失败",
        "结果未知",
    ]
    # The step as guides read it (no name in the playbook: its action's), not its id.
    call = re.search(r'<tr data-step="call"><td>提醒</td>(.*?)</tr>', table, re.S)[1]
    cells = re.findall(r"<td[^>]*>(\d+)", call)
    assert cells == ["0", "2", "0", "1", "1", "0", "0", "0"]
    assert "客户删除了导购: 1" in call  # the reason, a hover and a tap away
    assert ".yaml" not in html and "sop_dir" not in html  # no server path on the page
    en = await (await h.client.get("/admin/playbooks?lang=en", headers=boss)).text()
    assert "Skipped by the guide" in en and "Customer deleted the guide: 1" in en


async def test_codes_are_shown_as_words(h, sessions):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    h.advance(timedelta(minutes=5))
    await h.lose("g1", "wmc01")
    await h.add("g2", "wmc02")
    boss = admin_cookie(await sessions.account("boss", "hq", []))
    html = await (await h.client.get("/admin/customers", headers=boss)).text()
    assert 'data-status="lost">客户已删除</span>' in html
    assert 'data-status="active">跟进中</span>' in html
    assert ">王芳</a>" in html  # the guide's name, not their userid
    assert ">active<" not in html and ">lost<" not in html


async def test_the_api_gives_each_kpi_its_label_and_definition_in_both_languages(h, sessions):
    from guidebot.metrics import kpis as the_kpis

    response = await h.client.get(
        "/api/v1/kpis", headers={"Authorization": "Bearer admin-token-for-tests"}
    )
    assert response.status == 200
    listed = (await response.json())["kpis"]
    assert [k["name"] for k in listed] == list(the_kpis.KPI_NAMES)
    day7 = next(k for k in listed if k["name"] == "day7_retention")
    assert day7["label"] == {"zh_CN": "7日留存", "en": "Day-7 retention"}
    assert day7["definition"]["zh_CN"].startswith("D 日的新客中")
    assert day7["definition"]["en"] == the_kpis.KPI_BY_NAME["day7_retention"].definition
    # A guide's sidebar may read them too.
    g1 = guide_cookie(sessions.guide("g1"))
    assert (await h.client.get("/api/v1/kpis", headers=g1)).status == 200
    assert (await h.client.get("/api/v1/kpis")).status == 401


async def test_a_broken_playbook_s_errors_are_coded_and_in_the_page_s_language(
    h, sessions, sop_dir
):
    from tests.harness import write_playbook

    write_playbook(
        sop_dir,
        """
        playbook: broken
        version: 1
        name: 坏掉的旅程
        trigger: {event: customer.added}
        timezone: Asia/Shanghai
        send_window: {hours: "09:00-21:00", days: mon-sun}
        stop_wen: [contact.lost]
        steps:
          - {id: call, at: enroll + 1d, action: remind, template: remind_day1_intro.j2,
             expire_after: 1d}
        """,
    )
    h.app[SOP].registry.reload()
    boss = admin_cookie(await sessions.account("boss", "hq", []))
    html = await (await h.client.get("/admin/playbooks", headers=boss)).text()
    problems = re.search(r'data-testid="problems-broken">(.*?)</ul>', html, re.S)[1]
    assert "位置 7:1 · stop_wen" in problems and '<span class="badge bad">E201</span>' in problems
    assert "playbook 中有未知的键 &#39;stop_wen&#39;（是不是 &#39;stop_when&#39;？）" in problems
    assert str(sop_dir) not in html and "broken.yaml" not in html  # no server path
    html = await (await h.client.get("/admin/playbooks?lang=en", headers=boss)).text()
    problems = re.search(r'data-testid="problems-broken">(.*?)</ul>', html, re.S)[1]
    assert "at 7:1 · stop_wen" in problems and "E201</span> unexpected key" in problems
