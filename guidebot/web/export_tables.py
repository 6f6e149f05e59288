"""The columns of the admin's other tables as files (the lists' are guidebot.web.exports): the
leaderboards, a guide's days, overdue tasks, the audit trail, the cohort table, the parts of a
customer's and a group's page, a playbook's steps and its funnel. Each is the table the page
shows, column for column, in the reader's words; times in the page's zone (Excel has none).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Any

from guidebot import i18n
from guidebot.metrics import kpis
from guidebot.web.exports import kpi_columns
from guidebot.web.tables import Column

N_ = i18n.N_


def local(moment: datetime | None, zone: tzinfo) -> datetime | None:
    return moment.astimezone(zone) if moment is not None else None


def leaderboard_columns(metric: str | None, names: tuple[str, ...]) -> list[Column]:
    """Guides ranked (the dashboard's top ten, a store's guides): rank, guide, figures."""
    ranked = (metric,) if metric else ()
    return [
        Column(N_("Rank"), lambda r: r["rank"]),
        Column(N_("Guide"), lambda r: r["name"]),
        *kpi_columns((*ranked, *names)),
    ]


def day_columns() -> list[Column]:
    """A guide's table of days: the day, then every KPI."""
    return [Column(N_("Day"), lambda d: d["day"]), *kpi_columns(kpis.KPI_NAMES)]


def escalated_columns(now: datetime, lang: str) -> list[Column]:
    return [
        Column(N_("Guide"), lambda t: t.guide),
        Column(N_("Customer"), lambda t: t.customer),
        Column(N_("Playbook"), lambda t: t.playbook),
        Column(N_("Step"), lambda t: t.step),
        Column(N_("Overdue"), lambda t: t.overdue(now, lang)),
        Column(N_("Reported"), lambda t: t.escalated_at is not None),
    ]


def audit_columns(lang: str) -> list[Column]:
    def change(r: dict[str, Any]) -> str:
        parts = [
            f"{i18n.gettext(word, lang)}: {r[key]}"
            for key, word in (("before", N_("Before")), ("after", N_("After")))
            if r[key]
        ]
        return "\n".join(parts)

    return [
        Column(N_("When"), lambda r: r["at"]),
        Column(N_("Who"), lambda r: r["actor"]),
        Column(N_("Role"), lambda r: r["role"]),
        Column(N_("Address"), lambda r: r["ip"]),
        Column(N_("Action"), lambda r: r["action"]),
        Column(N_("Target"), lambda r: r["target"]),
        Column(N_("Change"), change),
    ]


def cohort_columns(
    split: str, labels: dict[str, str], columns: list[dict[str, Any]], row_label: Callable
) -> list[Column]:
    """Period, the split's row, members, then each cell's value (rates as shares)."""
    return [
        Column(N_("Period"), lambda r: r["period_start"]),
        Column(lambda lang: split, row_label),
        Column(N_("Customers"), lambda r: r["members"]),
        *[
            Column(lambda lang, c=c: labels[c["id"]], lambda r, c=c: r["cells"][c["id"]]["value"])
            for c in columns
        ],
    ]


# ---- a customer's page -----------------------------------------------------------------------


