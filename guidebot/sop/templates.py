"""Message templates: HQ-written Jinja2, rendered in a sandbox with a closed set of variables.

HQ text is untrusted. Templates render in an immutable sandbox (no attribute access to
internals, no mutation of the values passed in), with StrictUndefined (a missing value is an
error, not an empty string) and without HTML escaping (the result is chat text). The top-level
names a template may use are `ALLOWED_VARIABLES`; what they hold (customer.name, store.name,
links.content, ...) is up to the caller. The loader checks every template a playbook names.

Rendering is bounded, because a template that passes the checks may still loop for ever
(`{% for a in range(99999) %}{% for b in range(99999) %}...`): every render has a budget of
work (`MAX_STEPS`: each loop turn, call, filter and operator is a step, and so is every
`STEP_CHARS` characters it makes) and of time (`MAX_RENDER_SECONDS`), no value it makes may be
longer than `MAX_VALUE` characters or items, and no number it passes for a size may be larger.
Over budget, the render raises `RenderBudgetExceeded` (a TemplateError). The server renders off
the event loop, a few at a time (`render_off_loop`), so even a slow render never holds up
callbacks.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedEnvironment,
    SandboxedFormatter,
)

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
# The render budget. A shipped message takes a few steps; 100,000 loop turns take a few
# hundredths of a second, and the time limit stops what the steps miss (slow steps).
MAX_STEPS = 100_000
STEP_CHARS = 64
MAX_VALUE = 10_000  # characters of a string, items of a list, and any size passed as a number
MAX_INT_BITS = 256
MAX_RENDER_SECONDS = 1.0
CLOCK_STEPS = 64  # how often (in steps) a render looks at the clock
RENDER_THREADS = 2  # renders at a time, off the event loop
LOOP_TURNS_WARNED = 1000  # `sop check` warns about a range() loop of more turns than this

__all__ = [
    "ALLOWED_VARIABLES",
    "KNOWN_ATTRIBUTES",
    "RenderBudgetExceeded",
    "check_template",
    "message_environment",
    "render_message",
    "render_off_loop",
    "sample_variables",
    "template_warnings",
]


def message_environment(templates_dir: Path) -> SandboxedEnvironment:
    """The environment every message renders in (templates_dir is templates/messages)."""
    return BudgetedSandbox(
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


_RENDERERS: ThreadPoolExecutor | None = None
_RENDERERS_LOCK = threading.Lock()


async def render_off_loop(
    env: jinja2.Environment, jobs: Sequence[tuple[str, Mapping[str, Any]]]
) -> list[str | jinja2.TemplateError]:
    """Render (template name, variables) jobs in a worker thread, in order: the text, or the
    TemplateError that rendering raised. At most RENDER_THREADS renders run at once."""
    global _RENDERERS
    if not jobs:
        return []
    with _RENDERERS_LOCK:
        if _RENDERERS is None:
            _RENDERERS = ThreadPoolExecutor(RENDER_THREADS, thread_name_prefix="guidebot-render")
    return await asyncio.get_running_loop().run_in_executor(_RENDERERS, _render_all, env, jobs)


def _render_all(
    env: jinja2.Environment, jobs: Sequence[tuple[str, Mapping[str, Any]]]
) -> list[str | jinja2.TemplateError]:
    results: list[str | jinja2.TemplateError] = []
    over: dict[str, RenderBudgetExceeded] = {}
    for name, variables in jobs:
        if name in over:
            # Its budget ran out for another customer: a batch of 500 must not take 500 s.
            results.append(over[name])
            continue
        try:
            results.append(render_message(env, name, variables))
        except RenderBudgetExceeded as exc:
            results.append(exc)
            over[name] = RenderBudgetExceeded(
                f"{exc} (同一批中已超出，未再渲染 / over budget earlier in this batch; not "
                "rendered again)"
            )
        except jinja2.TemplateError as exc:
            results.append(exc)
    return results


# ---- the render budget ------------------------------------------------------------------------


class RenderBudgetExceeded(jinja2.TemplateRuntimeError):
    """A render did too much work, took too long, or made a value too large."""


class _Budget:
    __slots__ = ("clock_at", "deadline", "name", "steps")

    def __init__(self, name: str | None) -> None:
        self.name = name or "(template)"
        self.steps = MAX_STEPS
        self.clock_at = MAX_STEPS  # the clock is read every CLOCK_STEPS steps
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS

    def charge(self, steps: int) -> None:
        self.steps -= steps
        if self.steps <= self.clock_at:
            self._check()

    def _check(self) -> None:
        if self.steps < 0:
            raise RenderBudgetExceeded(
                f"模板 {self.name!r} 渲染超出限制：循环太长或嵌套太深（超过 {MAX_STEPS} 步）"
                f" / template {self.name!r} is over its render budget: loops too long or "
                f"nested too deep (more than {MAX_STEPS} steps)"
            )
        if time.monotonic() > self.deadline:
            raise RenderBudgetExceeded(
                f"模板 {self.name!r} 渲染超时（超过 {MAX_RENDER_SECONDS:g} 秒）"
                f" / template {self.name!r} is over its render budget: it took longer than "
                f"{MAX_RENDER_SECONDS:g} s"
            )
        self.clock_at = self.steps - CLOCK_STEPS

    def refuse(self, what_zh: str, what_en: str) -> RenderBudgetExceeded:
        return RenderBudgetExceeded(
            f"模板 {self.name!r} 渲染超出限制：{what_zh} / template {self.name!r} is over its "
            f"render budget: {what_en}"
        )


_BUDGET: ContextVar[_Budget | None] = ContextVar("guidebot_render_budget", default=None)


def _budget() -> _Budget:
    # Outside Template.render (constant folding at compile time, Template.module) each
    # operation still meets the size limits, with a budget of its own.
    return _BUDGET.get() or _Budget(None)


def _too_long(value: Any) -> RenderBudgetExceeded:
    return _budget().refuse(
        f"一个值超过 {MAX_VALUE} 个字符或元素",
        f"a value longer than {MAX_VALUE} characters or items",
    )


def _too_big(number: Any) -> RenderBudgetExceeded:
    return _budget().refuse(
        f"数字 {number} 超过上限 {MAX_VALUE}", f"the number {number} is above the limit {MAX_VALUE}"
    )


def _too_many_bits() -> RenderBudgetExceeded:
    return _budget().refuse(f"数字大于 2^{MAX_INT_BITS}", f"a number larger than 2^{MAX_INT_BITS}")


def _cost(value: Any) -> int:
    """Steps for having made `value`; raises when it is larger than a value may be."""
    if isinstance(value, str):
        size = len(value)
        if size > MAX_VALUE:
            raise _too_long(value)
        return size // STEP_CHARS
    if isinstance(value, list | tuple | dict | set | frozenset):
        if len(value) > MAX_VALUE:
            raise _too_long(value)
        return len(value)
    if type(value) is int and value.bit_length() > MAX_INT_BITS:
        raise _too_many_bits()
    return 0


def _check_numbers(values: Iterable[Any]) -> None:
    for value in values:
        if type(value) is int and not -MAX_VALUE <= value <= MAX_VALUE:
            raise _too_big(value)


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d*)(?:\.(\d*))?")
_NUMBER = re.compile(r"\d+")


def _check_format(template: str, percent: bool) -> None:
    """Widths and precisions in a format ("%99999999d", "{:>99999999}") are sizes."""
    if percent:
        found = [n for match in _PERCENT_SPEC.finditer(template) for n in match.groups() if n]
    else:
        found = _NUMBER.findall(template)
    _check_numbers(int(n) for n in found)


class _BoundedFormatter(SandboxedFormatter):
    """str.format in templates: each field's final spec (after nested fields) is checked."""

    def format_field(self, value: Any, format_spec: str) -> Any:
        _check_format(format_spec, percent=False)
        return super().format_field(value, format_spec)


