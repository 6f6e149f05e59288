"""The bounded sandbox message templates render in (guidebot.sop.templates).

Every render has a budget of work (`MAX_STEPS`: each loop turn, call, filter and operator is a
step, and so is every `STEP_CHARS` characters it makes) and of time (`MAX_RENDER_SECONDS`); no
value it makes may be longer than `MAX_VALUE` characters or items, and no number it passes for
a size may be larger. Over budget, the render raises `RenderBudgetExceeded` (a TemplateError).
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedFormatter,
)

MAX_TEMPLATE_BYTES = 64 * 1024
# The render budget. A shipped message takes a few steps; 100,000 loop turns take a few
# hundredths of a second, and the time limit stops what the steps miss (slow steps).
MAX_STEPS = 100_000
STEP_CHARS = 64
MAX_VALUE = 10_000  # characters of a string, items of a list, and any size passed as a number
MAX_INT_BITS = 256
MAX_RENDER_SECONDS = 1.0
CLOCK_STEPS = 64  # how often (in steps) a render looks at the clock


# ---- the render budget ------------------------------------------------------------------------


class RenderBudgetExceeded(jinja2.TemplateRuntimeError):
    """A render did too much work, took too long, or made a value too large."""


class _Budget:
    __slots__ = ("clock_at", "deadline", "name", "steps")

    def __init__(self, name: str | None) -> None:
        self.name = name or "(template)"
        self.steps = MAX_STEPS
        self.clock_at = MAX_STEPS  # the clock is read every CLOCK_STEPS steps
        # Real time, not the clock's: the budget bounds the CPU a render really takes.
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
