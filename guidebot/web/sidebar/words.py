"""The sidebar's words, from the catalogs (guidebot.i18n): Chinese then English where the
sidebar shows both (`both`, "选择客户 · Choose the customer"), Chinese alone for the short
labels of its narrow columns (`chinese`). The page hands them to sidebar.js in its config."""

from __future__ import annotations

import functools

from guidebot import i18n
from guidebot.i18n import N_, NP_

SEP = " · "

BOTH = {
    "cannot_show": N_("Cannot show the customer"),
    "choose_above": N_("Choose the customer above"),
    "left": N_("This customer has left"),
    "reply_recorded": N_("Reply recorded"),
    "customer_replied": N_("Customer replied"),
    "no_task": N_("No task"),
    "open_tasks": N_("Open tasks"),
    "recently_sent": N_("Recently sent"),
    "recent_opens": N_("Recent opens"),
    "why_skip": N_("Why skip"),
    "confirm_skip": N_("Confirm skip"),
    "skip": N_("Skip"),
    "done": N_("Done"),
    "later": N_("Later (2h)"),
    "task_done": N_("Task done"),
    "skipped": N_("Skipped"),
    "put_off": N_("Put off until"),
    "say_why": N_("Say why"),
    "failed": N_("Failed"),
    "nothing_matches": N_("Nothing matches"),
    "no_customer_yet": N_("No customer yet"),
    "not_sent": N_("Not sent"),
    "sent_task_done": N_("Sent, task done"),
    "sent": N_("Sent"),
    "send_failed": N_("Sending failed"),
    "recording": N_("Recording…"),
    "noted_ended": N_("Noted, journey ended"),
    "noted": N_("Noted"),
    # In a customer group (group_chat_tools).
    "cannot_show_group": N_("Cannot show the group"),
    "sent_to_group": N_("Sent to the group"),
    "my_customers_here": N_("My customers in this group"),
    "none_of_mine": N_("None of your customers is in this group"),
}
CHINESE = {
    "store": NP_("sidebar", "Store"),
    "since": NP_("sidebar", "Added on"),
    "status": NP_("sidebar", "Status"),
    "stage": NP_("sidebar", "Stage"),
    "remark": NP_("sidebar", "Remark"),
    "tags": NP_("sidebar", "Tags"),
    "journeys": NP_("sidebar", "Journeys"),
    "send": NP_("sidebar", "Send"),
    "snoozed": NP_("sidebar", "Later"),
    "owner": NP_("sidebar", "Owner"),
    "size": NP_("sidebar", "Members"),
    "group_customers": NP_("sidebar", "Customers"),
    "joined": NP_("sidebar", "Joined"),
}


@functools.cache
def sidebar_words() -> dict[str, object]:
    """What sidebar.js shows, keyed as it asks for it."""
    words: dict[str, object] = {key: i18n.both(msgid, SEP) for key, msgid in BOTH.items()}
    words.update({key: i18n.pgettext(*msg, lang=i18n.ZH) for key, msg in CHINESE.items()})
    # The relation's state as the guide reads it (the bot's words), content kinds by name.
    words["relation"] = {code: i18n.pgettext(*msg, lang=i18n.ZH) for code, msg in RELATION.items()}
    words["kinds"] = i18n.labels("content_kind", i18n.ZH)
    return words


RELATION = {
    "active": NP_("bot", "active"),
    "lost": NP_("bot", "deleted you"),
    "removed": NP_("bot", "removed by you"),
    "transferred": NP_("bot", "transferred"),
}
