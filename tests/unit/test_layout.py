"""The one-way house holds: import contracts, no cycles, and rooms of a readable size.

`make test` runs `lint-imports` on the tree (the contracts are in pyproject.toml); these tests
show the contracts bite (a copy of the package with one deliberate violation fails them, naming
the import) and keep the sizes docs/architecture.md promises.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "guidebot"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(tree / "pyproject.toml")],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


# One line added to one module of a copy of the package, and what lint-imports must then say.
VIOLATIONS = {
    "a domain speaks HTTP": (
        "guidebot/contacts/models.py",
        "import aiohttp.web",
        "guidebot.contacts.models -> aiohttp",
    ),
    "a lower layer imports a higher one": (
        "guidebot/contacts/models.py",
        "import guidebot.web",
        "guidebot.contacts.models -> guidebot.web",
    ),
    "the WeCom protocol imports the database": (
        "guidebot/wecom/crypto.py",
        "import guidebot.db.base",
        "guidebot.wecom.crypto -> guidebot.db.base",
    ),
    "a domain imports the scheduler": (
        "guidebot/metrics/cohorts.py",
        "import guidebot.scheduler",
        "guidebot.metrics.cohorts -> guidebot.scheduler",
    ),
    "two modules of one package import each other": (
        "guidebot/wecom/flatxml.py",
        "import guidebot.wecom.crypto",
        "No cycles are allowed in guidebot.wecom.",
    ),
}


@pytest.mark.parametrize("violation", sorted(VIOLATIONS))
def test_the_contracts_fail_on_a_deliberate_violation(tmp_path: Path, violation: str) -> None:
    path, line, said = VIOLATIONS[violation]
    shutil.copytree(PACKAGE, tmp_path / "guidebot", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / path).open("a", encoding="utf-8") as module:
        module.write(f"\n{line}  # noqa\n")

    result = _lint(tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert said in result.stdout, result.stdout


def test_no_module_is_over_600_lines() -> None:
    over = {
        str(p.relative_to(ROOT)): n
        for p in _sources()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert over == {}


def test_no_function_is_over_80_lines() -> None:
    over = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    over[f"{path.relative_to(ROOT)}:{node.name}"] = lines
    assert over == {}
