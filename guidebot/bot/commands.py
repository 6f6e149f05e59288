"""What a guide's message asks for: a command, its argument, and the language to answer in.

    任务 / tasks                today's open tasks, each with its number
    完成 N / done N             task N is done
    跳过 N 原因 / skip N reason  skip task N, saying why
    稍后 N 2h / snooze N 2h     put task N off (30m, 2h, 1d; 2小时, 1天)
    素材 <词> / content <word>   best-matching content, as cards with tracked links
    客户 <名> / customer <name>  a profile card of one of my customers
    业绩 / stats                 my numbers beside my store's average
    帮助 / help                  the commands

Chinese keywords may run straight into their argument ("素材春季"); English ones need a space.
Anything else is answered with the help, in Chinese when the message holds Chinese.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

TASKS, CONTENT, CUSTOMER, STATS, HELP = "tasks", "content", "customer", "stats", "help"
DONE, SKIP, SNOOZE = "done", "skip", "snooze"
TASK_COMMANDS = (DONE, SKIP, SNOOZE)  # commands that change something: answered once, written

ZH_KEYWORDS = {
    "完成": DONE,
    "已完成": DONE,
    "跳过": SKIP,
    "稍后": SNOOZE,
    "推迟": SNOOZE,
    "任务": TASKS,
    "待办": TASKS,
    "素材": CONTENT,
    "内容": CONTENT,
    "客户": CUSTOMER,
    "顾客": CUSTOMER,
    "业绩": STATS,
    "数据": STATS,
    "帮助": HELP,
    "菜单": HELP,
}
EN_KEYWORDS = {
    "done": DONE,
    "skip": SKIP,
    "snooze": SNOOZE,
    "later": SNOOZE,
    "tasks": TASKS,
    "task": TASKS,
    "todo": TASKS,
    "content": CONTENT,
    "contents": CONTENT,
    "customer": CUSTOMER,
    "customers": CUSTOMER,
    "stats": STATS,
    "numbers": STATS,
    "help": HELP,
    "menu": HELP,
}
HELP_MARKS = {"?", "？", "h"}
# Han characters, and the full-width punctuation a Chinese keyboard types (？：，).
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")


@dataclass(frozen=True, slots=True)
class Command:
    name: str  # one of TASKS, CONTENT, CUSTOMER, STATS, HELP, DONE, SKIP, SNOOZE
    arg: str  # the rest of the message ("" when none)
    lang: str  # "zh" or "en"
    understood: bool = True  # False: the help because nothing else matched


def _normalise(text: str) -> str:
    # Full-width letters, digits and spaces (common on Chinese keyboards) become ASCII.
    return " ".join(unicodedata.normalize("NFKC", text).split())


def parse(text: str) -> Command:
    lang = "zh" if _CJK.search(text or "") else "en"
    message = _normalise(text or "")
    if not message:
        return Command(HELP, "", lang, understood=False)
    if message in HELP_MARKS:
        return Command(HELP, "", lang)
    for keyword, name in ZH_KEYWORDS.items():
        if message.startswith(keyword):
            return Command(name, message[len(keyword) :].strip(" :："), "zh")
    head, _, rest = message.partition(" ")
    name = EN_KEYWORDS.get(head.lower().rstrip(":"))
    if name is not None:
        return Command(name, rest.strip(), "en")
    return Command(HELP, "", lang, understood=False)
