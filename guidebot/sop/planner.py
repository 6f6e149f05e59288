"""Due times: when each step of an enrollment runs, in UTC, inside the send window.

The rules, in the customer's (store's, else the playbook's) IANA time zone:
- a step is due at its anchor's due time plus its offset; the enrollment instant is the anchor
  `enroll`, and a step anchors on an earlier step's *snapped* due time;
- an offset counts on the local wall clock: `welcome + 1d` is the same local time the next day,
  also across a DST change (a wall time skipped by the change means the first instant after
  the gap, as in the window; a repeated one means its first occurrence);
- the result is moved forward to the next instant the send window is open (its days and hours,
  in local time); a welcome at enroll is never moved: its WelcomeCode lives 20 seconds;
- a step expires `expire_after` (elapsed time) after its due time: the engine skips it then;
- a `best_time: true` step, given the customer's reading scores (guidebot.contacts.
  reading_hours: 24, by UTC hour), is then placed on its due day (the local day of its snapped
  time) at the best-scored hour the window allows (the nearest to the customer's hour when
  the window holds none they read in), never before its anchor's time; when no
  such hour is left that day, on the next day the window opens. Without scores it stays put.

Every function takes and returns tz-aware datetimes; the results are UTC. Nothing here reads
the clock or the host's time zone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from guidebot.sop.playbook import ENROLL, Playbook, SendWindow, Step, Trigger


@dataclass(frozen=True)
class PlannedStep:
    step_id: str
    due_at: datetime  # UTC, snapped into the window (a welcome at enroll: the enroll instant)
    expires_at: datetime  # UTC, due_at + expire_after
    best_hour: int | None = None  # a best_time step: the local hour it was placed at


def plan(
    playbook: Playbook,
    enrolled_at: datetime,
    zone: ZoneInfo,
    scores: Sequence[float] | None = None,
) -> list[PlannedStep]:
    """Every step's due and expiry instants for one enrollment, in the playbook's step order;
    `scores`: the customer's reading (by UTC hour) for best_time steps."""
    start = _utc(enrolled_at, "enrolled_at")
    due: dict[str, datetime] = {}
    planned = []
    for step in playbook.steps:
        base = start if step.anchor == ENROLL else due[step.anchor]
        due_at = step_due(step, base, playbook.send_window, zone)
        hour = None
        if step.best_time and scores is not None:
            due_at, hour = place_at_best_hour(due_at, base, playbook.send_window, zone, scores)
        due[step.id] = due_at
        planned.append(PlannedStep(step.id, due_at, due_at + step.expire_after, hour))
    return planned


def place_at_best_hour(
    due: datetime,
    earliest: datetime,
    window: SendWindow,
    zone: ZoneInfo,
    scores: Sequence[float],
) -> tuple[datetime, int | None]:
    """A best_time step's instant (UTC) and local hour: on `due`'s local day, the start of the
    window's hour whose UTC hour scores highest (on a tie the nearest to the customer's best
    hour, then the earliest), not before `earliest`;
    the next open day's when none is left. `due` itself when no hour qualifies in a week."""
    day = _utc(due, "due").astimezone(zone).date()
    floor = _utc(earliest, "earliest")
    top = max(range(24), key=lambda h: (scores[h], -h))

    def rank(utc_hour: int) -> tuple[float, int]:
        # The score, then nearness to the customer's own best hour (round the clock): a
        # reader at 22:00 outside a 10:00-21:00 window gets 20:00, not the window's opening.
        apart = abs(utc_hour - top)
        return scores[utc_hour], -min(apart, 24 - apart)

    for ahead in range(8):
        today = day + timedelta(days=ahead)
        if today.weekday() not in window.days:
            continue
        chosen: tuple[tuple[float, int], datetime, int] | None = None
        for hour in range(window.start.hour, 24):
            if time(hour) >= window.end:
                break
            instant = _wall_to_utc(today, max(time(hour), window.start), zone)[0]
            if instant < floor or instant.astimezone(zone).date() != today:
                continue
            score = rank((instant + timedelta(minutes=30)).hour)
            if chosen is None or score > chosen[0]:
                chosen = (score, instant, hour)
        if chosen is not None:
            return chosen[1], chosen[2]
    return due, None


