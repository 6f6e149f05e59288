"""Date triggers: which day is "today" for a date playbook, and when its enrollment begins.

A date playbook (`trigger: {event: date, field: birthday}`) enrolls a pair on the day its date
field names, once per date per year (the occurrence `date:YYYY-MM-DD`; enrollment refuses a
second `date:YYYY-…` cycle in the same year, whatever the field was changed to). Two roads
lead there, and both plan from 00:00 on the day in the customer's time zone, so the steps land
in the same place of the send window:

* the `sop-triggers` scan, once a day, for the dates written before the day came;
* the pair's edit (RelationEdited): a birthday written or changed on the day itself enrolls
  then. Steps already past their time run at once if still inside their `expire_after`, and
  expire otherwise (a wish at 23:00 is not sent the next morning).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from guidebot.sop.playbook import Playbook
from guidebot.sop.timing import zone_named

# The date fields guidebot keeps: the birthday, as `生日:MM-DD` in the guide's remark or
# description (guidebot.sop.audience.birthday_of).
BIRTHDAY_FIELDS = frozenset({"birthday"})
OCCURRENCE_PREFIX = "date:"


def keeps_field(playbook: Playbook) -> bool:
    return playbook.trigger.event == "date" and playbook.trigger.field in BIRTHDAY_FIELDS


def today_for(playbook: Playbook, now: datetime, default_timezone: str) -> date:
    """The calendar day `now` falls on in the playbook's time zone."""
    return now.astimezone(zone_named(playbook.timezone, default_timezone)).date()


def occurrence(day: date) -> str:
    return f"{OCCURRENCE_PREFIX}{day.isoformat()}"


def same_year(cycle: str, wanted: str) -> bool:
    """Whether two date occurrences fall in one year (`date:2026-03-13`, `date:2026-…`)."""
    return (
        cycle.startswith(OCCURRENCE_PREFIX)
        and wanted.startswith(OCCURRENCE_PREFIX)
        and cycle[: len(OCCURRENCE_PREFIX) + 4] == wanted[: len(OCCURRENCE_PREFIX) + 4]
    )


def day_start(day: date, customer_zone: str | None, playbook_zone: str) -> datetime:
    """00:00 on `day` in the customer's time zone (else the playbook's), in UTC."""
    return datetime.combine(
        day, time(0), tzinfo=zone_named(customer_zone, playbook_zone)
    ).astimezone(UTC)


__all__ = [
    "BIRTHDAY_FIELDS",
    "day_start",
    "keeps_field",
    "occurrence",
    "same_year",
    "today_for",
]
