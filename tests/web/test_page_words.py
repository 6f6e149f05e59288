"""The "done when" of the Chinese workbench: no English left on a Chinese page but proper names,
units and codes (listed here, each with why), no Chinese on an English page where an English
word belongs (the seeded data's own names excepted: a customer called 顾客01 is called that in
either language), and no server path on any page. Every admin page reached from /admin by its
links is read, with a demo-like week seeded, as HQ and as a store manager."""

from __future__ import annotations

import re

from tests.web.conftest import admin_cookie
from tests.web.workbench import Page, seed_week, seeded_words, walk

# Words that stay as they are on a Chinese page, and why.
ALLOWED = {
    "guidebot",  # the product's name
    "WeCom",  # a proper name (企业微信 is used where the sentence is ours)
    "CSV",  # file formats, named as Excel names them
    "Excel",
    "YAML",  # the playbook file's format
    "ID",  # 客户 ID: the word Chinese software uses
    "VIP",  # a tag people wrote
    "English",  # the language switch names the other language in that language
    "GMV",  # the retail term, as HQ says it
    "get_groupmsg_send_result",  # WeCom's API, named so HQ can look it up
    "SOP",  # the retail word HQ uses for a playbook's tasks (SOP 任务)
    "D",  # "D 日": how a Chinese report names the day a figure is about
    "Asia/Shanghai",  # a time zone's IANA name, as a playbook writes it
    "AppID",  # a mini program's AppID, WeChat's word for it
    "JPG",  # image formats
    "PNG",
    "hq:alice",  # the audit filter's example: an actor as the trail writes them
    "YYYY-MM-DD",  # how a date is typed, in a bad date's message
}
# WeCom's own field names, cited in the KPI definitions so HQ can match WeCom's figures.
ALLOWED |= {
    "WelcomeCode",
    "chat_cnt",
    "message_cnt",
    "reply_percentage",
    "avg_reply_time",
    "negative_feedback_cnt",
    "del_external_contact",
    "del_follow_user",
    "get_groupmsg_task",  # WeCom's APIs and field behind the group steps' figures
    "get_moment_task",
    "publish_status",
    "groupchat/statistic",  # WeCom's API the group pages' chat figures come from
}
PHRASES = ("guidebot sop check",)  # the command HQ's engineers run, as they type it
DURATION = re.compile(r"(\d+[dhms])+")  # 1d, 20s, 1d12h: durations as a playbook writes them
CODE = re.compile(r"[EW]\d{3}")  # the checker's codes (E201), the same in both languages
CJK = re.compile(r"[\u3400-\u9fff\u3000-\u303f\uff00-\uffef]+")
ERROR_PAGES = (
    "/admin/nowhere",
    "/admin?from=2026-13-01",
    "/admin/customers/nobody",
    "/admin?to=明天",
)
SERVER_PATH = re.compile(r"(?<![\w.:/])/(?:tmp|home|root|usr|var|srv|opt|work|app|etc)/\S*")


def english_words(text: str, seeded: set[str]) -> set[str]:
    """The tokens with Latin letters that are neither allowed nor the seeded data's own."""
    for phrase in PHRASES:
        text = text.replace(phrase, " ")
    found = set()
    for token in re.findall(r"[A-Za-z0-9][A-Za-z0-9_.:/@+\-]*", text):
        token = token.rstrip(".:-/")
        if not re.search("[A-Za-z]", token) or token in seeded or token in ALLOWED:
            continue
        if DURATION.fullmatch(token) or CODE.fullmatch(token):
            continue
        found.add(token)
    return found


def chinese_left(text: str, names: set[str]) -> set[str]:
    for value in sorted(names, key=len, reverse=True):
        text = text.replace(value, " ")
    text = text.replace("中文", " ")  # the switch back names the language in itself
    return {m for m in CJK.findall(text) if CJK.fullmatch(m)} - {"·", "“", "”", "（", "）"}


async def _read_every_page(h, cookie, lang):
    return {url: Page(html) for url, (_route, html) in (await walk(h, cookie, lang=lang)).items()}


async def test_no_english_on_a_chinese_page_and_no_server_path(h, sessions, sop_dir, tmp_path):
    await seed_week(h)
    cookies = {
        role: admin_cookie(await sessions.account(f"who-{role}", role, stores))
        for role, stores in (("hq", []), ("manager", ["11"]))
    }
    names, codes = await seeded_words(h)  # the accounts' names too, and the audit trail's
    found = {}
    for role, cookie in cookies.items():
        for url, page in (await _read_every_page(h, cookie, "zh")).items():
            words = english_words(page.text, names | codes)
            if words:
                found[(role, url)] = sorted(words)
            assert not SERVER_PATH.search(page.text), (url, SERVER_PATH.search(page.text))
            assert str(tmp_path) not in page.text and str(sop_dir) not in page.text
        for path in ERROR_PAGES:  # the styled error pages too
            response = await h.client.get(path, headers=cookie)
            assert response.status in (400, 404), path
            if words := english_words(Page(await response.text()).text, names | codes):
                found[(role, path)] = sorted(words)
    assert not found, found


async def test_no_chinese_on_an_english_page_but_the_data_s_own_names(h, sessions):
    await seed_week(h)
    cookies = {
        role: admin_cookie(await sessions.account(f"who-{role}", role, stores))
        for role, stores in (("hq", []), ("manager", ["11"]))
    }
    names, _codes = await seeded_words(h)
    found = {}
    for role, cookie in cookies.items():
        for url, page in (await _read_every_page(h, cookie, "en")).items():
            left = chinese_left(page.text, names)
            if left:
                found[(role, url)] = sorted(left)
            assert not SERVER_PATH.search(page.text), url
    assert not found, found


def test_the_word_checks_catch_a_code_and_a_leftover():
    # A status shown as its code, a KPI's name, a sentence left in English: caught.
    text = "客户 王芳 active 新客 new_customers Sign out guidebot 1d12h E201 VIP 导出: CSV Excel"
    assert english_words(text, {"王芳"}) == {"active", "new_customers", "Sign", "out"}
    assert chinese_left("Customers 王芳 · 跟进中 · Active 中文", {"王芳"}) == {"跟进中"}
    assert SERVER_PATH.search("File: /tmp/pytest-1/deploy/sop/week_sop.yaml")
    assert not SERVER_PATH.search("<a href='/admin/stores'> 2026/03/09")


async def test_the_sign_in_page_in_either_language(h):
    zh = Page(await (await h.client.get("/admin/login", params={"lang": "zh"})).text()).text
    assert english_words(zh, set()) == set() and "登录" in zh
    en = Page(await (await h.client.get("/admin/login", params={"lang": "en"})).text()).text
    assert chinese_left(en, set()) == set() and "Sign in" in en
