"""The fragments the playbook checker's sentences are built from (what was expected, what was
found, what is missing), in Chinese or English: a known phrase, or a known shape with its
parts (guidebot.sop.check_language puts them back into the sentence)."""

from __future__ import annotations

import re

from guidebot import i18n
from guidebot.i18n import N_

# The fragments a sentence is built from: what was expected, what was found, what is missing.
_PARTS = {
    "stop condition": N_("stop condition"),
    "goal event": N_("goal event"),
    " (remove the quotes)": N_(" (remove the quotes)"),
    "a positive integer": N_("a positive integer"),
    "a display name (text)": N_("a display name (text)"),
    "a list of steps": N_("a list of steps"),
    "a step (a mapping with id, at, action, template, ...)": N_(
        "a step (a mapping with id, at, action, template, ...)"
    ),
    "a step id (text)": N_("a step id (text)"),
    "the playbook id (text)": N_("the playbook id (text)"),
    "a duration such as '3d' or '20s'": N_("a duration such as '3d' or '20s'"),
    "a trigger event": N_("a trigger event"),
    "a goal event": N_("a goal event"),
    "a stop condition": N_("a stop condition"),
    "a tag name or id": N_("a tag name or id"),
    "a store code": N_("a store code"),
    "a channel": N_("a channel"),
    "a state": N_("a state"),
    "a content item id": N_("a content item id"),
    "a template file name": N_("a template file name"),
    "a date field name such as 'birthday'": N_("a date field name such as 'birthday'"),
    "a crontab such as '0 10 * * mon'": N_("a crontab such as '0 10 * * mon'"),
    "true or false": N_("true or false"),
    "a group name pattern": N_("a group name pattern"),
    "a group label": N_("a group label"),
    "a guide's userid": N_("a guide's userid"),
    "a join way's channel or config_id": N_("a join way's channel or config_id"),
    "a range such as '10:00-21:00'": N_("a range such as '10:00-21:00'"),
    "days such as 'mon-sun'": N_("days such as 'mon-sun'"),
    "an IANA time zone name such as 'Asia/Shanghai'": N_(
        "an IANA time zone name such as 'Asia/Shanghai'"
    ),
    "an IANA name such as 'Asia/Shanghai'": N_("an IANA name such as 'Asia/Shanghai'"),
    "'enroll' or '<earlier step id> + <duration>'": N_(
        "'enroll' or '<earlier step id> + <duration>'"
    ),
    "a file in the message templates": N_("a file in the message templates"),
    "'enroll' or '<earlier step id> + <duration>' such as 'welcome + 3d'": N_(
        "'enroll' or '<earlier step id> + <duration>' such as 'welcome + 3d'"
    ),
    "the corp tag to mark": N_("the corp tag to mark"),
    "the corp tag whose addition enrolls the customer": N_(
        "the corp tag whose addition enrolls the customer"
    ),
    "how long after the fact it fires, such as '30d'": N_(
        "how long after the fact it fires, such as '30d'"
    ),
    "a stage": N_("a stage"),
    "a mapping": N_("a mapping"),
    "a list": N_("a list"),
    "an empty value": N_("an empty value"),
    "an empty string": N_("an empty string"),
    "an unreadable value": N_("an unreadable value"),
}
_SHAPES = (
    (re.compile(r"(?P<one>.*) or a list of them"), N_("%(one)s or a list of them")),
    (re.compile(r"a mapping with keys (?P<keys>.*)"), N_("a mapping with keys %(keys)s")),
    (re.compile(r"string (?P<value>.*)"), N_("string %(value)s")),
    (re.compile(r"integer (?P<value>-?\d+)"), N_("integer %(value)s")),
    (re.compile(r"boolean (?P<value>true|false)"), N_("boolean %(value)s")),
    (re.compile(r"action (?P<value>'[^']*')"), N_("action %(value)s")),
    (re.compile(r"actions (?P<a>.+) and (?P<b>\S+)"), N_("actions %(a)s and %(b)s")),
    (re.compile(r"trigger event (?P<value>'[^']*')"), N_("trigger event %(value)s")),
    (re.compile(r"trigger events (?P<value>'.*')"), N_("trigger events %(value)s")),
    (re.compile(r"(?P<name>[a-z_]+) has (?P<fields>[a-z_, ]+)"), N_("%(name)s has %(fields)s")),
)


def phrase(text: str, lang: str) -> str:
    """A fragment in `lang`: a known phrase, a known shape with its parts, else as it is."""
    if text in _PARTS:
        return i18n.gettext(_PARTS[text], lang)
    for shape, msgid in _SHAPES:
        found = shape.fullmatch(text)
        if found:
            parts = {k: phrase(v, lang) for k, v in found.groupdict().items()}
            return i18n.gettext(msgid, lang, **parts)
    return text
