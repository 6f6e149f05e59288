"""Message templates: HQ-written Jinja2, rendered in a sandbox with a closed set of variables.

HQ text is untrusted. Templates render in an immutable sandbox (no attribute access to
internals, no mutation of the values passed in), with StrictUndefined (a missing value is an
error, not an empty string) and without HTML escaping (the result is chat text). The top-level
names a template may use are `ALLOWED_VARIABLES`; what they hold (customer.name, store.name,
links.content, ...) is up to the caller. The loader checks every template a playbook names.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment

ALLOWED_VARIABLES = frozenset(
    {"customer", "guide", "store", "content", "links", "playbook", "step"}
)
# What the engine puts in each variable (engine.message_variables); `customer.nmae` is caught
# when the playbook is checked instead of failing for every customer at send time.
KNOWN_ATTRIBUTES: Mapping[str, frozenset[str]] = {
    "customer": frozenset({"name", "external_userid", "remark"}),
    "guide": frozenset({"name", "userid"}),
    "store": frozenset({"name", "code"}),
    "content": frozenset({"id", "title", "url"}),
    "links": frozenset({"content", "task"}),
    "playbook": frozenset({"id", "name", "version"}),
    "step": frozenset({"id", "action"}),
}
_DICT_METHODS = frozenset({"get", "items", "keys", "values"})
MAX_TEMPLATE_BYTES = 64 * 1024

__all__ = [
    "ALLOWED_VARIABLES",
    "KNOWN_ATTRIBUTES",
    "check_template",
    "message_environment",
    "render_message",
    "sample_variables",
]


def message_environment(templates_dir: Path) -> SandboxedEnvironment:
    """The environment every message renders in (templates_dir is templates/messages)."""
    return ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(templates_dir), encoding="utf-8"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        auto_reload=True,
        keep_trailing_newline=False,
    )


def check_template(env: jinja2.Environment, name: str) -> list[str]:
    """What is wrong with a template: not found, not parsable, or names outside the set.

    Templates it includes, imports or extends are checked too. An empty list means it is fine.
    """
    problems: list[str] = []
    _check(env, name, problems, seen=set())
    return problems


def _check(env: jinja2.Environment, name: str, problems: list[str], seen: set[str]) -> None:
    if name in seen:
        return
    seen.add(name)
    where = _where(env)
    if not isinstance(name, str) or not name or name.startswith("/") or ".." in name.split("/"):
        problems.append(f"template {name!r} must be a file name under {where}")
        return
    try:
        assert env.loader is not None
        source, _filename, _uptodate = env.loader.get_source(env, name)
    except jinja2.TemplateNotFound:
        problems.append(f"template {name!r} not found in {where}{_suggest_template(env, name)}")
        return
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        problems.append(f"template {name!r} cannot be read: {exc}")
        return
    if len(source.encode("utf-8")) > MAX_TEMPLATE_BYTES:
        problems.append(f"template {name!r} is larger than {MAX_TEMPLATE_BYTES // 1024} KiB")
        return
    try:
        tree = env.parse(source, name=name)
        # Compiling finds what parsing does not, such as a filter that does not exist.
        env.compile(tree, name=name, filename=name)
    except jinja2.TemplateSyntaxError as exc:
        problems.append(f"template {name!r} line {exc.lineno}: {exc.message}")
        return
    except Exception as exc:  # a compiler corner case must not take the loader down
        problems.append(f"template {name!r} cannot be compiled: {exc}")
        return
    undeclared = meta.find_undeclared_variables(tree)
    for variable in sorted(undeclared - ALLOWED_VARIABLES):
        close = difflib.get_close_matches(variable, sorted(ALLOWED_VARIABLES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(
            f"template {name!r} uses unknown variable {variable!r}{hint}; "
            f"allowed: {', '.join(sorted(ALLOWED_VARIABLES))}"
        )
    problems.extend(_unknown_attributes(name, tree, undeclared))
    for referenced in meta.find_referenced_templates(tree):
        if referenced is None:
            problems.append(f"template {name!r} includes a template chosen at run time")
        else:
            _check(env, referenced, problems, seen)


def render_message(env: jinja2.Environment, name: str, variables: Mapping[str, Any]) -> str:
    """The message text; raises jinja2.TemplateError on any failure (missing value, unsafe
    access, unknown template, an exception inside the template)."""
    unknown = set(variables) - ALLOWED_VARIABLES
    if unknown:
        raise jinja2.TemplateRuntimeError(
            f"variables not allowed in messages: {', '.join(sorted(unknown))}"
        )
    try:
        return env.get_template(name).render(dict(variables)).strip()
    except jinja2.TemplateError:
        raise
    except Exception as exc:
        raise jinja2.TemplateRuntimeError(f"template {name!r} failed: {exc!r}") from exc


def sample_variables(
    *,
    playbook: Mapping[str, Any] | None = None,
    step: Mapping[str, Any] | None = None,
    store_name: str | None = None,
) -> dict[str, Any]:
    """Plausible values for every allowed variable, for `sop simulate` and previews."""
    return {
        "customer": {"name": "王女士", "external_userid": "wmSAMPLE0001", "remark": "王女士"},
        "guide": {"name": "李娜", "userid": "li.na"},
        "store": {"name": store_name or "上海南京西路店", "code": "SH001"},
        "content": {
            "id": "sample",
            "title": "春季新品搭配指南",
            "url": "https://example.com/lookbook",
        },
        "links": {
            "content": "https://guidebot.example.com/r/abc123",
            "task": "https://guidebot.example.com/sidebar/tasks/1",
        },
        "playbook": dict(playbook or {"id": "sample", "name": "示例", "version": 1}),
        "step": dict(step or {"id": "sample", "action": "guide_task"}),
    }


def _unknown_attributes(name: str, tree: nodes.Template, undeclared: set[str]) -> list[str]:
    """`customer.nmae` and the like, for variables the template did not assign itself."""
    found: dict[tuple[str, str], None] = {}
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        target = node.node
        if not isinstance(target, nodes.Name) or target.name not in undeclared:
            continue
        if target.name not in KNOWN_ATTRIBUTES:
            continue
        if isinstance(node, nodes.Getattr):
            attribute = node.attr
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            attribute = node.arg.value
        else:
            continue
        known = KNOWN_ATTRIBUTES[target.name]
        if attribute not in known and attribute not in _DICT_METHODS:
            found[(target.name, attribute)] = None
    problems = []
    for variable, attribute in found:
        known = sorted(KNOWN_ATTRIBUTES[variable])
        close = difflib.get_close_matches(attribute, known, n=1)
        hint = f" (did you mean {variable}.{close[0]}?)" if close else ""
        problems.append(
            f"template {name!r} uses {variable}.{attribute}, which messages do not have{hint}; "
            f"{variable} has {', '.join(known)}"
        )
    return problems


def _where(env: jinja2.Environment) -> str:
    loader = env.loader
    if isinstance(loader, jinja2.FileSystemLoader) and loader.searchpath:
        return str(loader.searchpath[0])
    return "the message templates"


def _suggest_template(env: jinja2.Environment, name: str) -> str:
    try:
        names = env.list_templates()
    except Exception:
        return ""
    close = difflib.get_close_matches(name, names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
