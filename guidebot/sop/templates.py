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
Over budget, the render raises `RenderBudgetExceeded` (a TemplateError); the bounded sandbox is
guidebot.sop.sandbox, and `sop check`'s look at templates is guidebot.sop.template_checks. The
server renders off the event loop, a few at a time (`render_off_loop`), so even a slow render
never holds up callbacks.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import (
    SandboxedEnvironment,
)

from guidebot.sop.sandbox import (
    MAX_RENDER_SECONDS,
    MAX_STEPS,
    BudgetedSandbox,
    RenderBudgetExceeded,
)

ALLOWED_VARIABLES = frozenset(
    {"customer", "guide", "store", "content", "links", "playbook", "step"}
)
# What the engine puts in each variable (guidebot.sop.messages.message_variables);
# `customer.nmae` is caught when the playbook is checked instead of failing for every customer
# at send time.
KNOWN_ATTRIBUTES: Mapping[str, frozenset[str]] = {
    "customer": frozenset({"name", "external_userid", "remark"}),
    "guide": frozenset({"name", "userid"}),
    "store": frozenset({"name", "code"}),
    "content": frozenset({"id", "title", "url"}),
    "links": frozenset({"content", "task"}),
    "playbook": frozenset({"id", "name", "version"}),
    "step": frozenset({"id", "action", "name"}),
}
RENDER_THREADS = 2  # renders at a time, off the event loop


__all__ = [
    "ALLOWED_VARIABLES",
    "KNOWN_ATTRIBUTES",
    "MAX_RENDER_SECONDS",
    "MAX_STEPS",
    "RenderBudgetExceeded",
    "message_environment",
    "render_message",
    "render_off_loop",
    "sample_variables",
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
        "step": dict(step or {"id": "sample", "action": "guide_task", "name": "群发任务"}),
    }
