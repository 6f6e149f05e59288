"""Playbooks: what an SOP is, as frozen values. No I/O here; `loader` builds them from YAML.

A playbook is one YAML file in `sop/`, named after its id. Every key is below (a trigger
takes only the one of `tag`, `field`, `cron` its event needs); `?` marks an optional key, with
its default. `guidebot sop check` reports anything else as an error with a suggestion, at
file:line:col. The shipped playbooks in `sop/` are working examples.

```yaml
playbook: follow_up_7d           # id: letters, digits, '_', '-'; must equal the file name
version: 2                       # positive integer; bump on every edit (live enrollments
                                 #   stay on the version they started with)
name: 7天跟进                     # ? display name (default: the id)
trigger:
  event: customer.added          # customer.added | tag.added | date | cron | content.opened |
                                 #   opened_no_order | silent | repurchase_due | stage.changed |
                                 #   group.joined
  tag: 新品关注                   # tag.added: the corp tag (name or id) that enrolls;
                                 #   content.opened: only items with this library tag
  item: spring-lookbook          # content.opened only: only this library item (not with tag)
  after: 30d                     # opened_no_order: no order this long after the open;
                                 #   silent: no reply, open or order for this long;
                                 #   repurchase_due: this long after the last counted order
                                 #   (1d to 365d; required for those three)
  orders: 1                      # ? repurchase_due only: exactly this many counted orders
  from: engaged                  # stage.changed: the stage left, `to`: the stage reached
  to: first_purchase             #   (new | engaged | first_purchase | repeat_buyer | dormant |
                                 #   lost); one or both
  field: birthday                # date only: the customer's date field; enrolls at 00:00 local
                                 #   on that day, so `at: enroll` lands at the window's start
  cron: "0 10 * * mon"           # cron only: 5 fields in the playbook's time zone; day of week
                                 #   by name (mon..sun), never by number
  first_join: true               # group.joined only (each optional): only the customer's first
  group_name: "*VIP*"            #   join of a group the trigger picks; the group's name matches
  join_way: poster               #   a pattern (* any text, ? one character; one or a list);
                                 #   they came through a 「加入群聊」 way of this channel (or
                                 #   config_id; one or a list). The pair enrolled is the customer
                                 #   and the group's owner (their relation must be active)
  audience:                      # ? who may enroll; each key is one string or a list, all keys
    channels: [poster]           #   must match, an absent/empty key matches anyone:
    states: ["s12:poster"]       #   channels / states: the contact way (「联系我」) channel or raw
    stores: [SH001]              #   state of the add; stores: store codes; tags: corp tags the
    tags: [VIP]                  #   customer has
enroll:                          # ? default: once per customer, never again
  once_per: customer             # customer (across all guides) | relation (per guide↔customer)
  reenter_after: 180d            # ? may enroll again this long after the last enrollment;
                                 #   at least as long as the playbook (its last step's offset)
timezone: Asia/Shanghai          # IANA name; a store's own time zone overrides it
send_window:                     # every step is moved forward into the window (local time),
  hours: "10:00-21:00"           #   except a welcome at enroll; end after start ("24:00" ends
                                 #   the day), never across midnight
  days: mon-sun                  # ? mon-sun | mon-fri | [mon, wed, sat] | "mon-fri, sun"
stop_when:                       # ? any of: contact.lost (customer deleted the guide),
  - contact.lost                 #   contact.removed (guide deleted the customer), order.paid,
  - order.paid                   #   guide.changed, customer.replied, "tag.added:<tag>"
                                 #   (customer.replied: WeCom has no such callback; the guide
                                 #   marks it in the sidebar, or POST /api/v1/replies)
goal:                            # ? conversion credited to the enrolling guide
  event: order.paid              #   order.paid | customer.replied | content.opened (the
  within: 14d                    #   customer opened the guide's link) | "tag.added:<tag>"
max_messages_per_day: 1          # ? per-customer cap across playbooks, in the customer's day
escalate_after: 1d               # ? a guide's task still open this long after it was due is
                                 #   reported to the store's manager (default: never)
catch_up: 24h                    # ? default 24h: customers who met the trigger while this file
                                 #   was broken (disabled by an error) are enrolled when it is
                                 #   fixed within this long of their add or tag; steps already
                                 #   due by then expire instead of all going at once. 0s: never
                                 #   (customer.added and tag.added; at most 7d)
holdout: 10%                     # ? default 0%: this share of customers (at most 50%) is held
                                 #   out: enrolled and logged, goal counted, but sent nothing
                                 #   and no guide task; chosen by a hash of playbook id and
                                 #   customer, stable across versions (guidebot.sop.holdout)
paused: true                     # ? default false: enrolls nobody and its cron fires nothing
                                 #   until set back; running enrollments go on, and its Moments
                                 #   tasks not yet published are cancelled in WeCom (as when
                                 #   the file is removed or a new version replaces this one)
steps:                           # one or more, in order
  - id: welcome                  # letters, digits, '_', '-', unique; (enrollment, id) is the
                                 #   idempotency key, so never rename a live step
    name: 欢迎语                  # ? what guides read in their task list (default: the action's
                                 #   name, such as 提醒 / 群发任务); ids are never shown to guides
    at: enroll                   # enroll | enroll + 3d | <earlier step id> [+ <duration>]
    action: welcome              # welcome | guide_task | remind | tag |
                                 #   group_message | moment_task (below)
    template: welcome.j2         # message file under templates/messages (not for tag)
    expire_after: 20s            # skip instead of sending this long after due (outage)
    content: spring-lookbook     # ? welcome / guide_task: a content-library item to attach
                                 #   (required for group_message and moment_task, below)
  - id: nudge
    at: welcome + 3d
    action: guide_task
    template: nudge.j2
    expire_after: 1d
    best_time: true              # ? guide_task only, default false: placed on its due day at
                                 #   the hour this customer reads, learned from their opens and
                                 #   replies (their store's while they have few), the best such
                                 #   hour inside the send window (guidebot.contacts.reading_hours)
  - id: mark
    at: welcome + 1d
    action: tag
    tag: 新客                     # tag only: the corp tag to mark
```

Durations are an integer and a unit, s, m, h, d or w, optionally chained: `20s`, `90m`,
`3d`, `1d12h`. In `at`, an offset counts on the local wall clock of the customer's time zone
(`welcome + 1d` is the same local time the next day, also across a DST change; a local time
the change skips becomes the first instant after the jump); `expire_after` counts elapsed time
from the (snapped) due time. A step anchored on another starts from that step's snapped time.

Group steps (only in a `cron` playbook, and then every step is one; they run once per
occurrence, not per customer, and take no template: the text is the library item's):

```yaml
  - id: weekly
    at: enroll                   # the cron instant, moved into the send window
    action: group_message        # 群发到客户群: one add_msg_template (chat_type group) per owner
    content: weekly-picks        # the library item; its tracked link carries the send
    expire_after: 1d             # ? default 1d
    groups:                      # ? which live groups (each key one or a list; all must match):
      stores: [SH001]            #   the group's store, its owner's userid, a name pattern,
      owners: [zhangsan]         #   one of HQ's group labels (guidebot.groups.labels: WeCom
      name: "*VIP*"              #   keeps no tags on groups; 1-32 characters, no commas)
      labels: [VIP]
  - id: post
    at: weekly + 1h
    action: moment_task          # 朋友圈任务: one add_moment_task per guide
    content: weekly-picks        # its tracked link carries the guide's post
    guides:                      # ? the guides of these stores, or these guides
      stores: [SH001]
```

Actions:
- `welcome`: the welcome message, sent with the add event's WelcomeCode. Only at `at: enroll`,
  only for `customer.added`, at most one per playbook, `expire_after` at most 20s.
- `guide_task`: a mass-send task the guide confirms in the WeCom client, plus a reminder.
- `remind`: an app message to the guide (the template speaks to the guide).
- `tag`: mark the corp tag `tag` on the customer; sends nothing, `expire_after` defaults to 7d.
- `group_message`: a group mass send each picked group's owner confirms (guidebot.sop.group_steps).
- `moment_task`: a Moments post each picked guide publishes (guidebot.sop.group_steps).

Values are read with YAML 1.2 rules: quoted text is always a string; plain `3` is an integer;
only `true` / `false` are booleans; `22:00`, `no`, `on`, `1.5` and `2025-01-01` stay text.
Duplicate keys, anchors/aliases and tags such as `!!int` are errors.

Message templates (templates/messages/*.j2) are Jinja2, rendered in a sandbox with only the
variables customer, guide, store, content, links, playbook and step, holding the attributes in
`templates.KNOWN_ATTRIBUTES` (customer.name, guide.name, store.name, links.content, ...); a
missing value is an error, not an empty string (use `{{ x | default('') }}` for optional ones).
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass, field
from datetime import time, timedelta
from functools import cached_property
from typing import Literal

TriggerEvent = Literal[
    "customer.added",
    "tag.added",
    "date",
    "cron",
    "content.opened",
    "opened_no_order",
    "silent",
    "repurchase_due",
    "stage.changed",
    "group.joined",
]

TRIGGER_EVENTS: tuple[str, ...] = (
    "content.opened",
    "cron",
    "customer.added",
    "date",
    "group.joined",
    "opened_no_order",
    "repurchase_due",
    "silent",
    "stage.changed",
    "tag.added",
)
# Behaviour triggers (guidebot.sop.behaviour): the fact's own events, and those the
# `sop-behaviour` scan finds when their `after` has passed.
EVENT_TRIGGERS: tuple[str, ...] = ("content.opened", "stage.changed")
TIMED_TRIGGERS: tuple[str, ...] = ("opened_no_order", "repurchase_due", "silent")
STAGES: tuple[str, ...] = ("new", "engaged", "first_purchase", "repeat_buyer", "dormant", "lost")
STOP_EVENTS: tuple[str, ...] = (
    "contact.lost",
    "contact.removed",
    "customer.replied",
    "guide.changed",
    "order.paid",
    "tag.added:<tag>",
)
GOAL_EVENTS: tuple[str, ...] = (
    "content.opened",
    "customer.replied",
    "order.paid",
    "tag.added:<tag>",
)
TAG_EVENT_PREFIX = "tag.added:"
DAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ENROLL = "enroll"
WELCOME_CODE_LIFETIME = timedelta(seconds=20)
DEFAULT_TAG_EXPIRY = timedelta(days=7)
DEFAULT_CATCH_UP = timedelta(hours=24)
MAX_CATCH_UP = timedelta(days=7)


@dataclass(frozen=True)
class StepTargets:
    """A group step's filter (every set empty: all). group_message: the live groups of these
    stores, owned by these guides, whose name matches a pattern, carrying one of these labels;
    moment_task: the guides of these stores, or these guides."""

    stores: frozenset[str] = frozenset()  # store codes
    owners: frozenset[str] = frozenset()  # group_message: the groups' owners (userids)
    names: tuple[str, ...] = ()  # group_message: glob patterns on the group's name
    guides: frozenset[str] = frozenset()  # moment_task: userids
    labels: frozenset[str] = frozenset()  # group_message: HQ's group labels (any of them)

    def picks_group(
        self,
        store: str | None,
        owner: str | None,
        name: str | None,
        labels: frozenset[str] | tuple[str, ...] = (),
    ) -> bool:
        if self.stores and store not in self.stores:
            return False
        if self.owners and owner not in self.owners:
            return False
        if self.labels and not self.labels & set(labels):
            return False
        return not self.names or any(fnmatch.fnmatchcase(name or "", p) for p in self.names)

    def describe(self) -> str:
        """As `sop simulate` shows it."""
        parts = []
        if self.stores:
            parts.append("stores " + ", ".join(sorted(self.stores)))
        if self.owners:
            parts.append("owners " + ", ".join(sorted(self.owners)))
        if self.names:
            parts.append("name " + " or ".join(self.names))
        if self.labels:
            parts.append("labels " + " or ".join(sorted(self.labels)))
        if self.guides:
            parts.append("guides " + ", ".join(sorted(self.guides)))
        return "; ".join(parts) or "all"


@dataclass(frozen=True)
class Step:
    id: str
    anchor: str  # "enroll" or an earlier step id
    offset: timedelta  # after the anchor, on the local wall clock
    action: str  # a name in guidebot.sop.actions (welcome, guide_task, remind, tag, ...)
    template: str | None  # file name under templates/messages, e.g. "welcome.j2"
    expire_after: timedelta
    tag: str | None = None  # for action "tag": the corp tag (id or name)
    content: str | None = None  # content-library item id for guide_task / welcome / group steps
    name: str | None = None  # the display name guides read (None: the action's name)
    best_time: bool = False  # placed at the customer's best hour on its due day
    targets: StepTargets | None = None  # group_message: which groups; moment_task: which guides

    @property
    def immediate(self) -> bool:
        """A welcome at enroll: runs on the callback's fast path and is never snapped."""
        return self.action == "welcome" and self.anchor == ENROLL and not self.offset


