"""`sop check` for the behaviour triggers (guidebot.sop.behaviour): content.opened with its
`item` or `tag`, opened_no_order / silent / repurchase_due with their `after` (and
repurchase_due's `orders`), stage.changed with `from` / `to`; and, for every trigger, a key
that belongs to other trigger events."""

from __future__ import annotations

from datetime import timedelta

from guidebot.sop.playbook import STAGES, TIMED_TRIGGERS, Trigger, format_duration
from guidebot.sop.trigger_options import GROUP_KEYS
from guidebot.sop.values import did_you_mean
from guidebot.sop.yaml_nodes import Node

MIN_AFTER = timedelta(days=1)
MAX_AFTER = timedelta(days=365)
MAX_ORDERS = 1000

TRIGGER_KEYS = ("event", "tag", "item", "field", "cron", "after", "orders", "from", "to")
TRIGGER_KEYS += ("audience", *GROUP_KEYS)
# Which trigger events each optional key belongs to.
KEY_EVENTS: dict[str, tuple[str, ...]] = {
    "tag": ("tag.added", "content.opened"),
    "field": ("date",),
    "cron": ("cron",),
    "item": ("content.opened",),
    "after": TIMED_TRIGGERS,
    "orders": ("repurchase_due",),
    "from": ("stage.changed",),
    "to": ("stage.changed",),
}
AFTER_WHAT = "how long after the fact it fires, such as '30d'"


def events_text(events: tuple[str, ...]) -> str:
    if len(events) == 1:
        return f"trigger event '{events[0]}'"
    return "trigger events " + ", ".join(f"'{e}'" for e in events)


class TriggerChecks:
    """Mixed into the playbook builder (guidebot.sop.checks._Builder), which gives these its
    reporting and reading methods (error, key_error, string, integer, duration)."""

    def misplaced_trigger_keys(self, keys: dict[str, Node], event: str) -> bool:
        """Report each key that another trigger event takes; whether all were in place."""
        ok = True
        for key, events in KEY_EVENTS.items():
            if key in keys and event not in events:
                self.key_error(  # type: ignore[attr-defined]
                    keys[key], f"trigger.{key}", f"'{key}' is only for {events_text(events)}"
                )
                ok = False
        return ok

    def behaviour_trigger(self, event: str, keys: dict[str, Node], node: Node) -> Trigger | None:
        """The trigger of a behaviour event, or None after reporting what is wrong."""
        placed = self.misplaced_trigger_keys(keys, event)
        if event == "content.opened":
            trigger = self._opened(keys)
        elif event == "stage.changed":
            trigger = self._stage_changed(keys, node)
        else:
            trigger = self._timed(event, keys, node)
        return trigger if placed else None

    def _timed(self, event: str, keys: dict[str, Node], node: Node) -> Trigger | None:
        after = orders = None
        ok = True
        if "orders" in keys and event == "repurchase_due":
            orders = self.integer(  # type: ignore[attr-defined]
                keys["orders"], "trigger.orders", "a positive integer", 1, MAX_ORDERS
            )
            ok = orders is not None
        if "after" not in keys:
            self.error(  # type: ignore[attr-defined]
                node,
                "trigger.after",
                f"required key is missing for trigger event '{event}' ({AFTER_WHAT})",
            )
            return None
        after = self._after(keys["after"])
        if after is None or not ok:
            return None
        return Trigger(event=event, after=after, orders=orders)  # type: ignore[arg-type]

    def _opened(self, keys: dict[str, Node]) -> Trigger | None:
        if "item" in keys and "tag" in keys:
            self.key_error(  # type: ignore[attr-defined]
                keys["tag"],
                "trigger.tag",
                "'item' and 'tag' each narrow trigger event 'content.opened': give one of "
                "them, not both",
            )
            return None
        narrowed = {
            key: self.string(keys[key], f"trigger.{key}", what)  # type: ignore[attr-defined]
            for key, what in (("item", "a content item id"), ("tag", "a tag name or id"))
            if key in keys
        }
        if any(value is None for value in narrowed.values()):
            return None
        return Trigger(event="content.opened", item=narrowed.get("item"), tag=narrowed.get("tag"))

    def _stage_changed(self, keys: dict[str, Node], node: Node) -> Trigger | None:
        if "from" not in keys and "to" not in keys:
            self.error(  # type: ignore[attr-defined]
                node,
                "trigger.to",
                "trigger event 'stage.changed' needs 'from', 'to' or both (the stage the "
                "customer leaves, the stage they reach)",
            )
            return None
        stages: dict[str, str | None] = {"from": None, "to": None}
        ok = True
        for key in ("from", "to"):
            if key in keys:
                stages[key] = self._stage(keys[key], f"trigger.{key}")
                ok = ok and stages[key] is not None
        if not ok:
            return None
        if stages["from"] is not None and stages["from"] == stages["to"]:
            self.error(  # type: ignore[attr-defined]
                keys["to"],
                "trigger.to",
                f"a stage change never goes from {stages['from']!r} to itself",
            )
            return None
        return Trigger(event="stage.changed", from_stage=stages["from"], to_stage=stages["to"])

    def _stage(self, node: Node, path: str) -> str | None:
        value = self.string(node, path, "a stage")  # type: ignore[attr-defined]
        if value is None:
            return None
        if value not in STAGES:
            self.error(  # type: ignore[attr-defined]
                node,
                path,
                f"unknown stage {value!r}{did_you_mean(value, STAGES)}; "
                f"expected one of {list(STAGES)!r}",
            )
            return None
        return value

    def _after(self, node: Node) -> timedelta | None:
        value = self.duration(node, "trigger.after")  # type: ignore[attr-defined]
        if value is None:
            return None
        if not MIN_AFTER <= value <= MAX_AFTER:
            self.error(  # type: ignore[attr-defined]
                node,
                "trigger.after",
                f"after {format_duration(value)!r} must be from 1d to 365d (how long the "
                "trigger waits)",
            )
            return None
        return value


__all__ = ["KEY_EVENTS", "TRIGGER_KEYS", "TriggerChecks", "events_text"]
