"""YAML 1.2-style scalars: what PyYAML's safe_load gets wrong does not happen here."""

from __future__ import annotations

import yaml

from guidebot.sop.yaml_nodes import BOOL, INT, MAP, NULL, STR, compose


def values(text: str) -> dict[str, tuple[str, object]]:
    root, issues = compose(text)
    assert not issues
    assert root is not None and root.kind == MAP
    return {key: (node.kind, node.value) for key, node in root.value.items()}


def test_the_anchor_document_example() -> None:
    text = "a: 22:00\nb: 08:00\nc: 9:30\nd: no\non: x\n"
    # What PyYAML 1.1 does with it (YAML 1.1 reads sexagesimal times and yes/no):
    assert yaml.safe_load(text) == {"a": 1320, "b": "08:00", "c": 570, "d": False, True: "x"}
    assert values(text) == {
        "a": (STR, "22:00"),
        "b": (STR, "08:00"),
        "c": (STR, "9:30"),
        "d": (STR, "no"),
        "on": (STR, "x"),
    }


def test_integers_booleans_and_nulls() -> None:
    got = values(
        'i: 42\nn: -3\nq: "42"\nt: true\nf: false\nT: True\ny: yes\noff: off\n'
        "e:\ntilde: ~\nnull_word: null\nfloat: 1.5\ndate: 2025-01-01\nhex: 0x10\n"
    )
    assert got == {
        "i": (INT, 42),
        "n": (INT, -3),
        "q": (STR, "42"),
        "t": (BOOL, True),
        "f": (BOOL, False),
        "T": (STR, "True"),
        "y": (STR, "yes"),
        "off": (STR, "off"),
        "e": (NULL, None),
        "tilde": (NULL, None),
        "null_word": (NULL, None),
        "float": (STR, "1.5"),
        "date": (STR, "2025-01-01"),
        "hex": (STR, "0x10"),
    }


def test_positions_are_one_based_for_keys_and_values() -> None:
    root, _ = compose("# comment\nsteps:\n  - id: day1\n    at:   enroll\n")
    assert root is not None
    steps = root.value["steps"]
    assert (steps.key_line, steps.key_col) == (2, 1)
    step = steps.value[0]
    assert (step.line, step.col) == (3, 5)
    at = step.value["at"]
    assert (at.key_line, at.key_col, at.line, at.col) == (4, 5, 4, 11)
