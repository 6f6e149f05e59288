"""Parsing what a guide wrote into a command (no WeCom, no database)."""

from __future__ import annotations

import pytest

from guidebot.bot.commands import Command, parse


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("任务", Command("tasks", "", "zh")),
        ("  待办 ", Command("tasks", "", "zh")),
        ("tasks", Command("tasks", "", "en")),
        ("TODO", Command("tasks", "", "en")),
        ("素材 春季 新品", Command("content", "春季 新品", "zh")),
        ("素材春季", Command("content", "春季", "zh")),
        ("素材：春季", Command("content", "春季", "zh")),
        ("素材\u3000春季", Command("content", "春季", "zh")),
        ("content spring", Command("content", "spring", "en")),
        ("Content: Spring", Command("content", "Spring", "en")),
        ("客户 陈女士", Command("customer", "陈女士", "zh")),
        ("customer Chen", Command("customer", "Chen", "en")),
        ("业绩", Command("stats", "", "zh")),
        ("stats", Command("stats", "", "en")),
        ("帮助", Command("help", "", "zh")),
        ("help", Command("help", "", "en")),
        ("？", Command("help", "", "zh")),
        ("?", Command("help", "", "en")),
        ("你好", Command("help", "", "zh", understood=False)),
        ("contented", Command("help", "", "en", understood=False)),
        ("", Command("help", "", "en", understood=False)),
    ],
)
def test_parse(text, expected):
    assert parse(text) == expected
