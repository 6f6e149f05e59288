"""Languages: Simplified Chinese first, English by choice, from gettext catalogs.

The words people read live in `guidebot/locale/<lang>/LC_MESSAGES/messages.po` (Babel's
format, English msgids), never in code. The .po files are the only thing committed: the first
call for a language compiles its catalog in memory (Babel's read_po and write_mo) and keeps it,
so a fresh clone, the demo, the tests and the Docker image need no build step and no binary .mo
file can drift from its source. `tests/unit/test_i18n.py` extracts every message the code and
the templates use (babel.cfg) and fails on one without a Chinese translation.

Marking: `N_(msgid)` marks a message read later (a table of words); `NP_(context, msgid)` the
same with a context, where one English word means different things (a relation's "Active" is
跟进中, an enrollment's 进行中). `gettext`, `pgettext` and `ngettext` translate now. `both()`
is for the faces that show both languages, Chinese then English (the sidebar, the bot).

Display names (`label(kind, code, lang)`): the one table of words for the codes guidebot stores
(relation, task and enrollment statuses, contact-way channels, step actions, playbook triggers,
stop and goal events, playbook fields, content kinds). An unknown code is shown as itself.
"""

from __future__ import annotations

import functools
import gettext as _gettext
import io
import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

from babel import Locale
from babel import dates as babel_dates
from babel import numbers as babel_numbers
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

ZH = "zh_CN"
EN = "en"
LANGUAGES: tuple[str, ...] = (ZH, EN)
DEFAULT = ZH
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "messages"


def N_(msgid: str) -> str:
    """Marks a message for extraction; translated where it is shown."""
    return msgid


class Msg(NamedTuple):
    """A message marked for later, with its context (NP_)."""

    context: str
    msgid: str


def NP_(context: str, msgid: str) -> Msg:
    """Marks a message with a context for extraction; translated with pgettext where shown."""
    return Msg(context, msgid)


def normalize(raw: str | None) -> str | None:
    """ "zh", "zh-CN", "zh_cn", "zh-Hans" → zh_CN; "en", "en-US", "en_GB.UTF-8" → en; else None."""
    if not raw:
        return None
    code = raw.strip().split(".", 1)[0].replace("-", "_").lower()
    if code == "zh" or code.startswith("zh_"):
        return ZH
    if code == "en" or code.startswith("en_"):
        return EN
    return None


def short(lang: str) -> str:
    """The code a URL carries: zh or en."""
    return "en" if lang == EN else "zh"


