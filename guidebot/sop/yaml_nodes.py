"""Stage 1 of reading a playbook: text to nodes (guidebot.sop.checks is stage 2).

`compose`: PyYAML's node tree (yaml.compose), converted here with YAML 1.2-style scalars:
quoted text is a string; plain `-?[0-9]+` is an integer; only `true`/`false` are booleans;
`null`, `~` and nothing are null; everything else (`22:00`, `no`, `on`, `2025-01-01`, `1.5`)
stays a string. Every value and every key keeps its 1-based line and column. Duplicate keys,
aliases and explicit tags are problems. Total: it reports, it never raises for bad content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import yaml

FILE = "(file)"  # the path shown for problems with the file as a whole
MAX_DEPTH = 32
INT_TEXT = re.compile(r"-?[0-9]+")
_STR_TAG = "tag:yaml.org,2002:str"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAP_TAG = "tag:yaml.org,2002:map"
_ALIAS_TAG = "!guidebot/alias"


class Issue(NamedTuple):
    line: int
    col: int
    path: str
    message: str


# ---- stage 1: text to nodes ------------------------------------------------------------------

STR, INT, BOOL, NULL, MAP, SEQ, BAD = "str", "int", "bool", "null", "map", "seq", "bad"


@dataclass(eq=False)
class Node:
    """A converted YAML value with its position (1-based) and, in a mapping, its key's."""

    kind: str
    value: Any  # str | int | bool | None | dict[str, Node] | list[Node]
    line: int
    col: int
    key_line: int = 0
    key_col: int = 0
    quoted: bool = False


