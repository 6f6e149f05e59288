"""`sop check` for a playbook's trigger options: the date field, the crontab, and
`group.joined`'s `first_join`, `group_name` and `join_way`."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from guidebot.sop.playbook import GroupFilter
from guidebot.sop.yaml_nodes import BOOL, Node

GROUP_EVENT = "group.joined"
GROUP_KEYS = ("first_join", "group_name", "join_way")
_FIELD = re.compile(r"[a-z][a-z0-9_]{0,63}")


class TriggerOptionChecks:
    """The trigger checks of the playbook builder (guidebot.sop.checks._Builder), which gives
    them its reporting and reading methods (error, key_error, string, strings, ...)."""

    def group_filter(self, keys: dict[str, Node], event: str) -> tuple[GroupFilter | None, bool]:
        """group.joined's options (all optional); elsewhere each is an error."""
        present = [k for k in GROUP_KEYS if k in keys]
        if event != GROUP_EVENT:
            for key in present:
                self.key_error(
                    keys[key],
                    f"trigger.{key}",
                    f"'{key}' is only for trigger event '{GROUP_EVENT}'",
                )
            return None, not present
        ok, first_join = True, False
        if "first_join" in keys:
            node = keys["first_join"]
            if node.kind != BOOL:
                self.expected(node, "trigger.first_join", "true or false")
                ok = False
            else:
                first_join = node.value
        names: list[str] = []
        if "group_name" in keys:
            found = self.strings(keys["group_name"], "trigger.group_name", "a group name pattern")
            names = [value for value, _n, _p in found]
            ok = ok and bool(found)
        ways: set[str] = set()
        if "join_way" in keys:
            found = self.strings(
                keys["join_way"], "trigger.join_way", "a join way's channel or config_id"
            )
            ways = {value for value, _n, _p in found}
            ok = ok and bool(found)
        return GroupFilter(first_join, tuple(names), frozenset(ways)), ok

    def date_field(self, node: Node) -> str | None:
        value = self.string(node, "trigger.field", "a date field name such as 'birthday'")
        if value is not None and not _FIELD.fullmatch(value):
            self.error(
                node,
                "trigger.field",
                f"date field {value!r} must be a lowercase name such as 'birthday'",
            )
            return None
        return value

    def cron(self, node: Node, zone_name: str | None) -> str | None:
        value = self.string(node, "trigger.cron", "a crontab such as '0 10 * * mon'")
        if value is None:
            return None
        fields = value.split()
        if len(fields) != 5:
            self.error(
                node,
                "trigger.cron",
                f"cron {value!r} needs 5 fields (minute hour day month day-of-week), "
                f"got {len(fields)}",
            )
            return None
        if any(c.isdigit() for c in fields[4]):
            self.error(
                node,
                "trigger.cron",
                f"cron day-of-week {fields[4]!r} must use names (mon, tue, ... sun, or mon-fri): "
                "numbers mean different days in different cron dialects",
            )
            return None
        from apscheduler.triggers.cron import CronTrigger

        zone = ZoneInfo(zone_name or "UTC")
        try:
            trigger = CronTrigger.from_crontab(value, timezone=zone)
            fires = trigger.get_next_fire_time(None, datetime(2024, 1, 1, tzinfo=zone))
        except Exception as exc:
            self.error(node, "trigger.cron", f"invalid cron {value!r}: {exc}")
            return None
        if fires is None:
            self.error(node, "trigger.cron", f"cron {value!r} never fires (no such date)")
            return None
        return " ".join(fields)
