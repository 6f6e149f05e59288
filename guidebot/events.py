"""Domain events: the facts one domain announces and the others hear, in one transaction.

A domain that changes something other domains care about says so with a typed fact instead of
calling them:

    await publish(session, RelationEnded(...))

`publish` calls each subscriber to that kind of fact right away, in the order they subscribed,
with the emitter's own session. Nothing is queued and nothing runs later, so what a subscriber
writes commits, or rolls back, with what the emitter wrote: "it all commits together" holds.
A subscriber's exception reaches the emitter like any other failure of its transaction. A
subscriber whose work must not cost the emitter its record guards that work itself (the SOP
engine enrolls each playbook in a savepoint and logs a failure).

Wiring. Subscribers are found through the session: whoever builds a session factory for domain
work (guidebot.runtime, for the app and the CLI's offline commands; a benchmark) attaches one
`Subscribers` to it with `wire(factory, subscribers)`, and every session the factory makes
carries it in `session.info`.
A session nobody wired cannot publish: `publish` raises EventsNotWired, so a forgotten wiring
fails its first fact loudly instead of dropping it. A test of one domain alone wires its factory
with an empty `Subscribers()`, which says on purpose that nobody listens.

Work that must wait for the commit (the welcome goes out only once its enrollment is durable)
is handed to `after_commit(session, work)`. The owner of the transaction runs it after a
successful commit (the inbox worker does, for the events it handles); a session whose owner
said nothing about it refuses such work with EventsNotWired too.

This module is a bottom layer: it knows no domain. The facts are plain values; the domains
that announce them and the subscribers that hear them import this module, never each other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

_SUBSCRIBERS = "guidebot.events.subscribers"
_AFTER_COMMIT = "guidebot.events.after_commit"


class EventsNotWired(RuntimeError):
    """A fact (or after-commit work) was offered to a session nobody wired to hear it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainEvent:
    """A fact about what just happened, as of `now` (the emitter's clock reading)."""

    now: datetime