def _replaced_size(text: str, old: str, new: str, count: int = -1) -> int:
    hits = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * (len(new) - len(old))


def _precheck(name: str, value: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """Operations whose result may be far larger than what goes in, refused before they run."""
    size = None
    if name == "replace" and isinstance(value, str) and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        size = _replaced_size(value, old, new, args[2] if len(args) > 2 else -1)
    elif name in ("join", "indent", "expandtabs") and isinstance(value, str | list | tuple):
        if name == "indent":
            width = args[0] if args else kwargs.get("width", 4)
            pad = len(width) if isinstance(width, str) else width
            size = len(value) + (value.count("\n") + 1) * (pad if isinstance(pad, int) else 0)
        elif name == "expandtabs" and isinstance(value, str):
            tab = args[0] if args else kwargs.get("tabsize", 8)
            size = len(value) + value.count("\t") * (tab if isinstance(tab, int) else 8)
        elif name == "join" and not isinstance(value, str):
            sep = args[0] if args else kwargs.get("d", "")
            size = len(value) * len(str(sep)) + sum(len(str(item)) for item in value)
    elif name == "format" and isinstance(value, str):
        _check_format(value, percent=True)
    if size is not None and size > MAX_VALUE:
        raise _too_long(value)


def _bounded_range(*args: int) -> range:
    _check_numbers(args)
    numbers = range(*args)
    if len(numbers) > MAX_VALUE:
        raise _too_long(numbers)
    return numbers


def _finalize(value: Any) -> Any:
    """Every `{{ ... }}` output: its size counts toward the budget."""
    if type(value) is str and len(value) < STEP_CHARS:
        return value
    _budget().charge(_cost(value))
    return value


_PRECHECKED = frozenset({"replace", "join", "indent", "expandtabs", "format"})


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    # Filters that receive the context, eval context or environment first keep that argument
    # where it is (functools.wraps copies the jinja_pass_arg marker).
    first = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0
    precheck = name in _PRECHECKED

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        rest = args[first + 1 :]
        if rest:
            _check_numbers(rest)
        if kwargs:
            _check_numbers(kwargs.values())
        if precheck:
            _precheck(name, args[first], rest, kwargs)
        result = func(*args, **kwargs)
        _budget().charge(1 + _cost(args[first]) + _cost(result))
        return result

    return guarded


class _BudgetedCodeGenerator(CodeGenerator):
    """Compiles every `for` to charge the budget each turn, and every `~` to charge for the
    string it makes. A turn weighs 1 step plus the template text its body writes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._charged: dict[int, int] = {}  # id of a loop's iterable node -> weight per turn

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        weight = self._charged.get(id(node))
        if weight is None:
            return super().visit(node, *args, **kwargs)
        self.write(f"environment.charged_iter({weight}, ")
        super().visit(node, *args, **kwargs)
        self.write(")")
        return None

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        text = sum(len(data.data) for data in node.find_all(nodes.TemplateData))
        includes = sum(1 for _ in node.find_all(nodes.Include))
        self._charged[id(node.iter)] = 1 + (text + includes * MAX_TEMPLATE_BYTES) // STEP_CHARS
        try:
            super().visit_For(node, frame)
        finally:
            del self._charged[id(node.iter)]

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.charged_value(")
        super().visit_Concat(node, frame)
        self.write(")")


class BudgetedTemplate(jinja2.Template):
    """Every render gets a fresh budget."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        token = _BUDGET.set(_Budget(self.name))
        try:
            return super().render(*args, **kwargs)
        finally:
            _BUDGET.reset(token)

    def generate(self, *args: Any, **kwargs: Any) -> Iterator[str]:
        yield self.render(*args, **kwargs)


class BudgetedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with a budget of work, time and size for every render."""

    code_generator_class = _BudgetedCodeGenerator
    template_class = BudgetedTemplate
    # Operators that can make a value much larger than their operands ("x" * 10**9).
    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("finalize", _finalize)
        super().__init__(*args, **kwargs)
        self.globals["range"] = _bounded_range
        self.globals.pop("lipsum", None)  # a text generator; no message needs it
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}

    def charged_iter(self, weight: int, iterable: Iterable[Any]) -> Iterator[Any]:
        budget = _budget()
        for item in iterable:
            budget.charge(weight)
            yield item

    def charged_value(self, value: Any) -> Any:
        _budget().charge(1 + _cost(value))
        return value

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(times, int)
                if sized and len(seq) * times > MAX_VALUE:
                    raise _too_long(seq)
        elif operator == "**" and isinstance(left, int) and isinstance(right, int):
            if abs(left) > 1 and right * (abs(left).bit_length() - 1) > MAX_INT_BITS:
                raise _too_many_bits()
        elif operator == "%" and isinstance(left, str):
            _check_format(left, percent=True)
        result = super().call_binop(context, operator, left, right)
        _budget().charge(1 + _cost(result))
        return result

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if args:
            _check_numbers(args)
        if kwargs:
            _check_numbers(kwargs.values())
        owner = getattr(__obj, "__self__", None)
        if type(owner) is str:
            _precheck(__obj.__name__, owner, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        _budget().charge(1 + _cost(result))
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """The sandbox's str.format, with every field's width and precision checked (plain
        str only: messages never make Markup)."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None or type(value.__self__) is not str:
            return wrapped
        text, vformat = value.__self__, _BoundedFormatter(self).vformat
        is_map = value.__name__ == "format_map"

        def bounded(*args: Any, **kwargs: Any) -> str:
            if is_map:
                if kwargs or len(args) != 1:
                    return wrapped(*args, **kwargs)  # raises the sandbox's TypeError
                args, kwargs = (), args[0]
            return vformat(text, args, kwargs)

        return functools.update_wrapper(bounded, value)


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
