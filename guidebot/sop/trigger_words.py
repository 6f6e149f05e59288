"""A playbook as HQ reads it on the studio's timeline, in the page's language.

* `trigger_summary`: what narrows a trigger, in words: 打开后 3d 内未下单 / no order within 3d
  of opening; the stages and join ways by their names.
* `written_values`: offsets and durations exactly as the file writes them (`welcome + 1d`,
  `36h`), read from the YAML text; the loaded playbook only holds them as seconds, and
  formatting those back (1d12h) is not what HQ typed.
"""

from __future__ import annotations

from datetime import timedelta

from guidebot import i18n
from guidebot.sop.playbook import Trigger, format_duration
from guidebot.sop.yaml_nodes import INT, MAP, SEQ, STR, Node, compose


def _(msgid: str, lang: str, **values: object) -> str:
    return i18n.gettext(msgid, lang, **values)


def _quoted(text: str, lang: str) -> str:
    return f"「{text}」" if lang == i18n.ZH else f"“{text}”"


def trigger_summary(
    trigger: Trigger, lang: str, written: dict[str, str] | None = None
) -> str | None:
    """What narrows the trigger, or None when nothing does (customer.added)."""
    written = written or {}
    after = _duration(trigger.after, written.get("trigger.after"))
    event = trigger.event
    if event == "tag.added" and trigger.tag:
        return _("tag %(tag)s", lang, tag=_quoted(trigger.tag, lang))
    if event in ("content.opened", "opened_no_order"):
        what = _content(trigger, lang)
        if event == "content.opened":
            return what
        wait = _("no order within %(after)s of opening", lang, after=after)
        return f"{what} · {wait}" if what else wait
    if event == "silent":
        return _("no contact for %(after)s", lang, after=after)
    if event == "repurchase_due":
        text = _("%(after)s after the last order", lang, after=after)
        if trigger.orders is not None:
            exactly = i18n.ngettext(
                "exactly %(num)s order", "exactly %(num)s orders", trigger.orders, lang
            )
            text = f"{text} · {exactly}"
        return text
    if event == "stage.changed":
        return f"{_stage(trigger.from_stage, lang)} → {_stage(trigger.to_stage, lang)}"
    if event == "group.joined" and trigger.group is not None:
        return _group(trigger.group, lang)
    return trigger.field or trigger.cron


def _duration(delta: timedelta | None, written: str | None) -> str:
    if written:
        return written
    return format_duration(delta) if delta is not None else "–"


def _content(trigger: Trigger, lang: str) -> str | None:
    if trigger.item:
        return _("content %(item)s", lang, item=_quoted(trigger.item, lang))
    if trigger.tag:
        return _("content tagged %(tag)s", lang, tag=_quoted(trigger.tag, lang))
    return None


def _stage(stage: str | None, lang: str) -> str:
    return i18n.label("stage", stage, lang) if stage is not None else _("any stage", lang)


def _group(group, lang: str) -> str:
    either = "或" if lang == i18n.ZH else " or "
    parts = [_("first join only", lang)] if group.first_join else []
    if group.group_names:
        names = either.join(_quoted(n, lang) for n in group.group_names)
        parts.append(_("group named %(names)s", lang, names=names))
    if group.join_ways:
        ways = either.join(sorted(group.join_ways))
        parts.append(_("joined by %(ways)s", lang, ways=ways))
    return i18n.join(parts, lang) if parts else _("any group", lang)


# ---- as written ------------------------------------------------------------------------------


def written_values(text: str) -> dict[str, str]:
    """`trigger.after`, `goal.within`, `steps.<id>.at` and `steps.<id>.expire_after` as the
    text writes them; what is missing or not plain text is left out (the loaded playbook's
    own values stand in). Parses YAML: call it off the event loop."""
    root, _issues = compose(text)
    if root is None or root.kind != MAP:
        return {}
    top: dict[str, Node] = root.value
    found: dict[str, str] = {}
    for section, key in (("trigger", "after"), ("goal", "within")):
        node = top.get(section)
        if node is not None and node.kind == MAP and (value := _scalar(node.value.get(key))):
            found[f"{section}.{key}"] = value
    steps = top.get("steps")
    for step in steps.value if steps is not None and steps.kind == SEQ else []:
        if step.kind != MAP or not (step_id := _scalar(step.value.get("id"))):
            continue
        for key in ("at", "expire_after"):
            if value := _scalar(step.value.get(key)):
                found[f"steps.{step_id}.{key}"] = value
    return found


def _scalar(node: Node | None) -> str | None:
    if node is None or node.kind not in (STR, INT):
        return None
    return " ".join(str(node.value).split()) or None
