"""Whatever text HQ saves, loading answers with errors or a playbook, and never raises."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guidebot.sop.checks import TOP_KEYS
from guidebot.sop.loader import LoadedPlaybook, load_playbook, parse_playbook
from guidebot.sop.step_checks import STEP_KEYS
from guidebot.sop.templates import message_environment
from tests.fuzzing import examples

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates" / "messages"
ENV = message_environment(TEMPLATES)
SHIPPED = (ROOT / "sop" / "first_contact.yaml").read_text(encoding="utf-8")
FUZZ = settings(
    max_examples=examples(150),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def check(text: str) -> LoadedPlaybook:
    loaded = parse_playbook(text, "first_contact.yaml", TEMPLATES, env=ENV)
    assert loaded.enabled or loaded.errors
    assert loaded.enabled == (loaded.playbook is not None)
    for error in loaded.errors:
        assert "internal error" not in error.message, error
        assert error.line >= 1 and error.col >= 1
        assert str(error).startswith(f"first_contact.yaml:{error.line}:{error.col}: ")
    positions = [(e.line, e.col) for e in loaded.errors]
    assert positions == sorted(positions)
    return loaded


YAMLISH = st.sampled_from(
    list(TOP_KEYS)
    + list(STEP_KEYS)
    + [
        ": ",
        "- ",
        "\n",
        "  ",
        "{",
        "}",
        "[",
        "]",
        ",",
        "'",
        '"',
        "&a ",
        "*a",
        "!!int ",
        "#",
        "22:00",
        "no",
        "enroll + 1d",
        "welcome",
        "20s",
        "---",
        "? ",
        "|",
        ">",
        "\t",
        "~",
    ]
)


@FUZZ
@given(st.text(max_size=400))
def test_random_text(text: str) -> None:
    check(text)


@FUZZ
@given(st.lists(YAMLISH | st.text(max_size=5), max_size=60).map("".join))
def test_yaml_shaped_noise(text: str) -> None:
    check(text)


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=12)
    | st.sampled_from(
        ["enroll", "welcome.j2", "customer.added", "20s", "3d", "10:00-21:00", "mon-fri"]
    )
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(list(TOP_KEYS) + list(STEP_KEYS)) | st.text(max_size=6),
            inner,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@settings(FUZZ, max_examples=examples(80))
@given(st.dictionaries(st.sampled_from(TOP_KEYS), VALUES, max_size=len(TOP_KEYS)))
def test_random_documents_with_our_keys(document: dict) -> None:
    check(yaml.safe_dump(document, allow_unicode=True))


@FUZZ
@given(st.data())
def test_mutated_shipped_playbook(data: st.DataObject) -> None:
    lines = SHIPPED.splitlines()
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(lines) - 1))
        action = data.draw(st.sampled_from(["drop", "duplicate", "edit", "indent"]))
        if action == "drop" and len(lines) > 1:
            del lines[index]
        elif action == "duplicate":
            lines.insert(index, lines[index])
        elif action == "indent":
            lines[index] = "  " + lines[index]
        elif lines[index]:
            position = data.draw(st.integers(0, len(lines[index]) - 1))
            replacement = data.draw(st.text(max_size=3))
            lines[index] = lines[index][:position] + replacement + lines[index][position + 1 :]
    check("\n".join(lines) + "\n")


def test_the_unmutated_playbook_loads() -> None:
    assert check(SHIPPED).enabled


def test_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "first_contact.yaml"
    path.write_bytes(b"playbook: first_contact\nname: \xff\xfe\n")
    loaded = load_playbook(path, TEMPLATES)
    assert [str(e) for e in loaded.errors] == [
        f"{path}:2:7: (file): not UTF-8 text: save the file as UTF-8"
    ]


def test_deep_nesting_and_huge_numbers() -> None:
    deep = check("steps: " + "[" * 2000 + "]" * 2000 + "\n")
    assert any("nested too deeply" in e.message for e in deep.errors)
    huge = check("version: " + "9" * 5000 + "\n")
    assert any(e.path == "version" for e in huge.errors)
