"""`guidebot sop check` in Chinese and in English, with the same codes: golden outputs for a few
broken playbooks in both languages, a code for every message the golden cases make, and the
command's choice of language."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from guidebot import i18n
from guidebot.cli import main
from guidebot.sop.check_language import KINDS, UNKNOWN, cli_language, explain, translate
from guidebot.sop.cli import check_line
from guidebot.sop.loader import load_playbook
from tests.sop_language.test_golden import CASE_FILES, CASES, TEMPLATES

ROOT = Path(__file__).resolve().parents[2]
LANGUAGES = Path(__file__).parent / "languages"
# A few broken playbooks: keys, types, durations, anchors, the window, events, templates, YAML.
GOLDEN = [
    "unknown_key_suggestion",
    "wrong_types",
    "duration_bad",
    "anchor_missing",
    "window_crosses_midnight",
    "stop_when_unknown",
    "template_unknown_attribute",
    "template_loops",
    "missing_step_keys",
    "yaml_syntax",
    "welcome_twice",
    "behaviour_after",
    "behaviour_after_missing",
    "behaviour_misplaced",
    "behaviour_opened",
    "behaviour_stage",
    "behaviour_stage_none",
    "behaviour_stage_same",
    "best_time",
    "group_steps_rules",
    "group_steps_mixed",
    "group_labels",
]


def lines(case: str, lang: str) -> list[str]:
    loaded = load_playbook(CASES / f"{case}.yaml", TEMPLATES)
    found = sorted((*loaded.errors, *loaded.warnings), key=lambda e: (e.line, e.col))
    return [
        check_line(error, lang).replace(str(CASES) + os.sep, "").replace(str(TEMPLATES), "<t>")
        for error in found
    ]


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
@pytest.mark.parametrize("case", GOLDEN)
def test_golden_in_both_languages(case: str, lang: str) -> None:
    expected_file = LANGUAGES / f"{case}.{lang}.expected"
    actual = lines(case, lang)
    if os.environ.get("GUIDEBOT_UPDATE_GOLDEN"):
        expected_file.write_text("".join(line + "\n" for line in actual), encoding="utf-8")
    assert actual == expected_file.read_text(encoding="utf-8").splitlines()


def test_the_two_languages_give_each_line_the_same_code() -> None:
    for case in GOLDEN:
        zh = [line.split(": ", 2)[2] for line in lines(case, i18n.ZH)]
        en = [line.split(": ", 2)[2] for line in lines(case, i18n.EN)]
        assert len(zh) == len(en) > 0
        for chinese, english in zip(zh, en, strict=True):
            code = english.split()[1][:-1] if english.startswith("warning") else english.split()[0]
            assert code in chinese and chinese != english


def test_every_message_of_the_golden_cases_has_a_code_and_a_chinese_sentence() -> None:
    for path in CASE_FILES:
        loaded = load_playbook(path, TEMPLATES)
        for error in (*loaded.errors, *loaded.warnings):
            code, _kind, _parts = explain(error.message)
            assert code != UNKNOWN, (path.name, error.message)
            _code, chinese = translate(error.message, i18n.ZH)
            assert chinese != error.message, (path.name, error.message)
    codes = [kind.code for kind in KINDS]
    assert len(codes) == len(set(codes))


def test_a_message_nobody_coded_keeps_its_english_under_e000() -> None:
    assert translate("a sentence from a new check", i18n.ZH) == (
        UNKNOWN,
        "a sentence from a new check",
    )


@pytest.mark.parametrize(
    ("asked", "environ", "lang"),
    [
        ("en", {"LANG": "zh_CN.UTF-8"}, i18n.EN),
        ("zh", {"LANG": "en_US.UTF-8"}, i18n.ZH),
        (None, {"LANG": "en_US.UTF-8"}, i18n.EN),
        (None, {"LANG": "en_US.UTF-8", "LC_ALL": "zh_CN.UTF-8"}, i18n.ZH),
        (None, {"LANG": "C.UTF-8"}, i18n.ZH),
        (None, {}, i18n.ZH),
    ],
)
def test_the_command_s_language(asked, environ, lang) -> None:
    assert cli_language(asked, environ) == lang


def test_sop_check_speaks_chinese_unless_told_english(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)
    bad = "tests/sop_language/cases/welcome_twice.yaml"
    assert main(["sop", "check", "sop/first_contact.yaml", bad]) == 1
    captured = capsys.readouterr()
    assert captured.out == (
        f"{bad}:8:45: steps[1].action: E417 每个旅程只能有一个欢迎语步骤（已有 steps[0]）；"
        "欢迎语 code 只能用一次\n"
    )
    assert captured.err == "2 个旅程中有 1 个出错，共 1 处错误\n"
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    assert main(["sop", "check", "sop/first_contact.yaml"]) == 0
    assert capsys.readouterr().out == "1 playbook OK\n"
    assert main(["sop", "check", "--lang", "zh", "sop/first_contact.yaml"]) == 0
    assert capsys.readouterr().out == "1 个旅程检查通过\n"
