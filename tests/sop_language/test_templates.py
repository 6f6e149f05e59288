"""Message templates: sandboxed, strict, and checked against the closed set of variables."""

from __future__ import annotations

import re
import time
from pathlib import Path

import jinja2
import pytest

from guidebot.sop.template_checks import check_template
from guidebot.sop.templates import (
    ALLOWED_VARIABLES,
    MAX_RENDER_SECONDS,
    MAX_STEPS,
    RenderBudgetExceeded,
    message_environment,
    render_message,
    sample_variables,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    return tmp_path


def env_with(folder: Path, **files: str) -> jinja2.Environment:
    for name, text in files.items():
        (folder / f"{name}.j2").write_text(text, encoding="utf-8")
    return message_environment(folder)


def test_renders_the_allowed_variables_without_html_escaping(templates: Path) -> None:
    env = env_with(
        templates, hello="{{ customer.name }} & {{ store.name }} <b>{{ links.content }}</b>\n"
    )
    variables = sample_variables()
    text = render_message(env, "hello.j2", variables)
    assert text == "王女士 & 上海南京西路店 <b>https://guidebot.example.com/r/abc123</b>"
    assert set(variables) == ALLOWED_VARIABLES


@pytest.mark.parametrize(
    "source",
    [
        "{{ customer.__class__ }}",
        "{{ customer.name.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ guide.items.__globals__ }}",
        "{{ customer.update({'name': 'x'}) }}",  # the immutable sandbox: no mutation
        "{{ customer.clear() }}",
    ],
)
def test_sandbox_blocks_unsafe_access(templates: Path, source: str) -> None:
    env = env_with(templates, evil=source)
    with pytest.raises(jinja2.TemplateError):
        render_message(env, "evil.j2", sample_variables())


def test_strict_undefined_raises_instead_of_printing_nothing(templates: Path) -> None:
    env = env_with(templates, missing="{{ customer.nickname }}您好", bare="{{ content }}")
    variables = sample_variables()
    with pytest.raises(jinja2.UndefinedError):
        render_message(env, "missing.j2", variables)
    del variables["content"]
    with pytest.raises(jinja2.UndefinedError):
        render_message(env, "bare.j2", variables)


def test_default_filter_still_works_for_optional_values(templates: Path) -> None:
    env = env_with(templates, opt="{{ customer.nickname | default('朋友') }}")
    assert render_message(env, "opt.j2", sample_variables()) == "朋友"


def test_errors_inside_a_template_become_template_errors(templates: Path) -> None:
    env = env_with(templates, boom="{{ 1 // 0 }}")
    with pytest.raises(jinja2.TemplateError, match="ZeroDivisionError"):
        render_message(env, "boom.j2", sample_variables())
    with pytest.raises(jinja2.TemplateNotFound):
        render_message(env, "nowhere.j2", sample_variables())


def test_render_refuses_variables_outside_the_set(templates: Path) -> None:
    env = env_with(templates, ok="hi")
    with pytest.raises(jinja2.TemplateError, match="secrets"):
        render_message(env, "ok.j2", {**sample_variables(), "secrets": {"token": "x"}})


def test_check_reports_unknown_variables_and_accepts_the_set(templates: Path) -> None:
    env = env_with(
        templates,
        good="{% for k, v in customer.items() %}{{ k }}{% endfor %}{% set x = 1 %}{{ x }}"
        "{{ guide.name }}{{ store.code }}{{ content.title }}{{ links.task }}{{ playbook.name }}"
        "{{ step.id }}",
        bad="{{ user.name }} {{ customer.name }} {{ range(3) | list }} {{ secret }}",
    )
    assert check_template(env, "good.j2") == []
    assert check_template(env, "bad.j2") == [
        "template 'bad.j2' uses unknown variable 'secret'; allowed: content, customer, guide, "
        "links, playbook, step, store",
        "template 'bad.j2' uses unknown variable 'user' (did you mean 'customer'?); allowed: "
        "content, customer, guide, links, playbook, step, store",
    ]


def test_check_follows_includes(templates: Path) -> None:
    env = env_with(
        templates,
        outer="{% include 'inner.j2' %}{% include 'gone.j2' %}",
        inner="{{ guest }}",
    )
    problems = check_template(env, "outer.j2")
    assert any("'inner.j2' uses unknown variable 'guest'" in p for p in problems)
    assert any("'gone.j2' not found" in p for p in problems)


def test_check_reports_parse_errors_with_the_template_line(templates: Path) -> None:
    env = env_with(templates, broken="第一行\n{% if customer.name %}\n没有结束")
    (problem,) = check_template(env, "broken.j2")
    assert re.match(r"template 'broken.j2' line \d: Unexpected end of template\.", problem)
    (problem,) = check_template(env_with(templates, bad="a\nb {{ customer.name }\n"), "bad.j2")
    assert problem == "template 'bad.j2' line 2: unexpected '}'"


def test_shipped_templates_check_and_render() -> None:
    folder = ROOT / "templates" / "messages"
    env = message_environment(folder)
    names = sorted(p.name for p in folder.glob("*.j2"))
    assert len(names) >= 6
    for name in names:
        assert check_template(env, name) == [], name
        text = render_message(env, name, sample_variables())
        assert text and "{{" not in text


# ---- the render budget ------------------------------------------------------------------------


def test_ordinary_templates_render_as_before_within_the_budget(templates: Path) -> None:
    env = env_with(
        templates,
        rich="{% macro line(k, v) %}{{ k }}={{ v }}{% endmacro %}"
        "{% for k, v in customer.items() %}{{ loop.index }}.{{ line(k, v|upper) }}"
        "{% if not loop.last %}, {% endif %}{% endfor %}|{{ '{:>4}'.format(7) }}|{{ '%03d' % 5 }}"
        "|{{ range(3)|join('-') }}|{{ (store.name ~ guide.name)|length }}|{{ 'ab' * 2 }}"
        "{% set ns = namespace(n=0) %}{% for i in range(3) %}{% for j in range(3) %}"
        "{% set ns.n = ns.n + 1 %}{% endfor %}{% endfor %}|{{ ns.n }}",
    )
    assert render_message(env, "rich.j2", sample_variables()) == (
        "1.name=王女士, 2.external_userid=WMSAMPLE0001, 3.remark=王女士|   7|005|0-1-2|9|abab|9"
    )


def test_nested_loops_stop_at_the_step_budget(templates: Path) -> None:
    env = env_with(
        templates,
        nested="{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}",
    )
    with pytest.raises(RenderBudgetExceeded) as caught:
        render_message(env, "nested.j2", sample_variables())
    message = str(caught.value)
    assert message.startswith("模板 'nested.j2' 渲染超出限制")
    assert f"over its render budget: loops too long or nested too deep (more than {MAX_STEPS}" in (
        message
    )


def test_a_slow_loop_stops_at_the_time_limit(templates: Path) -> None:
    # Few steps, each slow (a scan of 5,000 numbers): the clock stops it, not the step count.
    env = env_with(
        templates,
        slow="{% set seen = range(5000)|list %}{% for a in range(80) %}{% for b in range(1000) %}"
        "{% if -1 in seen %}!{% endif %}{% endfor %}{% endfor %}",
    )
    started = time.monotonic()
    with pytest.raises(RenderBudgetExceeded, match=f"took longer than {MAX_RENDER_SECONDS:g} s"):
        render_message(env, "slow.j2", sample_variables())
    assert time.monotonic() - started < MAX_RENDER_SECONDS + 5  # stopped, not run to the end


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' * 1000000 }}",
        "{{ customer.name * 1000000 }}",
        "{{ 9 ** 9 ** 9 }}",
        "{{ 'x'|center(1000000) }}",
        "{{ customer.name.ljust(1000000) }}",
        "{{ '{:>1000000}'.format(1) }}",
        "{{ '{:>{}}'.format(1, 1000000) }}",
        "{{ '{x:>{w}}'.format_map({'x': 1, 'w': 1000000}) }}",
        "{{ '%1000000d' % 1 }}",
        "{{ '%1000000d'|format(1) }}",
        "{{ range(1000000)|length }}",
        "{{ ('x' * 5000)|replace('', 'y' * 5000) }}",
        "{{ ('x' * 5000).replace('', 'y' * 5000) }}",
        "{{ range(5000)|join('y' * 5000) }}",
        "{{ ('y' * 5000).join(('x' * 5000)|list) }}",
        "{{ ('x\n' * 4000)|indent(5000) }}",
        "{% set ns = namespace(s='x') %}{% for i in range(30) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s|length }}",
        "{% set ns = namespace(s=[1]) %}{% for i in range(30) %}{% set ns.s = ns.s + ns.s %}"
        "{% endfor %}{{ ns.s|length }}",
        "{% for i in range(9000) %}{{ 'x' * 9000 }}{% endfor %}",
        "{% set x %}{% for i in range(9000) %}" + "y" * 3000 + "{% endfor %}{% endset %}{{ x }}",
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(25) }}",
    ],
)
def test_values_too_large_are_refused(templates: Path, source: str) -> None:
    env = env_with(templates, big=source)
    started = time.monotonic()
    with pytest.raises(RenderBudgetExceeded, match="over its render budget"):
        render_message(env, "big.j2", sample_variables())
    assert time.monotonic() - started < MAX_RENDER_SECONDS + 5


def test_lipsum_is_not_offered(templates: Path) -> None:
    env = env_with(templates, filler="{{ lipsum(1000) }}")
    assert check_template(env, "filler.j2")[0].startswith(
        "template 'filler.j2' uses unknown variable 'lipsum'"
    )
