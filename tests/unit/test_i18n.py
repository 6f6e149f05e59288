"""guidebot.i18n: the catalogs cover every message the code and templates use, in Chinese; the
language codes, display names and zh-CN formats."""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from guidebot import i18n
from guidebot.metrics import kpis

ROOT = Path(__file__).resolve().parents[2]
# babel.cfg's map with the README's keywords: the markers, and the sidebar's `both`, `zh_only`
# and `en_only` (guidebot.web.responses).
KEYWORDS = {
    **DEFAULT_KEYWORDS,
    "N_": None,
    "NP_": ((1, "c"), 2),
    "both": None,
    "zh_only": None,
    "en_only": None,
}
PLACEHOLDER = re.compile(r"%\([a-z_]+\)[sdr]")


def extracted(root: Path = ROOT, cfg: Path = ROOT / "babel.cfg") -> dict[tuple, str]:
    """(context, msgid) → where, for every message babel.cfg's map finds under root."""
    with cfg.open() as f:
        method_map, options_map = parse_mapping_cfg(f)
    found: dict[tuple, str] = {}
    for filename, lineno, message, _comments, context in extract_from_dir(
        root, method_map, options_map, keywords=KEYWORDS
    ):
        msgid = message if isinstance(message, str) else message[0]
        if msgid:
            found[(context, msgid)] = f"{filename}:{lineno}"
    return found


def catalog(lang: str):
    path = i18n.LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as f:
        return read_po(f, locale=lang)


def untranslated(found: dict[tuple, str], lang: str = i18n.ZH) -> list[str]:
    zh = catalog(lang)
    missing = []
    for (context, msgid), where in sorted(found.items(), key=str):
        entry = zh.get(msgid, context=context)
        text = entry.string if entry is not None else None
        text = text[0] if isinstance(text, tuple) else text
        if not text or (entry is not None and entry.fuzzy):
            missing.append(f"{where}: {msgid!r}")
    return missing


def test_every_message_in_the_code_and_templates_has_a_chinese_translation():
    found = extracted()
    assert len(found) > 150, len(found)  # the map does reach guidebot/ and templates/
    assert ("relation status", "Active") in found and (None, "Dashboard") in found
    assert untranslated(found) == []


def test_a_message_without_a_translation_fails_the_check(tmp_path):
    (tmp_path / "guidebot").mkdir()
    (tmp_path / "guidebot" / "new.py").write_text('N_("A word nobody translated")\n')
    (tmp_path / "templates" / "web").mkdir(parents=True)
    (tmp_path / "templates" / "web" / "x.html").write_text('{{ _("Dashboard") }}\n')
    found = extracted(tmp_path)
    assert set(found) == {(None, "A word nobody translated"), (None, "Dashboard")}
    assert untranslated(found) == ["guidebot/new.py:1: 'A word nobody translated'"]


def test_translations_keep_the_placeholders_of_their_message():
    for lang in i18n.LANGUAGES:
        for message in catalog(lang):
            if not message.id or not message.string:
                continue
            ids = message.id if isinstance(message.id, tuple) else (message.id,)
            strings = message.string if isinstance(message.string, tuple) else (message.string,)
            wanted = set(PLACEHOLDER.findall(ids[-1]))
            for text in filter(None, strings):  # en: an empty string falls back to the msgid
                assert set(PLACEHOLDER.findall(text)) == wanted, (lang, message.id, text)


def test_both_catalogs_hold_the_same_messages():
    zh = {(m.context, m.id) for m in catalog(i18n.ZH) if m.id}
    en = {(m.context, m.id) for m in catalog(i18n.EN) if m.id}
    assert zh == en


@pytest.mark.parametrize(
    ("raw", "lang"),
    [
        ("zh", i18n.ZH),
        ("zh-CN", i18n.ZH),
        ("zh_cn", i18n.ZH),
        ("zh-Hans", i18n.ZH),
        ("en", i18n.EN),
        ("en-US", i18n.EN),
        ("en_GB.UTF-8", i18n.EN),
        ("fr", None),
        ("", None),
        (None, None),
        ("z" * 5000, None),
    ],
)
def test_language_codes(raw, lang):
    assert i18n.normalize(raw) == lang


