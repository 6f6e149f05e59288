"""Golden tests: a fixture playbook in, the exact `file:line:col: path: message` lines out.

Each `cases/<name>.yaml` has a `cases/<name>.expected` beside it (empty: the file is valid).
Messages that name the templates directory show it as `<templates>`. To rewrite the expected
files after changing a message on purpose: GUIDEBOT_UPDATE_GOLDEN=1 pytest tests/sop_language,
then review the diff.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from guidebot.sop.loader import load_playbook

HERE = Path(__file__).parent
CASES = HERE / "cases"
TEMPLATES = HERE / "templates" / "messages"
CASE_FILES = sorted(CASES.glob("*.yaml"))


def golden_lines(path: Path) -> list[str]:
    """The errors, then the warnings (`path: warning W1xx: ...`)."""
    loaded = load_playbook(path, TEMPLATES)
    return [
        str(replace(error, file=path.name)).replace(str(TEMPLATES), "<templates>")
        for error in (*loaded.errors, *loaded.warnings)
    ]


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_golden(path: Path) -> None:
    expected_file = path.with_suffix(".expected")
    actual = golden_lines(path)
    if os.environ.get("GUIDEBOT_UPDATE_GOLDEN"):
        expected_file.write_text("".join(line + "\n" for line in actual), encoding="utf-8")
    expected = expected_file.read_text(encoding="utf-8").splitlines()
    assert actual == expected


def test_every_case_has_an_expected_file() -> None:
    assert len(CASE_FILES) >= 60
    for path in CASE_FILES:
        assert path.with_suffix(".expected").is_file(), path.name
    orphans = {p.stem for p in CASES.glob("*.expected")} - {p.stem for p in CASE_FILES}
    assert not orphans


def test_errors_are_sorted_and_only_the_valid_case_loads() -> None:
    for path in CASE_FILES:
        loaded = load_playbook(path, TEMPLATES)
        positions = [(e.line, e.col) for e in loaded.errors]
        assert positions == sorted(positions), path.name
        if path.stem == "no":
            assert loaded.enabled and loaded.playbook is not None
            assert loaded.playbook.id == "no"  # `no` stayed a string, not False
        elif loaded.warnings:  # warnings only: it loads
            assert loaded.enabled and not loaded.errors, path.name
            positions = [(w.line, w.col) for w in loaded.warnings]
            assert positions == sorted(positions), path.name
        else:
            assert not loaded.enabled and loaded.errors, path.name
            assert loaded.playbook is None
            assert loaded.id == path.stem