def step_due(step: Step, anchor_due: datetime, window: SendWindow, zone: ZoneInfo) -> datetime:
    """One step's due instant (UTC) from its anchor's due instant."""
    nominal = add_local(anchor_due, step.offset, zone)
    if step.immediate:
        return nominal
    return snap_into_window(nominal, window, zone)


def add_local(instant: datetime, offset: timedelta, zone: ZoneInfo) -> datetime:
    """`instant + offset` on the zone's wall clock, as UTC."""
    start = _utc(instant, "instant")
    if not offset:
        return start
    wall = start.astimezone(zone).replace(tzinfo=None) + offset
    return _wall_to_utc(wall.date(), wall.time(), zone)[0]


def snap_into_window(instant: datetime, window: SendWindow, zone: ZoneInfo) -> datetime:
    """The first instant at or after `instant` when the window is open, as UTC.

    Open means: the local weekday is one of the window's days and start <= local time < end.
    """
    start = _utc(instant, "instant")
    if not window.days:
        raise ValueError("the send window has no days; it never opens")
    local = start.astimezone(zone)
    if local.weekday() in window.days and window.start <= local.time() < window.end:
        return start
    for ahead in range(8):
        day = local.date() + timedelta(days=ahead)
        if day.weekday() not in window.days:
            continue
        for opening in _wall_to_utc(day, window.start, zone):
            if opening >= start:
                return opening
    raise AssertionError("unreachable: a window with days opens within a week")


def local_time(instant: datetime, zone: ZoneInfo) -> datetime:
    """The instant on the zone's wall clock (for display)."""
    return _utc(instant, "instant").astimezone(zone)


def enrollment_instant(trigger: Trigger, event_at: datetime, zone: ZoneInfo) -> datetime:
    """When a trigger enrolls someone, given the moment of interest (UTC result).

    customer.added / tag.added: the event itself. date: 00:00 local on the day of `event_at`
    (the day of the date field, e.g. the birthday). cron: the next fire time at or after
    `event_at`, in the zone. opened_no_order / silent / repurchase_due: `after` past the
    open, the last act or the last order (`event_at`); content.opened / stage.changed: the
    fact itself.
    """
    at = _utc(event_at, "event_at")
    if trigger.event == "date":
        return _wall_to_utc(at.astimezone(zone).date(), time(0), zone)[0]
    if trigger.event == "cron" and trigger.cron:
        return next_cron_fire(trigger.cron, at, zone)
    if trigger.after is not None:  # opened_no_order, silent, repurchase_due: after the wait
        return at + trigger.after
    return at


def next_cron_fire(cron: str, after: datetime, zone: ZoneInfo) -> datetime:
    """The first time the crontab (read in `zone`) fires at or after `after`, as UTC."""
    from apscheduler.triggers.cron import CronTrigger

    start = _utc(after, "after")
    fire = CronTrigger.from_crontab(cron, timezone=zone).get_next_fire_time(None, start)
    if fire is None:
        raise ValueError(f"cron {cron!r} never fires after {start.isoformat()}")
    return fire.astimezone(UTC)


def _wall_to_utc(day: date, wall: time, zone: ZoneInfo) -> list[datetime]:
    """The instants (UTC, ascending) when the zone's clock shows `wall` on `day`.

    Usually one; two in a repeated hour (DST ends); in a skipped hour (DST starts), none exist
    and the answer is the first instant after the gap, i.e. when the clock jumps past `wall`.
    """
    naive = datetime.combine(day, wall)
    found = []
    for fold in (0, 1):
        candidate = naive.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if candidate.astimezone(zone).replace(tzinfo=None) == naive and candidate not in found:
            found.append(candidate)
    if found:
        return sorted(found)
    # In a gap: fold=1 reads the wall time with the later offset (an instant before the gap),
    # fold=0 with the earlier one (after it). Find the first instant whose wall time >= wall.
    low = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if low > high:
        low, high = high, low
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).replace(tzinfo=None) >= naive:
            high = middle
        else:
            low = middle
    return [high.replace(microsecond=0) if high.microsecond else high]


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be tz-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)
