"""The playbook checker's messages with a code each, in Chinese or English (`guidebot sop check`).

The checker (guidebot.sop.checks, step_checks, values, yaml_nodes, template_checks) writes each
problem as one English sentence, the form its golden files and the API hold. Here each kind of
sentence has a code (E1xx the file and YAML, E2xx keys and values, E3xx trigger, window and
events, E4xx steps, E5xx templates; W1xx the template warnings) and an English pattern whose
parts (a key, a value, a did-you-mean) are named; the Chinese is the catalog's translation of
the same message with the parts put back (guidebot.i18n). A sentence no pattern knows keeps its
English under E000: `tests/sop_language/test_check_language.py` fails on one among the golden
cases, so a new message comes with its pattern.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from guidebot import i18n
from guidebot.i18n import N_
from guidebot.sop.check_phrases import phrase

UNKNOWN = "E000"
_HINT = r"(?P<hint>(?: \(did you mean [^)]*\?\))?)"


class Kind(NamedTuple):
    code: str
    pattern: re.Pattern[str]
    msgid: str


def _k(code: str, pattern: str, msgid: str) -> Kind:
    return Kind(code, re.compile(pattern.replace("<HINT>", _HINT), re.S), msgid)


KINDS: tuple[Kind, ...] = (
    # E1xx: the file and its YAML
    _k(
        "E101",
        r"the file is empty; a playbook is a mapping of keys \((?P<keys>.*)\)",
        N_("the file is empty; a playbook is a mapping of keys (%(keys)s)"),
    ),
    _k(
        "E102",
        r"YAML syntax error: character (?P<char>\S+) is not allowed in YAML text",
        N_("YAML syntax error: character %(char)s is not allowed in YAML text"),
    ),
    _k("E103", r"YAML syntax error: (?P<detail>.*)", N_("YAML syntax error: %(detail)s")),
    _k(
        "E104",
        r"YAML tag (?P<tag>'[^']*') is not supported in playbooks; write the plain value "
        r"\(quote text\)",
        N_("YAML tag %(tag)s is not supported in playbooks; write the plain value (quote text)"),
    ),
    _k(
        "E105",
        r"aliases (?P<alias>\(\S*\)) are not supported in playbooks; write the value out",
        N_("aliases %(alias)s are not supported in playbooks; write the value out"),
    ),
    _k(
        "E106",
        r"nested too deeply \(at most (?P<max>\d+) levels\)",
        N_("nested too deeply (at most %(max)s levels)"),
    ),
    _k(
        "E107",
        r"duplicate key (?P<key>'[^']*'): first at line (?P<first>\d+), again at line "
        r"(?P<again>\d+); a key may appear only once",
        N_(
            "duplicate key %(key)s: first at line %(first)s, again at line %(again)s; a key may "
            "appear only once"
        ),
    ),
    _k(
        "E108",
        r"a key must be plain text, got (?P<got>.*)",
        N_("a key must be plain text, got %(got)s"),
    ),
    _k(
        "E109",
        r"internal error(?P<detail>.*)",
        N_("internal error%(detail)s"),
    ),
    # E2xx: keys, types and values
    _k(
        "E201",
        r"unexpected key (?P<key>'[^']*') in (?P<section>\S+)<HINT>; expected one of "
        r"(?P<keys>\[.*\])",
        N_("unexpected key %(key)s in %(section)s%(hint)s; expected one of %(keys)s"),
    ),
    _k(
        "E202",
        r"required key is missing for action (?P<action>'[^']*') \((?P<what>.*)\)",
        N_("required key is missing for action %(action)s (%(what)s)"),
    ),
    _k(
        "E203",
        r"required key is missing for trigger event (?P<event>'[^']*') \((?P<what>.*)\)",
        N_("required key is missing for trigger event %(event)s (%(what)s)"),
    ),
    _k(
        "E204",
        r"required key is missing; expected one of (?P<keys>\[.*\])",
        N_("required key is missing; expected one of %(keys)s"),
    ),
    _k(
        "E205",
        r"required key is missing \((?P<what>.*)\)",
        N_("required key is missing (%(what)s)"),
    ),
    _k("E206", r"required key is missing", N_("required key is missing")),
    _k(
        "E208",
        r"(?P<value>-?\d+) is too large for (?P<path>\S+) \(at most (?P<max>\d+)\)",
        N_("%(value)s is too large for %(path)s (at most %(max)s)"),
    ),
    _k(
        "E209",
        r"duration (?P<value>'[^']*') needs a unit: s, m, h, d or w \(e\.g\. (?P<e>'[^']*')\)",
        N_("duration %(value)s needs a unit: s, m, h, d or w (e.g. %(e)s)"),
    ),
    _k(
        "E210",
        r"duration (?P<value>'[^']*') must be longer than zero",
        N_("duration %(value)s must be longer than zero"),
    ),
    _k(
        "E211",
        r"duration (?P<value>'[^']*') is too long \(at most (?P<max>\S+)\)",
        N_("duration %(value)s is too long (at most %(max)s)"),
    ),
    _k(
        "E212",
        r"(?P<value>'[^']*') is not a duration; write a whole number and a unit s, m, h, d or "
        r"w, such as '3d', '20s' or '1d12h'",
        N_(
            "%(value)s is not a duration; write a whole number and a unit s, m, h, d or w, such "
            "as '3d', '20s' or '1d12h'"
        ),
    ),
    _k(
        "E213",
        r"catch_up is at most (?P<max>\S+)",
        N_("catch_up is at most %(max)s"),
    ),
    _k(
        "E214",
        r"playbook id (?P<id>'.*') may use only letters, digits, '_' and '-' \(at most 64\)",
        N_("playbook id %(id)s may use only letters, digits, '_' and '-' (at most 64)"),
    ),
    _k(
        "E215",
        r"playbook id (?P<id>'[^']*') must equal the file name (?P<file>'[^']*'); rename one "
        r"of them",
        N_("playbook id %(id)s must equal the file name %(file)s; rename one of them"),
    ),
    _k(
        "E216",
        r"unknown time zone (?P<zone>'[^']*')<HINT>; use an IANA name such as 'Asia/Shanghai'",
        N_("unknown time zone %(zone)s%(hint)s; use an IANA name such as 'Asia/Shanghai'"),
    ),
    _k(
        "E217",
        r"unknown once_per (?P<value>'[^']*')<HINT>; expected one of (?P<keys>\[.*\]) "
        r"\(relation: once per guide and customer\)",
        N_(
            "unknown once_per %(value)s%(hint)s; expected one of %(keys)s (relation: once per "
            "guide and customer)"
        ),
    ),
    # E3xx: trigger, send window, events
    _k(
        "E301",
        r"unknown trigger event (?P<event>'[^']*')<HINT>; expected one of (?P<keys>\[.*\])",
        N_("unknown trigger event %(event)s%(hint)s; expected one of %(keys)s"),
    ),
    _k(
        "E302",
        r"date field (?P<value>'[^']*') must be a lowercase name such as 'birthday'",
        N_("date field %(value)s must be a lowercase name such as 'birthday'"),
    ),
    _k(
        "E303",
        r"cron (?P<value>'[^']*') needs 5 fields \(minute hour day month day-of-week\), got "
        r"(?P<got>\d+)",
        N_("cron %(value)s needs 5 fields (minute hour day month day-of-week), got %(got)s"),
    ),
    _k(
        "E304",
        r"cron day-of-week (?P<value>'[^']*') must use names \(mon, tue, \.\.\. sun, or "
        r"mon-fri\): numbers mean different days in different cron dialects",
        N_(
            "cron day-of-week %(value)s must use names (mon, tue, ... sun, or mon-fri): numbers "
            "mean different days in different cron dialects"
        ),
    ),
    _k(
        "E305",
        r"invalid cron (?P<value>'[^']*'): (?P<detail>.*)",
        N_("invalid cron %(value)s: %(detail)s"),
    ),
    _k(
        "E306",
        r"cron (?P<value>'[^']*') never fires \(no such date\)",
        N_("cron %(value)s never fires (no such date)"),
    ),
    _k(
        "E307",
        r"hours (?P<value>'[^']*') must be a range 'HH:MM-HH:MM', such as '10:00-21:00'",
        N_("hours %(value)s must be a range 'HH:MM-HH:MM', such as '10:00-21:00'"),
    ),
    _k(
        "E308",
        r"(?P<value>'[^']*') is not a time of day \(00:00 to 24:00\)",
        N_("%(value)s is not a time of day (00:00 to 24:00)"),
    ),
    _k(
        "E309",
        r"window (?P<value>'[^']*') is empty; its end must be after its start",
        N_("window %(value)s is empty; its end must be after its start"),
    ),
    _k(
        "E310",
        r"window (?P<value>'[^']*') ends before it starts; a window cannot cross midnight and "
        r"is never swapped: use one range within a day, such as '08:00-22:00'",
        N_(
            "window %(value)s ends before it starts; a window cannot cross midnight and is never "
            "swapped: use one range within a day, such as '08:00-22:00'"
        ),
    ),
    _k(
        "E311",
        r"unknown day (?P<value>'[^']*')<HINT>; expected mon, tue, wed, thu, fri, sat or sun, "
        r"or a range such as 'mon-fri'",
        N_(
            "unknown day %(value)s%(hint)s; expected mon, tue, wed, thu, fri, sat or sun, or a "
            "range such as 'mon-fri'"
        ),
    ),
    _k(
        "E312",
        r"no days: the window would never open",
        N_("no days: the window would never open"),
    ),
    _k(
        "E313",
        r"(?P<what>stop condition|goal event) 'tag\.added:' needs a tag, such as "
        r"'tag\.added:VIP'",
        N_("%(what)s 'tag.added:' needs a tag, such as 'tag.added:VIP'"),
    ),
    _k(
        "E314",
        r"unknown (?P<what>stop condition|goal event) (?P<value>'[^']*')<HINT>; expected one "
        r"of (?P<keys>\[.*\])",
        N_("unknown %(what)s %(value)s%(hint)s; expected one of %(keys)s"),
    ),
    _k(
        "E315",
        r"after (?P<value>'[^']*') must be from 1d to 365d \(how long the trigger waits\)",
        N_("after %(value)s must be from 1d to 365d (how long the trigger waits)"),
    ),
    _k(
        "E316",
        r"unknown stage (?P<value>'[^']*')<HINT>; expected one of (?P<keys>\[.*\])",
        N_("unknown stage %(value)s%(hint)s; expected one of %(keys)s"),
    ),
    _k(
        "E317",
        r"trigger event 'stage\.changed' needs 'from', 'to' or both \(the stage the customer "
        r"leaves, the stage they reach\)",
        N_(
            "trigger event 'stage.changed' needs 'from', 'to' or both (the stage the customer "
            "leaves, the stage they reach)"
        ),
    ),
    _k(
        "E318",
        r"a stage change never goes from (?P<value>'[^']*') to itself",
        N_("a stage change never goes from %(value)s to itself"),
    ),
    _k(
        "E319",
        r"'item' and 'tag' each narrow trigger event 'content\.opened': give one of them, not "
        r"both",
        N_(
            "'item' and 'tag' each narrow trigger event 'content.opened': give one of them, "
            "not both"
        ),
    ),
    # E4xx: steps
    _k(
        "E401",
        r"a playbook needs at least one step",
        N_("a playbook needs at least one step"),
    ),
    _k(
        "E402",
        r"step id (?P<id>'[^']*') already used by (?P<other>steps\[\d+\]); ids are idempotency "
        r"keys and must be unique",
        N_("step id %(id)s already used by %(other)s; ids are idempotency keys and must be unique"),
    ),
    _k(
        "E403",
        r"unknown action (?P<action>'[^']*')<HINT>; expected one of (?P<keys>\[.*\])",
        N_("unknown action %(action)s%(hint)s; expected one of %(keys)s"),
    ),
    _k(
        "E404",
        r"'enroll' names the enrollment itself; choose another step id",
        N_("'enroll' names the enrollment itself; choose another step id"),
    ),
    _k(
        "E405",
        r"step id (?P<id>'.*') may use only letters, digits, '_' and '-', starting with a "
        r"letter \(at most 64\)",
        N_(
            "step id %(id)s may use only letters, digits, '_' and '-', starting with a letter "
            "(at most 64)"
        ),
    ),
    _k(
        "E406",
        r"expected 'enroll' or '<earlier step id> \+ <duration>', got integer (?P<n>\d+); "
        r"write 'enroll \+ \d+d' for \d+ days after enrolling",
        N_(
            "expected 'enroll' or '<earlier step id> + <duration>', got integer %(n)s; write "
            "'enroll + %(n)sd' for %(n)s days after enrolling"
        ),
    ),
    _k(
        "E407",
        r"step (?P<id>'[^']*') cannot be anchored on itself",
        N_("step %(id)s cannot be anchored on itself"),
    ),
    _k(
        "E408",
        r"anchor (?P<id>'[^']*') is (?P<other>steps\[\d+\]), which comes later; a step can only "
        r"follow an earlier one",
        N_("anchor %(id)s is %(other)s, which comes later; a step can only follow an earlier one"),
    ),
    _k(
        "E409",
        r"'(?P<bare>[^']*)' has no anchor; write 'enroll \+ [^']*' or '<earlier step id> \+ "
        r"[^']*'",
        N_("'%(bare)s' has no anchor; write 'enroll + %(bare)s' or '<earlier step id> + %(bare)s'"),
    ),
    _k(
        "E410",
        r"unknown anchor (?P<id>'[^']*')<HINT>; expected one of (?P<keys>\[.*\])",
        N_("unknown anchor %(id)s%(hint)s; expected one of %(keys)s"),
    ),
    _k(
        "E411",
        r"a sending step needs 'expire_after' \(what to do if the step is overdue after an "
        r"outage\); otherwise a late restart sends stale messages",
        N_(
            "a sending step needs 'expire_after' (what to do if the step is overdue after an "
            "outage); otherwise a late restart sends stale messages"
        ),
    ),
    _k(
        "E412",
        r"action (?P<action>'[^']*') sends no message; remove 'template'",
        N_("action %(action)s sends no message; remove 'template'"),
    ),
    _k(
        "E413",
        r"reenter_after (?P<after>\S+) is shorter than the playbook: its last step "
        r"(?P<id>'[^']*') is (?P<offset>\S+) after enroll; a customer could be in two runs at "
        r"once",
        N_(
            "reenter_after %(after)s is shorter than the playbook: its last step %(id)s is "
            "%(offset)s after enroll; a customer could be in two runs at once"
        ),
    ),
    _k(
        "E414",
        r"a welcome step must be at 'enroll': WeCom's welcome code lives 20 s after the add",
        N_("a welcome step must be at 'enroll': WeCom's welcome code lives 20 s after the add"),
    ),
    _k(
        "E415",
        r"a welcome step must expire within 20s \(WeCom's welcome code lives 20 s\), got "
        r"(?P<got>\S+)",
        N_("a welcome step must expire within 20s (WeCom's welcome code lives 20 s), got %(got)s"),
    ),
    _k(
        "E416",
        r"action 'welcome' needs trigger event 'customer\.added', not (?P<event>'[^']*'): only "
        r"an add carries a welcome code",
        N_(
            "action 'welcome' needs trigger event 'customer.added', not %(event)s: only an add "
            "carries a welcome code"
        ),
    ),
    _k(
        "E417",
        r"only one welcome step per playbook \(already (?P<other>steps\[\d+\])\); a welcome code "
        r"works once",
        N_("only one welcome step per playbook (already %(other)s); a welcome code works once"),
    ),
    _k(
        "E418",
        r"action (?P<action>'[^']*') needs a 'cron' trigger, not (?P<event>'[^']*'): it runs per "
        r"occurrence",
        N_("action %(action)s needs a 'cron' trigger, not %(event)s: it runs per occurrence"),
    ),
    _k(
        "E419",
        r"a playbook with group steps \(group_message, moment_task\) has only group steps: "
        r"(?P<step>steps\[\d+\]) is action (?P<action>'[^']*'), which runs per customer",
        N_(
            "a playbook with group steps (group_message, moment_task) has only group steps: "
            "%(step)s is action %(action)s, which runs per customer"
        ),
    ),
    _k(
        "E420",
        r"action (?P<action>'[^']*') takes its text from the library item \('content'\); remove "
        r"'template'",
        N_("action %(action)s takes its text from the library item ('content'); remove 'template'"),
    ),
    _k(
        "E421",
        r"group label (?P<label>.*?) is no label: 1 to 32 characters, without control "
        r"characters, commas or surrounding spaces",
        N_(
            "group label %(label)s is no label: 1 to 32 characters, without control characters, "
            "commas or surrounding spaces"
        ),
    ),
    # E5xx: message templates
    _k(
        "E501",
        r"template (?P<name>'[^']*') must be a file name under (?P<dir>.*)",
        N_("template %(name)s must be a file name under %(dir)s"),
    ),
    _k(
        "E502",
        r"template (?P<name>'[^']*') not found in (?P<dir>.*?)<HINT>",
        N_("template %(name)s not found in %(dir)s%(hint)s"),
    ),
    _k(
        "E503",
        r"template (?P<name>'[^']*') uses unknown variable (?P<var>'[^']*')<HINT>; allowed: "
        r"(?P<allowed>.*)",
        N_("template %(name)s uses unknown variable %(var)s%(hint)s; allowed: %(allowed)s"),
    ),
    _k(
        "E504",
        r"template (?P<name>'[^']*') uses (?P<attr>\S+), which messages do not have<HINT>; "
        r"(?P<has>.*)",
        N_("template %(name)s uses %(attr)s, which messages do not have%(hint)s; %(has)s"),
    ),
    _k(
        "E505",
        r"template (?P<name>'[^']*') line (?P<line>\d+): (?P<detail>.*)",
        N_("template %(name)s line %(line)s: %(detail)s"),
    ),
    _k(
        "E219",
        r"(?P<found>(?:.*: )?)holdout is a percentage from 0% to 50% of the customers enrolled, "
        r"such as '10%'",
        N_(
            "%(found)sholdout is a percentage from 0%% to 50%% of the customers enrolled, such "
            "as '10%%'"
        ),
    ),
    _k(
        "E220",
        r"(?P<text>'[^']*'): at most 50% may be held out \(the playbook must run for most "
        r"customers\)",
        N_("%(text)s: at most 50%% may be held out (the playbook must run for most customers)"),
    ),
    # Last: the general shapes the sentences above are special cases of.
    _k(
        "E207",
        r"expected (?P<what>.*), got (?P<got>.*?)(?P<quotes> \(remove the quotes\))?",
        N_("expected %(what)s, got %(got)s%(quotes)s"),
    ),
    _k(
        "E218",
        r"(?P<key>'[^']*') is only for (?P<what>.*)",
        N_("%(key)s is only for %(what)s"),
    ),
)
_DID_YOU_MEAN = re.compile(r" \(did you mean (?P<what>.*)\?\)")
_WARNING = re.compile(r"warning (?P<code>W\d+): (?P<zh>.*?) / (?P<en>.*)", re.S)


def explain(message: str) -> tuple[str, Kind | None, dict[str, str]]:
    """The message's code, its kind (None: no pattern knows it) and its named parts."""
    warned = _WARNING.fullmatch(message)
    if warned:
        return warned["code"], None, warned.groupdict()
    for kind in KINDS:
        found = kind.pattern.fullmatch(message)
        if found:
            return kind.code, kind, {k: v or "" for k, v in found.groupdict().items()}
    return UNKNOWN, None, {}


def translate(message: str, lang: str) -> tuple[str, str]:
    """(code, the message in `lang`); English is the checker's own sentence."""
    code, kind, parts = explain(message)
    if code.startswith("W"):
        return code, parts["zh"] if lang == i18n.ZH else parts["en"]
    if kind is None or lang != i18n.ZH:
        return code, message
    values = dict(parts)
    if values.get("hint"):
        what = _DID_YOU_MEAN.fullmatch(values["hint"])
        values["hint"] = i18n.gettext("(did you mean %(what)s?)", lang, what=what["what"])
    for name in ("what", "quotes", "got", "has"):
        if values.get(name):
            values[name] = phrase(values[name], lang)
    return code, i18n.gettext(kind.msgid, lang, **values)


def cli_language(asked: str | None, environ: dict[str, str]) -> str:
    """`--lang`, else English when LC_ALL, LC_MESSAGES or LANG (the first set) says English,
    else Simplified Chinese, guidebot's first language."""
    chosen = i18n.normalize(asked)
    if chosen is not None:
        return chosen
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        if environ.get(name):
            return i18n.EN if i18n.normalize(environ[name]) == i18n.EN else i18n.ZH
    return i18n.ZH