class _Composer(yaml.SafeLoader):
    """PyYAML's parser and composer without YAML 1.1 implicit types; aliases are kept apart."""

    yaml_implicit_resolvers: ClassVar[dict] = {}

    depth = 0

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.get_event()
            return yaml.ScalarNode(_ALIAS_TAG, event.anchor or "", event.start_mark, event.end_mark)
        if self.depth >= MAX_DEPTH:  # stop before Python's recursion limit does
            raise _TooDeep(self.peek_event().start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class _TooDeep(Exception):
    def __init__(self, mark: yaml.Mark) -> None:
        super().__init__("too deep")
        self.mark = mark


def compose(text: str) -> tuple[Node | None, list[Issue]]:
    """The document's node tree, or None with the syntax problem."""
    loader = None
    try:
        loader = _Composer(text)
        raw = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return None, [Issue(line, col, FILE, f"YAML syntax error: {_syntax_message(exc)}")]
    except yaml.reader.ReaderError as exc:
        before = text[: max(exc.position, 0)]
        line = before.count("\n") + 1
        col = len(before) - (before.rfind("\n") + 1) + 1
        shown = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        return None, [
            Issue(
                line, col, FILE, f"YAML syntax error: character {shown} is not allowed in YAML text"
            )
        ]
    except yaml.YAMLError as exc:
        return None, [Issue(1, 1, FILE, f"YAML syntax error: {exc}")]
    except _TooDeep as exc:
        line, col = exc.mark.line + 1, exc.mark.column + 1
        return None, [Issue(line, col, FILE, f"nested too deeply (at most {MAX_DEPTH} levels)")]
    except RecursionError:
        return None, [Issue(1, 1, FILE, f"nested too deeply (at most {MAX_DEPTH} levels)")]
    finally:
        if loader is not None:
            loader.dispose()
    if raw is None:
        return None, []
    issues: list[Issue] = []
    return _convert(raw, "", 0, issues), issues


def _syntax_message(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or ""
    context = exc.context or ""
    if context.endswith("; first occurrence"):  # found duplicate anchor 'a'; first occurrence
        first = f" (first at line {exc.context_mark.line + 1})" if exc.context_mark else ""
        message = context.removesuffix("; first occurrence") + first
    elif context and problem and not context.startswith("while"):
        message = f"{context}, {problem}"  # "expected a single document ..., but found ..."
    elif context and problem:
        where = f" at line {exc.context_mark.line + 1}" if exc.context_mark else ""
        message = f"{problem} ({context}{where})"
    else:
        message = problem or context or "the text cannot be parsed"
    if "'\\t'" in problem or "\t" in problem:
        message += "; indent with spaces, not tabs"
    elif "<block end>" in problem or "<block mapping start>" in problem:
        message += "; check the indentation"
    elif "mapping values are not allowed" in problem:
        message += "; check the indentation, and quote text that contains ': '"
    return message


def _convert(raw: yaml.Node, path: str, depth: int, issues: list[Issue]) -> Node:
    line, col = raw.start_mark.line + 1, raw.start_mark.column + 1
    shown = path or FILE
    if depth > MAX_DEPTH:
        issues.append(Issue(line, col, shown, f"nested too deeply (at most {MAX_DEPTH} levels)"))
        return Node(BAD, None, line, col)
    if raw.tag == _ALIAS_TAG:
        issues.append(
            Issue(
                line,
                col,
                shown,
                f"aliases (*{raw.value}) are not supported in playbooks; write the value out",
            )
        )
        return Node(BAD, None, line, col)
    if isinstance(raw, yaml.ScalarNode):
        if raw.tag != _STR_TAG:
            return _bad_tag(raw, shown, line, col, issues)
        if raw.style is None:
            return Node(*_plain(raw.value), line, col)
        return Node(STR, raw.value, line, col, quoted=True)
    if isinstance(raw, yaml.SequenceNode):
        if raw.tag != _SEQ_TAG:
            return _bad_tag(raw, shown, line, col, issues)
        items = [
            _convert(item, f"{path}[{i}]", depth + 1, issues) for i, item in enumerate(raw.value)
        ]
        return Node(SEQ, items, line, col)
    if isinstance(raw, yaml.MappingNode):
        if raw.tag != _MAP_TAG:
            return _bad_tag(raw, shown, line, col, issues)
        result: dict[str, Node] = {}
        for key_raw, value_raw in raw.value:
            kline, kcol = key_raw.start_mark.line + 1, key_raw.start_mark.column + 1
            if (
                not isinstance(key_raw, yaml.ScalarNode)
                or key_raw.tag != _STR_TAG
                or not isinstance(key_raw.value, str)
            ):
                what = "a list" if isinstance(key_raw, yaml.SequenceNode) else "a mapping"
                if isinstance(key_raw, yaml.ScalarNode):
                    what = "an alias" if key_raw.tag == _ALIAS_TAG else "a tagged value"
                issues.append(Issue(kline, kcol, shown, f"a key must be plain text, got {what}"))
                continue
            key = key_raw.value
            child_path = join_path(path, key)
            if key in result:
                first = result[key]
                issues.append(
                    Issue(
                        kline,
                        kcol,
                        child_path,
                        f"duplicate key {key!r}: first at line {first.key_line}, again at line "
                        f"{kline}; a key may appear only once",
                    )
                )
                continue
            child = _convert(value_raw, child_path, depth + 1, issues)
            child.key_line, child.key_col = kline, kcol
            result[key] = child
        return Node(MAP, result, line, col)
    return Node(BAD, None, line, col)  # pragma: no cover - PyYAML has no other node kinds


def _plain(text: str) -> tuple[str, Any]:
    if INT_TEXT.fullmatch(text) and len(text) <= 18:
        return INT, int(text)
    if text in ("true", "false"):
        return BOOL, text == "true"
    if text in ("", "~", "null"):
        return NULL, None
    return STR, text


def _bad_tag(raw: yaml.Node, path: str, line: int, col: int, issues: list[Issue]) -> Node:
    tag = raw.tag.replace("tag:yaml.org,2002:", "!!")
    issues.append(
        Issue(
            line,
            col,
            path,
            f"YAML tag {tag!r} is not supported in playbooks; write the plain value (quote text)",
        )
    )
    return Node(BAD, None, line, col)


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