@dataclass(frozen=True)
class SendWindow:
    start: time
    end: time  # after start: a window never wraps past midnight
    days: frozenset[int] = frozenset(range(7))  # 0=Mon..6=Sun

    def __str__(self) -> str:
        end = "24:00" if self.end == time.max else f"{self.end:%H:%M}"
        return f"{self.start:%H:%M}-{end} {format_days(self.days)}"


@dataclass(frozen=True)
class GroupFilter:
    """group.joined: which joins of a customer group enroll (every set empty: any join)."""

    first_join: bool = False  # only the customer's first join of a group this filter picks
    group_names: tuple[str, ...] = ()  # glob patterns; the group's name matches one of them
    join_ways: frozenset[str] = frozenset()  # the join way's channel or config_id

    def picks(self, name: str | None, channel: str | None, config_id: str | None) -> bool:
        if self.group_names and not any(
            fnmatch.fnmatchcase(name or "", pattern) for pattern in self.group_names
        ):
            return False
        return not self.join_ways or bool({channel, config_id} & self.join_ways)

    def describe(self) -> str:
        """As `sop simulate` and the studio show it: first join, names, join ways."""
        parts = ["first join only"] if self.first_join else []
        if self.group_names:
            parts.append("group name " + " or ".join(self.group_names))
        if self.join_ways:
            parts.append("join way " + " or ".join(sorted(self.join_ways)))
        return ", ".join(parts) or "any group"