# ---- contacts: guide↔customer relations ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreRef:
    """A store as an emitter read it with its fact: its id, code, IANA zone and name (all None
    for a relation that counts for no store, or whose department is gone)."""

    id: int | None
    code: str | None
    timezone: str | None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class PairNames:
    """The pair's names as the emitter wrote or read them with its fact: the customer's as
    WeCom's profile gave it (None: it gave none) and the guide's (None: it has none)."""

    customer: str | None
    guide: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PairFacts:
    """The relation as its emitter wrote it, for the hearers of its fact: what audiences,
    templates and stages read of a pair (a Relation has the same names)."""

    guide_userid: str
    external_userid: str
    status: str
    store_id: int | None
    channel: str | None
    state: str | None
    tags: tuple[dict[str, Any], ...]
    remark: str | None
    description: str | None

    @classmethod
    def of(cls, relation: Any) -> PairFacts:
        """From a Relation, or anything with its columns as attributes."""
        return cls(
            guide_userid=relation.guide_userid,
            external_userid=relation.external_userid,
            status=relation.status,
            store_id=relation.store_id,
            channel=relation.channel,
            state=relation.state,
            tags=tuple(relation.tags or ()),
            remark=relation.remark,
            description=relation.description,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RelationAdded(DomainEvent):
    """The pair is active as of `at`: newly added, or `reactivated` after it had ended.

    `source` says who told contacts (contacts.models.EventSource: a WeCom callback, the nightly
    reconciliation, the API, the demo); `by_edit` marks a pair first seen through an edit of a
    relation we never saw added; `welcome_code` is the add's WelcomeCode, if it carried one.
    `relation` is the relation as the emitter wrote it, so no subscriber reads it again;
    `store` is the relation's store when the emitter read it with the add (an add callback
    does), likewise; `names` too, when the add knew them for certain (the welcome's text
    needs them).
    """

    guide_userid: str
    external_userid: str
    at: datetime
    source: str
    reactivated: bool = False
    by_edit: bool = False
    welcome_code: str | None = None
    relation: PairFacts | None = None
    store: StoreRef | None = None
    names: PairNames | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RelationEnded(DomainEvent):
    """An end of the pair's relation was recorded (a delete, or the handover's side of a
    transfer); `status` is what the relation is now: lost, removed or transferred (an end older
    than the pair's last change leaves the status as it was)."""

    guide_userid: str
    external_userid: str
    status: str
    at: datetime
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RelationTransferred(DomainEvent):
    """The customer moved from one guide to another (a transfer completed)."""

    external_userid: str
    from_guide: str
    to_guide: str
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class GuideLeft(DomainEvent):
    """The guide left the corp (WeCom deleted the member, or the address book no longer lists
    them); their relations stay, for a resigned transfer."""

    guide_userid: str
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class TagsGained(DomainEvent):
    """An edit gave the pair tags it did not have; `tags` as contacts stores them
    ({"id", "name", "group"}). `active` is whether the relation is active now."""

    guide_userid: str
    external_userid: str
    tags: tuple[dict[str, Any], ...]
    at: datetime
    active: bool
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RelationEdited(DomainEvent):
    """The guide's remark, description or remark mobiles of the pair changed (an edit in
    WeCom); `changed` names the fields ("remark", "description", ...). `active` is whether the
    relation is active now. (Tags gained are a fact of their own: TagsGained.)"""

    guide_userid: str
    external_userid: str
    changed: tuple[str, ...]
    at: datetime
    active: bool
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StageChanged(DomainEvent):
    """The customer's lifecycle stage changed (guidebot.contacts.lifecycle) at `at`, from
    `from_stage` (None: their first) to `to_stage`; `reason` names the fact that moved it
    (relation.added, content.opened, order.paid, dormancy, ...)."""

    external_userid: str
    guide_userid: str
    from_stage: str | None
    to_stage: str
    at: datetime
    reason: str


# ---- groups: customer group membership ---------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupMemberJoined(DomainEvent):
    """A join was logged for the first time (groups' membership log): `member_id` joined the
    customer group `chat_id` at `at`. `member_type` is "customer" or "employee"; `owner_userid`
    and `store_id` are the group's then; `config_id`, `channel` and `campaign` name the
    「加入群聊」 join way it came through, when it was ours. Facts arrive in any order: a join
    older than the member's last departure is still announced (`current` is False then)."""

    chat_id: str
    member_id: str
    member_type: str
    owner_userid: str | None
    store_id: int | None
    at: datetime
    scene: int | None
    source: str
    current: bool = True
    config_id: str | None = None
    channel: str | None = None
    campaign: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupMemberLeft(DomainEvent):
    """A departure was logged for the first time: `member_id` left (`removed` False) or was
    removed from `chat_id` at `at`; `current` is False when a later join is already known."""

    chat_id: str
    member_id: str
    member_type: str
    owner_userid: str | None
    store_id: int | None
    at: datetime
    removed: bool
    source: str
    current: bool = True


# ---- content: forwards and opens ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentForwarded(DomainEvent):
    """A guide's forward was logged for the first time; `task_id` is the task it was for."""

    ref: str
    item_id: int
    guide_userid: str
    external_userid: str | None
    via: str
    task_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentOpened(DomainEvent):
    """A customer opened a tracked link from their guide. `link_nonce` and `task_id` name the
    link; whether it reached the customer (forwarded, or sent by a task) is for the hearer."""

    guide_userid: str
    external_userid: str
    item_id: int
    link_nonce: str
    task_id: int | None
    at: datetime


# ---- sop: a customer's reply --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerReplied(DomainEvent):
    """The customer wrote back to the guide at `at`. WeCom pushes no such event to an app:
    `source` says who reported it ("sidebar": the guide marked it; "api": a chat-archive or CRM
    pipeline posted it)."""

    guide_userid: str
    external_userid: str
    at: datetime
    source: str


# ---- metrics: orders ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderPaid(DomainEvent):
    """A new paid order arrived, attributed to `guide_userid` (None: to nobody)."""

    order_id: str
    external_userid: str | None
    guide_userid: str | None
    paid_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRefunded(DomainEvent):
    """An order was taken back at `refunded_at`: by the refund call, a repeat post saying
    refunded, or a first post of an order already refunded (then no OrderPaid came before it).
    Attributed to `guide_userid` (None: to nobody), as when it was paid."""

    order_id: str
    external_userid: str | None
    guide_userid: str | None
    paid_at: datetime
    refunded_at: datetime


E = TypeVar("E", bound=DomainEvent)
Subscriber = Callable[[AsyncSession, Any], Awaitable[Any]]


class Subscribers:
    """Who hears which kind of fact, in the order they subscribed."""

    def __init__(self) -> None:
        self._by_kind: dict[type[DomainEvent], list[Subscriber]] = {}

    def subscribe(
        self, kind: type[E], subscriber: Callable[[AsyncSession, E], Awaitable[Any]]
    ) -> None:
        if not (isinstance(kind, type) and issubclass(kind, DomainEvent)):
            raise TypeError(f"{kind!r} is not a kind of domain event")
        self._by_kind.setdefault(kind, []).append(subscriber)

    def of(self, kind: type[DomainEvent]) -> tuple[Subscriber, ...]:
        return tuple(self._by_kind.get(kind, ()))

    async def deliver(self, session: AsyncSession, event: DomainEvent) -> None:
        for subscriber in self.of(type(event)):
            await subscriber(session, event)


def wire(factory: async_sessionmaker[AsyncSession], subscribers: Subscribers) -> None:
    """Make every session `factory` creates deliver its facts to `subscribers`."""
    info = dict(factory.kw.get("info") or {})
    info[_SUBSCRIBERS] = subscribers
    factory.configure(info=info)


def subscribers_of(session: AsyncSession) -> Subscribers:
    found = session.info.get(_SUBSCRIBERS)
    if found is None:
        raise EventsNotWired(
            "this session's factory was not wired to any subscribers (guidebot.events.wire); "
            "a fact published here would be lost"
        )
    return found


async def publish(session: AsyncSession, event: DomainEvent) -> None:
    """Deliver `event` to its subscribers now, inside the session's transaction."""
    await subscribers_of(session).deliver(session, event)


def collect_after_commit(
    session: AsyncSession, pending: list[Callable[[], Awaitable[Any]]]
) -> None:
    """The transaction's owner: work handed to after_commit on `session` goes into `pending`,
    which the owner runs once its commit succeeded."""
    session.info[_AFTER_COMMIT] = pending


def after_commit(session: AsyncSession, work: Callable[[], Awaitable[Any]]) -> None:
    """Run `work` once this session's transaction has committed (never if it rolls back)."""
    pending = session.info.get(_AFTER_COMMIT)
    if pending is None:
        raise EventsNotWired(
            "nobody runs after-commit work for this session (guidebot.events.collect_after_commit)"
        )
    pending.append(work)


__all__ = [
    "ContentForwarded",
    "ContentOpened",
    "CustomerReplied",
    "DomainEvent",
    "EventsNotWired",
    "GroupMemberJoined",
    "GroupMemberLeft",
    "OrderPaid",
    "OrderRefunded",
    "PairNames",
    "RelationAdded",
    "RelationEdited",
    "RelationEnded",
    "RelationTransferred",
    "StageChanged",
    "StoreRef",
    "Subscribers",
    "TagsGained",
    "after_commit",
    "collect_after_commit",
    "publish",
    "subscribers_of",
    "wire",
]