def customer_tables(names: dict[str, Any], zone: tzinfo, lang: str) -> dict[str, list[Column]]:
    """The customer page's tables by id; `names` holds its guide_names and store_names."""
    guide = names["guide_names"]
    store = names["store_names"]

    def who(userid: str | None) -> str:
        return guide.get(userid, userid) if userid else "–"

    def tags(r: Any) -> str:
        return i18n.join((t.get("name") or t.get("id") for t in r.tags or []), lang)

    def scene(member: Any) -> str:
        code = str(member.join_scene) if member.join_scene is not None else None
        words = i18n.label("join_scene", code, lang)
        return f"{words} {i18n.label('channel', member.channel, lang)}" if member.channel else words

    def channel(r: Any) -> str:
        words = i18n.label("channel", r.channel, lang) if r.channel else "–"
        return f"{words} {r.campaign}" if r.campaign else words

    return {
        "relations": [
            Column(N_("Guide"), lambda r: who(r.guide_userid)),
            Column(N_("Status"), lambda r: i18n.label("relation_status", r.status, lang)),
            Column(N_("Store"), lambda r: store.get(r.store_id, "–")),
            Column(N_("Channel"), channel),
            Column(N_("Remark"), lambda r: r.remark or ""),
            Column(N_("Tags"), tags),
            Column(N_("Added on"), lambda r: local(r.created_at, zone)),
        ],
        "groups": [
            Column(N_("Group"), lambda g: g.group.name or i18n.gettext("(no name)", lang)),
            Column(N_("Owner"), lambda g: who(g.group.owner_userid)),
            Column(N_("Store"), lambda g: store.get(g.group.store_id, "–")),
            Column(N_("Joined"), lambda g: local(g.member.joined_at, zone)),
            Column(N_("How they joined"), lambda g: scene(g.member)),
        ],
        "timeline": [
            Column(N_("When"), lambda e: local(e.occurred_at, zone)),
            Column(N_("What happened"), lambda e: i18n.label("relation_event", e.kind, lang)),
            Column(N_("Guide"), lambda e: who(e.guide_userid)),
            Column(N_("Store"), lambda e: store.get(e.store_id, "–")),
        ],
        "tasks": [
            Column(N_("Due"), lambda t: local(t.due_at, zone)),
            Column(N_("Playbook"), lambda t: t.playbook_name),
            Column(N_("Step"), lambda t: t.named_step or i18n.label("action", t.action, lang)),
            Column(N_("Guide"), lambda t: who(t.guide_userid)),
            Column(N_("Status"), lambda t: i18n.label("task_status", t.status, lang)),
        ],
        "forwards": [
            Column(N_("Sent"), lambda p: local(p[0].sent_at, zone)),
            Column(N_("Content"), lambda p: p[1].title),
            Column(N_("Guide"), lambda p: who(p[0].guide_userid)),
        ],
        "opens": [
            Column(N_("Opened"), lambda p: local(p[0].opened_at, zone)),
            Column(N_("Content"), lambda p: p[1].title),
        ],
        "orders": [
            Column(N_("Paid"), lambda o: local(o.paid_at, zone)),
            Column(N_("Order"), lambda o: o.order_id),
            Column(N_("Amount"), lambda o: o.amount_fen / 100),
            Column(N_("Status"), lambda o: i18n.label("order_status", o.status, lang)),
            Column(
                N_("Attributed to"),
                lambda o: who(o.guide_userid) if o.guide_userid else i18n.gettext("Nobody", lang),
            ),
            Column(N_("Store"), lambda o: store.get(o.store_id, "–")),
        ],
    }


# ---- a group's page --------------------------------------------------------------------------


def group_tables(
    guides: dict[str, str], members: dict[str, str], zone: tzinfo, lang: str
) -> dict[str, list[Column]]:
    def name(member_id: str, kind: str) -> str:
        if kind == "customer":
            return members.get(member_id) or i18n.gettext("(no name yet)", lang)
        return guides.get(member_id) or members.get(member_id) or member_id

    def scene(code: Any, channel: str | None) -> str:
        words = i18n.label("join_scene", str(code) if code is not None else None, lang)
        return f"{words} {i18n.label('channel', channel, lang)}" if channel else words

    return {
        "members": [
            Column(N_("Name"), lambda m: name(m.member_id, m.member_type)),
            Column(N_("Kind"), lambda m: i18n.label("member_type", m.member_type, lang)),
            Column(N_("Joined"), lambda m: local(m.joined_at, zone)),
            Column(N_("How they joined"), lambda m: scene(m.join_scene, m.channel)),
            Column(N_("Invited by"), lambda m: guides.get(m.invitor_userid, m.invitor_userid)),
        ],
        "history": [
            Column(N_("When"), lambda e: local(e.occurred_at, zone)),
            Column(N_("Who"), lambda e: name(e.member_id, e.member_type)),
            Column(N_("What happened"), lambda e: i18n.label("group_member_event", e.kind, lang)),
            Column(N_("Owner then"), lambda e: guides.get(e.owner_userid, e.owner_userid)),
        ],
    }


# ---- playbooks -------------------------------------------------------------------------------


def step_columns(statuses: tuple[str, ...], lang: str) -> list[Column]:
    """The playbooks list's step table: the step, then its tasks by status."""

    def stopped_why(step: dict[str, Any]) -> str:
        reasons = (f"{i18n.label('event', why, lang)}: {n}" for why, n in step["stopped"].items())
        return i18n.join(reasons, lang, strong=True)

    return [
        Column(N_("Step"), lambda s: s["name"]),
        *[
            Column(
                lambda lang, s=s: i18n.label("task_status", s, lang), lambda r, s=s: r["shown"][s]
            )
            for s in statuses
        ],
        Column(N_("Why stopped"), stopped_why),
    ]


FUNNEL = (
    ("planned", N_("Planned")),
    ("sent", N_("Sent")),
    ("done", N_("Done")),
    ("expired", N_("Expired")),
    ("failed", N_("Failed")),
    ("skipped", N_("Skipped by the guide")),
    ("waiting", N_("Waiting")),
)


def funnel_columns(lang: str) -> list[Column]:
    """The studio's funnel per step; the stopped tasks with their reasons in words."""

    def stopped(r: dict[str, Any]) -> str:
        reasons = sorted(r["stopped"].items())
        return i18n.join(
            (f"{i18n.label('event', why, lang)}: {n}" for why, n in reasons), lang, True
        )

    return [
        Column(N_("Step"), lambda r: r["name"] or r["id"]),
        *[Column(word, lambda r, key=key: r[key]) for key, word in FUNNEL],
        Column(N_("Stopped"), stopped),
    ]