@functools.cache
def translations(lang: str) -> _gettext.NullTranslations:
    """The language's catalog, compiled from its .po in memory once per process."""
    if lang not in LANGUAGES:
        raise ValueError(f"no catalog for {lang!r}; languages: {', '.join(LANGUAGES)}")
    path = LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
    with path.open("rb") as source:
        catalog = read_po(source, locale=lang, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return _gettext.GNUTranslations(compiled)


def gettext(msgid: str, lang: str = DEFAULT, **values: object) -> str:
    text = translations(lang).gettext(msgid)
    return text % values if values else text


def pgettext(context: str, msgid: str, lang: str = DEFAULT) -> str:
    return translations(lang).pgettext(context, msgid)


def ngettext(singular: str, plural: str, n: int, lang: str = DEFAULT, **values: object) -> str:
    text = translations(lang).ngettext(singular, plural, n)
    return text % {"num": n, **values}


def both(msgid: str, sep: str = " ", **values: object) -> str:
    """Chinese then English, for the faces that show both: "已完成 Done"."""
    zh, en = gettext(msgid, ZH, **values), gettext(msgid, EN, **values)
    return zh if zh == en else f"{zh}{sep}{en}"


def in_languages(words: Any) -> dict[str, Any]:
    """A table of marked words (NP_ leaves in dicts, tuples and lists) in each language, by
    the short code the bot uses: {"zh": ..., "en": ...}."""
    return {short(lang): _translated(words, lang) for lang in LANGUAGES}


def _translated(words: Any, lang: str) -> Any:
    if isinstance(words, Msg):
        return pgettext(words.context, words.msgid, lang)
    if isinstance(words, dict):
        return {key: _translated(value, lang) for key, value in words.items()}
    if isinstance(words, tuple | list):
        return type(words)(_translated(value, lang) for value in words)
    return words


def translator(lang: str) -> Callable[..., str]:
    """`_` bound to a language: `_(msgid, **values)`."""
    return functools.partial(_bound_gettext, lang)


def _bound_gettext(lang: str, msgid: str, **values: object) -> str:
    return gettext(msgid, lang, **values)


# ---- display names ---------------------------------------------------------------------------

LABELS: dict[str, dict[str, Msg]] = {
    "relation_status": {
        "active": NP_("relation status", "Active"),
        "lost": NP_("relation status", "Deleted by the customer"),
        "removed": NP_("relation status", "Deleted by the guide"),
        "transferred": NP_("relation status", "Transferred"),
    },
    "task_status": {
        "pending": NP_("task status", "Waiting"),
        "claimed": NP_("task status", "In progress"),
        "sending": NP_("task status", "Sending"),
        "sent": NP_("task status", "Sent"),
        "done": NP_("task status", "Done"),
        "skipped": NP_("task status", "Skipped by the guide"),
        "stopped": NP_("task status", "Stopped"),
        "expired": NP_("task status", "Expired"),
        "failed": NP_("task status", "Failed"),
        "unknown": NP_("task status", "Outcome unknown"),
        "snoozed": NP_("task status", "Put off"),
    },
    "relation_event": {
        "added": NP_("relation event", "Added the guide"),
        "reactivated": NP_("relation event", "Added the guide again"),
        "lost": NP_("relation event", "Deleted the guide"),
        "removed": NP_("relation event", "Deleted by the guide"),
        "transferred_out": NP_("relation event", "Moved to another guide"),
        "transferred_in": NP_("relation event", "Moved in from another guide"),
        "edited": NP_("relation event", "Remark or tags changed"),
    },
    "order_status": {
        "paid": NP_("order status", "Paid"),
        "refunded": NP_("order status", "Refunded"),
    },
    "stage": {
        "new": NP_("stage", "New"),
        "engaged": NP_("stage", "Engaged"),
        "first_purchase": NP_("stage", "First purchase"),
        "repeat_buyer": NP_("stage", "Repeat buyer"),
        "dormant": NP_("stage", "Dormant"),
        "lost": NP_("stage", "Lost"),
    },
    "enrollment_status": {
        "active": NP_("enrollment status", "Running"),
        "completed": NP_("enrollment status", "Completed"),
        "stopped": NP_("enrollment status", "Stopped"),
    },
    "playbook_status": {
        "enabled": NP_("playbook status", "Enabled"),
        "paused": NP_("playbook status", "Paused"),
        "disabled": NP_("playbook status", "Disabled"),
    },
    "channel": {
        "store_qr": NP_("channel", "Store QR code"),
        "poster": NP_("channel", "Poster"),
        "livestream": NP_("channel", "Livestream"),
        "event": NP_("channel", "Event"),
        "referral": NP_("channel", "Referral"),
        "online": NP_("channel", "Online"),
    },
    "action": {
        "welcome": NP_("action", "Welcome"),
        "guide_task": NP_("action", "Mass-send task"),
        "remind": NP_("action", "Reminder"),
        "tag": NP_("action", "Tag"),
        "group_message": NP_("action", "Group mass send"),
        "moment_task": NP_("action", "Moments task"),
    },
    "event": {
        "cron": NP_("event", "On a schedule"),
        "customer.added": NP_("event", "Customer added the guide"),
        "date": NP_("event", "A date (birthday)"),
        "tag.added": NP_("event", "Tag added"),
        "group.joined": NP_("event", "Customer joined a group"),
        "contact.lost": NP_("event", "Customer deleted the guide"),
        "contact.removed": NP_("event", "Guide deleted the customer"),
        "customer.replied": NP_("event", "Customer replied"),
        "guide.changed": NP_("event", "Customer moved to another guide"),
        "guide.left": NP_("event", "Guide left the company"),
        "order.paid": NP_("event", "Order paid"),
        "content.opened": NP_("event", "Content opened"),
        "opened_no_order": NP_("event", "Opened, no order since"),
        "silent": NP_("event", "Silent for a while"),
        "repurchase_due": NP_("event", "Repurchase due"),
        "stage.changed": NP_("event", "Lifecycle stage changed"),
        "ended": NP_("event", "Ended"),
        "welcome.no_code": NP_("event", "No welcome code from WeCom"),
        "playbook.paused": NP_("event", "Playbook paused"),
        "playbook.retired": NP_("event", "Playbook retired"),
        "playbook.replaced": NP_("event", "Playbook replaced by a new version"),
    },
    "playbook_field": {
        "id": NP_("playbook field", "ID"),
        "name": NP_("playbook field", "Name"),
        "version": NP_("playbook field", "Version"),
        "trigger": NP_("playbook field", "Trigger"),
        "audience": NP_("playbook field", "Audience"),
        "enroll": NP_("playbook field", "Enrollment rule"),
        "timezone": NP_("playbook field", "Time zone"),
        "send_window": NP_("playbook field", "Send window"),
        "stop_when": NP_("playbook field", "Stop when"),
        "goal": NP_("playbook field", "Goal"),
        "steps": NP_("playbook field", "Steps"),
        "max_messages_per_day": NP_("playbook field", "Messages per day at most"),
        "escalate_after": NP_("playbook field", "Escalate after"),
        "catch_up": NP_("playbook field", "Catch-up window"),
        "action": NP_("playbook field", "Action"),
        "offset": NP_("playbook field", "Offset"),
        "expire_after": NP_("playbook field", "Expires after"),
        "content": NP_("playbook field", "Content"),
        "best_time": NP_("playbook field", "At the customer's best hour"),
        "template": NP_("playbook field", "Message template"),
    },
    # WeCom's 群聊数据统计 (groupchat/statistic, doc 92133), as WeCom names them.
    "group_chat_stat": {
        "chat_total": NP_("wecom group stat", "Customer groups"),
        "new_chat_cnt": NP_("wecom group stat", "New customer groups"),
        "member_total": NP_("wecom group stat", "Group members"),
        "new_member_cnt": NP_("wecom group stat", "New group members"),
        "chat_has_msg": NP_("wecom group stat", "Groups with messages"),
        "member_has_msg": NP_("wecom group stat", "Members who sent messages"),
        "msg_total": NP_("wecom group stat", "Group messages"),
    },
    "group_status": {
        "active": NP_("group status", "Live"),
        "dismissed": NP_("group status", "Dismissed"),
    },
    "member_type": {
        "customer": NP_("member type", "Customer"),
        "employee": NP_("member type", "Staff"),
    },
    "join_scene": {  # WeCom's join_scene, as text
        "0": NP_("join scene", "Invited by a member"),  # the callback's JoinScene 0: 1 or 2
        "1": NP_("join scene", "Invited by a member"),
        "2": NP_("join scene", "Through the group's link"),
        "3": NP_("join scene", "Scanned the group's QR code"),
    },
    "group_member_event": {
        "joined": NP_("group member event", "Joined"),
        "left": NP_("group member event", "Left"),
        "removed": NP_("group member event", "Removed"),
    },
    "content_kind": {
        "text": NP_("content kind", "Text"),
        "link": NP_("content kind", "Link"),
        "image": NP_("content kind", "Image"),
        "miniprogram": NP_("content kind", "Mini program"),
        "file": NP_("content kind", "File"),
    },
    "audience": {
        "channels": NP_("audience", "Channels"),
        "states": NP_("audience", "Code states"),
        "stores": NP_("audience", "Stores"),
        "tags": NP_("audience", "Tags"),
    },
    "weekday": {
        "mon": NP_("weekday", "Mon"),
        "tue": NP_("weekday", "Tue"),
        "wed": NP_("weekday", "Wed"),
        "thu": NP_("weekday", "Thu"),
        "fri": NP_("weekday", "Fri"),
        "sat": NP_("weekday", "Sat"),
        "sun": NP_("weekday", "Sun"),
    },
    "role": {
        "hq": NP_("role", "HQ"),
        "manager": NP_("role", "Store manager"),
        "guide": NP_("role", "Guide"),
    },
}


_WEEKDAY = re.compile(r"mon|tue|wed|thu|fri|sat|sun")


def label(kind: str, code: str | None, lang: str = DEFAULT) -> str:
    """The display name of a stored code; the code itself when the table has no word for it."""
    if code is None:
        return "–"
    found = LABELS[kind].get(code)
    if found is None and kind == "event" and ":" in code:  # "tag.added:VIP"
        event, _, tag = code.partition(":")
        return f"{label(kind, event, lang)}: {tag}"
    return pgettext(*found, lang=lang) if found is not None else code


def weekdays(text: str, lang: str = DEFAULT) -> str:
    """A send window's days ("mon-fri", "sat,sun") in words: 周一至周五, 周六、周日."""
    words = _WEEKDAY.sub(lambda m: label("weekday", m.group(0), lang), text)
    return words.replace("-", "至").replace(",", "、") if lang == ZH else words


def join(items, lang: str = DEFAULT, strong: bool = False) -> str:
    """Items in a list as the language writes one: 张江店、徐汇店 / A, B (strong: ；/ ;)."""
    if lang == ZH:
        return ("；" if strong else "、").join(str(i) for i in items)
    return ("; " if strong else ", ").join(str(i) for i in items)


def labels(kind: str, lang: str = DEFAULT) -> dict[str, str]:
    return {code: label(kind, code, lang) for code in LABELS[kind]}


# ---- dates and numbers -----------------------------------------------------------------------


@functools.cache
def locale(lang: str) -> Locale:
    return Locale.parse(lang)


def format_date(
    value: date | datetime | str | None, lang: str = DEFAULT, style: str = "medium"
) -> str:
    """2026年12月6日 · Dec 6, 2026 (a datetime is shown as its own date, no zone change; an ISO
    date string is read as one)."""
    if value is None:
        return "–"
    if isinstance(value, str):
        value = date.fromisoformat(value)
    day = value.date() if isinstance(value, datetime) else value
    return babel_dates.format_date(day, format=style, locale=locale(lang))


def format_datetime(value: datetime | None, lang: str = DEFAULT) -> str:
    if value is None:
        return "–"
    return babel_dates.format_datetime(value, format="short", locale=locale(lang))


@functools.cache
def _groups_like_python(lang: str) -> bool:
    """Whether the language writes whole numbers as Python's "{:,}" does (both ours do): Babel
    looks its symbols up in the locale data on every call, most of the guide list's time."""
    sample = -1234567
    return babel_numbers.format_decimal(sample, locale=locale(lang)) == f"{sample:,}"


def format_number(value: int | float | Decimal | str | None, lang: str = DEFAULT) -> str:
    if value is None:
        return "–"
    if type(value) is int and _groups_like_python(lang):
        return f"{value:,}"
    return babel_numbers.format_decimal(
        Decimal(value) if isinstance(value, str) else value, locale=locale(lang)
    )


def format_money(value: int | float | Decimal | str | None, lang: str = DEFAULT) -> str:
    """Yuan with two places, grouped: 12,345.60."""
    if value is None:
        return "–"
    return babel_numbers.format_decimal(Decimal(str(value)), format="#,##0.00", locale=locale(lang))


def format_percent(value: float | None, lang: str = DEFAULT) -> str:
    """A share (0.123) as 12.3%."""
    if value is None:
        return "–"
    return babel_numbers.format_percent(value, format="#,##0.0%", locale=locale(lang))
