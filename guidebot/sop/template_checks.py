"""`sop check` for message templates: what a template may name and use, and what it should
not do (guidebot.sop.templates renders them)."""

from __future__ import annotations

import difflib

import jinja2
from jinja2 import meta, nodes

from guidebot.sop.sandbox import MAX_STEPS, MAX_TEMPLATE_BYTES
from guidebot.sop.templates import ALLOWED_VARIABLES, KNOWN_ATTRIBUTES

_DICT_METHODS = frozenset({"get", "items", "keys", "values"})
LOOP_TURNS_WARNED = 1000  # `sop check` warns about a range() loop of more turns than this


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


def template_warnings(env: jinja2.Environment, name: str) -> list[str]:
    """What may make a template slow to render, each as "W1xx: message": a loop inside a loop
    (W101), a loop over range() whose bound is not a small number written in the template
    (W102), a recursive loop (W103). Templates it includes are looked at too. It still renders,
    within the budget; these say where the budget may run out. Call it on a template
    check_template passes."""
    warnings: list[str] = []
    _warn(env, name, warnings, seen=set())
    return warnings


def _warn(env: jinja2.Environment, name: str, warnings: list[str], seen: set[str]) -> None:
    if name in seen:
        return
    seen.add(name)
    try:
        assert env.loader is not None
        source, _filename, _uptodate = env.loader.get_source(env, name)
        tree = env.parse(source, name=name)
    except Exception:
        return  # check_template reports it
    then = f"渲染到 {MAX_STEPS} 步即停，该步骤失败"
    then_en = f"a render stops at {MAX_STEPS} steps and its step fails"
    for loop in tree.find_all(nodes.For):
        for inner in _loops_inside(loop):
            warnings.append(
                f"W101: 模板 {name!r} 第 {inner.lineno} 行：循环里套着循环（外层在第 "
                f"{loop.lineno} 行），次数相乘，{then} / template {name!r} line {inner.lineno}: "
                f"a loop inside a loop (the outer one on line {loop.lineno}) multiplies their "
                f"turns; {then_en}"
            )
        zh, en = f"模板 {name!r} 第 {loop.lineno} 行", f"template {name!r} line {loop.lineno}"
        turns = _range_turns(loop.iter)
        if turns == -1:
            warnings.append(
                f"W102: {zh}：range() 的上限不是模板里写定的数，循环次数没有上限，{then} / {en}: "
                "a loop over range() whose bound is not a number written in the template has "
                f"no limit of its own; {then_en}"
            )
        elif turns is not None and turns > LOOP_TURNS_WARNED:
            warnings.append(
                f"W102: {zh}：range() 循环 {turns} 次（多于 {LOOP_TURNS_WARNED} 次），{then} / "
                f"{en}: a loop over range() of {turns} turns (more than {LOOP_TURNS_WARNED}); "
                f"{then_en}"
            )
        if loop.recursive:
            warnings.append(
                f"W103: {zh}：递归循环的深度取决于数据，{then} / {en}: a recursive loop goes as "
                f"deep as the data does; {then_en}"
            )
    for referenced in meta.find_referenced_templates(tree):
        if referenced is not None:
            _warn(env, referenced, warnings, seen)


def _loops_inside(loop: nodes.For) -> list[nodes.For]:
    """The loops directly inside `loop` (those nested deeper are inside those)."""
    found: list[nodes.For] = []
    stack: list[nodes.Node] = [*loop.body, *loop.else_]
    while stack:
        node = stack.pop()
        if isinstance(node, nodes.For):
            found.append(node)
        else:
            stack.extend(node.iter_child_nodes())
    return sorted(found, key=lambda n: n.lineno)


def _range_turns(iterable: nodes.Node) -> int | None:
    """Turns of a loop over range(...) with numbers written in the template; -1 for range()
    of anything else; None when the loop is not over range()."""
    if not (
        isinstance(iterable, nodes.Call)
        and isinstance(iterable.node, nodes.Name)
        and iterable.node.name == "range"
    ):
        return None
    if iterable.kwargs or iterable.dyn_args or iterable.dyn_kwargs:
        return -1
    try:
        numbers = [arg.as_const() for arg in iterable.args]
        return len(range(*numbers))
    except Exception:
        return -1


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