@dataclass(frozen=True)
class Trigger:
    event: TriggerEvent
    tag: str | None = None  # tag.added
    field: str | None = None  # date, e.g. "birthday"
    cron: str | None = None  # cron, a crontab in the playbook's time zone
    item: str | None = None  # content.opened: the library item's key (tag: one of its tags)
    after: timedelta | None = None  # opened_no_order, silent, repurchase_due: the wait
    from_stage: str | None = None  # stage.changed: the stage left (None: any)
    to_stage: str | None = None  # stage.changed: the stage reached (None: any)
    orders: int | None = None  # repurchase_due: exactly this many counted orders (None: any)
    group: GroupFilter | None = None  # group.joined


@dataclass(frozen=True)
class Audience:
    """Who may enroll; an empty set matches anyone, every non-empty set must match."""

    channels: frozenset[str] = frozenset()
    states: frozenset[str] = frozenset()
    stores: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()


@dataclass(frozen=True)
class EnrollRule:
    once_per_customer: bool = True  # False: once per (guide, customer) relation
    reenter_after: timedelta | None = None  # None: never again


@dataclass(frozen=True)
class Goal:
    event: str
    within: timedelta


@dataclass(frozen=True)
class Playbook:
    id: str
    version: int
    name: str
    source: str  # file path
    trigger: Trigger
    audience: Audience
    enroll: EnrollRule
    timezone: str
    send_window: SendWindow
    stop_when: frozenset[str]
    goal: Goal | None
    steps: tuple[Step, ...]
    max_messages_per_day: int = 1
    escalate_after: timedelta | None = None  # an open guide task this overdue goes to the manager
    catch_up: timedelta = DEFAULT_CATCH_UP  # how long after a miss a fix still enrolls
    holdout: float = 0.0  # the share of customers held out (guidebot.sop.holdout)
    paused: bool = False  # loaded, but enrolls nobody (guidebot.sop.registry.enabled)
    source_text: str = field(default="", repr=False, compare=False)

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(f"playbook {self.id!r} v{self.version} has no step {step_id!r}")

    @cached_property
    def digest(self) -> str:
        """sha256 of the YAML text, so an edit without a version bump can be noticed."""
        return hashlib.sha256(self.source_text.encode("utf-8", "surrogatepass")).hexdigest()

    def offset_from_enroll(self, step_id: str) -> timedelta:
        """The step's nominal distance from enrollment: its offset plus its anchors' offsets."""
        total = timedelta(0)
        step = self.step(step_id)
        while True:
            total += step.offset
            if step.anchor == ENROLL:
                return total
            step = self.step(step.anchor)

    @property
    def length(self) -> timedelta:
        """The nominal offset of the last step from enrollment (before window snapping)."""
        return max((self.offset_from_enroll(s.id) for s in self.steps), default=timedelta(0))

    def stops_on(self, event: str) -> bool:
        """Whether an event name (e.g. "order.paid" or "tag.added:VIP") ends an enrollment."""
        return event in self.stop_when

    @property
    def stop_tags(self) -> frozenset[str]:
        """The tags whose addition stops an enrollment (from "tag.added:<tag>")."""
        return frozenset(
            e.removeprefix(TAG_EVENT_PREFIX)
            for e in self.stop_when
            if e.startswith(TAG_EVENT_PREFIX)
        )


def format_duration(delta: timedelta) -> str:
    """Duration text that `loader` reads back, in days and smaller units: 1d12h, 20s, 14d."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return sign + "".join(parts)


def format_days(days: frozenset[int]) -> str:
    """mon-sun, mon-fri, or a list such as mon,wed,sat."""
    ordered = sorted(days)
    if not ordered:
        return "never"
    if ordered == list(range(ordered[0], ordered[-1] + 1)) and len(ordered) > 2:
        return f"{DAY_NAMES[ordered[0]]}-{DAY_NAMES[ordered[-1]]}"
    return ",".join(DAY_NAMES[d] for d in ordered)