def test_messages_and_display_names_in_both_languages():
    assert i18n.gettext("Dashboard") == "概览"
    assert i18n.gettext("Dashboard", i18n.EN) == "Dashboard"
    assert i18n.both("Sign out") == "退出登录 Sign out"
    assert i18n.label("relation_status", "active") == "跟进中"
    assert i18n.label("enrollment_status", "active") == "进行中"  # one English word, two meanings
    assert i18n.label("relation_status", "active", i18n.EN) == "Active"
    assert i18n.label("channel", "store_qr") == "门店二维码"
    assert i18n.label("action", "guide_task") == "群发任务"
    assert i18n.label("task_status", "stopped") == "已停止"
    assert i18n.label("task_status", "skipped") == "导购已跳过"
    assert i18n.label("event", "tag.added:VIP") == "打上标签: VIP"
    assert i18n.label("channel", "a_brand_new_channel") == "a_brand_new_channel"
    assert i18n.label("channel", None) == "–"
    overdue = ("%(num)s day overdue", "%(num)s days overdue")
    assert i18n.ngettext(*overdue, 3) == "逾期 3 天"
    assert i18n.ngettext(*overdue, 1, i18n.EN) == "1 day overdue"
    assert i18n.ngettext(*overdue, 3, i18n.EN) == "3 days overdue"


def test_dates_and_numbers_are_formatted_for_zh_cn():
    assert i18n.format_date(date(2026, 3, 9)) == "2026年3月9日"
    assert i18n.format_date("2026-03-09", i18n.EN) == "Mar 9, 2026"
    assert i18n.format_date(datetime(2026, 3, 9, 23, 0)) == "2026年3月9日"
    assert i18n.format_number(1234567) == "1,234,567"
    assert i18n.format_percent(0.1234) == "12.3%"
    assert i18n.format_money("-1234.5") == "-1,234.50"
    assert i18n.format_percent(None) == i18n.format_number(None) == "–"


def test_every_kpi_has_a_name_and_a_definition_in_both_languages():
    cjk = re.compile(r"[\u4e00-\u9fff]")
    for kpi in kpis.KPIS:
        assert kpi.title(i18n.ZH) == kpi.label, kpi.name
        assert cjk.search(kpi.label) or kpi.label == "GMV", kpi.name  # GMV is GMV in Chinese too
        assert kpi.title(i18n.EN) and not cjk.search(kpi.title(i18n.EN)), kpi.name
        assert kpi.explain(i18n.EN) == kpi.definition
        assert cjk.search(kpi.explain(i18n.ZH)), kpi.name


def test_the_bot_s_words_come_from_the_catalogs_in_both_languages():
    from guidebot.bot import replies, task_commands

    cjk = re.compile(r"[\u4e00-\u9fff]")
    for table in (replies.TEXT, task_commands.TEXT):
        assert set(table) == {"zh", "en"}
        for chinese in _leaves(table["zh"]):
            assert cjk.search(chinese), chinese  # a message the extractor missed stays English
        for english in _leaves(table["en"]):
            assert not cjk.search(english), english
    assert replies.TEXT["zh"]["status"]["lost"] == "已删除你"
    assert replies.TEXT["en"]["status"]["lost"] == "deleted you"


def _leaves(words):
    if isinstance(words, dict):
        for value in words.values():
            yield from _leaves(value)
    elif isinstance(words, tuple | list):
        for value in words:
            yield from _leaves(value)
    else:
        yield words


def test_a_send_windows_days_read_as_words():
    from guidebot import i18n

    assert i18n.weekdays("mon-fri", i18n.ZH) == "周一至周五"
    assert i18n.weekdays("sat,sun", i18n.ZH) == "周六、周日"
    assert i18n.weekdays("mon-fri", i18n.EN) == "Mon-Fri"
