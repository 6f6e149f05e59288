"""An event router in the shape of aiogram's: handlers per event kind, injection by name.

    router = Router("contacts")

    @router.on(AddExternalContact)
    async def on_added(event: AddExternalContact, session: AsyncSession) -> None: ...

A handler is registered for event classes (matched with isinstance) or kind strings (matched
against `event.kind`, e.g. "event:click" for a generic event). A handler declares what it needs
by parameter name; the Dispatcher checks every name against its closed set at start-up, so a
typo fails when the server starts, not at 3 am.
Within one router (with the routers it includes) the first handler that matches an event
handles it. The Dispatcher gives every event to each top-level domain router; no domain relies
on another having run first (what one domain's handling means to another is a domain event,
guidebot.events). The inbox worker wraps the whole in its own steps (errors, dedupe, session).

What a handler needs from outside (a WeCom read) is fetched by a `before` callback, outside the
event's transaction, and handed to the handler by the callback's name:

    @router.before(AddExternalContact)
    async def profile(event: AddExternalContact, wecom: WeComClient) -> Profile | None: ...

    @router.on(AddExternalContact)
    async def on_added(event: AddExternalContact, profile: Profile | None, ...) -> None: ...

so no transaction is held open across the network (on SQLite, the one connection the
callbacks are committed on); the worker may then handle such events in a shared transaction.
A handler that still asks for `wecom` itself `calls_out`: its event gets a transaction of its own.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from guidebot.wecom.events import Event

Data = dict[str, Any]
Next = Callable[[Event, Data], Awaitable[Any]]


class _Unhandled:
    def __repr__(self) -> str:
        return "UNHANDLED"


UNHANDLED: Any = _Unhandled()


class RouterError(RuntimeError):
    """A mistake in how handlers were wired; raised at start-up."""


# Bumped by every registration and inclusion: the Dispatcher's plans per kind of event are
# built from the wiring as it was, and rebuilt once it changes (tests wire routers late).
_WIRING = [0]


@dataclass(frozen=True, slots=True)
class HandlerObject:
    callback: Callable[..., Awaitable[Any]]
    kinds: tuple[type[Event] | str, ...]
    params: frozenset[str] = field(init=False)
    takes_all: bool = field(init=False)

    def __post_init__(self) -> None:
        if not inspect.iscoroutinefunction(self.callback):
            raise RouterError(f"handler {self.name} must be an async function")
        signature = inspect.signature(self.callback)
        names = {
            name
            for name, p in signature.parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }
        object.__setattr__(self, "params", frozenset(names))
        object.__setattr__(
            self,
            "takes_all",
            any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()),
        )

    @property
    def name(self) -> str:
        code = getattr(self.callback, "__code__", None)
        where = f" ({code.co_filename}:{code.co_firstlineno})" if code else ""
        return f"{getattr(self.callback, '__qualname__', self.callback)!s}{where}"

    def matches(self, event: Event) -> bool:
        return any(
            (isinstance(kind, str) and kind == event.kind)
            or (isinstance(kind, type) and isinstance(event, kind))
            for kind in self.kinds
        )

    async def call(self, event: Event, data: Data) -> Any:
        available = {"event": event, **data}
        if self.takes_all:
            return await self.callback(**available)
        return await self.callback(**{k: v for k, v in available.items() if k in self.params})


class Router:
    def __init__(self, name: str) -> None:
        self.name = name
        self.handlers: list[HandlerObject] = []
        self.befores: list[HandlerObject] = []  # named by their callback: what they inject
        self.children: list[Router] = []

    def before(self, *kinds: type[Event] | str) -> Callable:
        """Decorator: fetch what this router's handler of `kinds` takes (by the callback's
        name), before the event's transaction opens."""
        if not kinds:
            raise RouterError(f"router {self.name}: before() needs at least one event kind")

        def register(callback: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            self.befores.append(HandlerObject(callback, tuple(kinds)))
            _WIRING[0] += 1
            return callback

        return register

    def on(self, *kinds: type[Event] | str) -> Callable:
        """Decorator: `@router.on(AddExternalContact, AddHalfExternalContact)`."""
        if not kinds:
            raise RouterError(f"router {self.name}: on() needs at least one event kind")

        def register(callback: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            self.register(callback, *kinds)
            return callback

        return register

    def register(
        self, callback: Callable[..., Awaitable[Any]], *kinds: type[Event] | str
    ) -> HandlerObject:
        for kind in kinds:
            if not (isinstance(kind, str) or (isinstance(kind, type) and issubclass(kind, Event))):
                raise RouterError(
                    f"router {self.name}: {kind!r} is neither an Event class nor a kind string"
                )
        handler = HandlerObject(callback, tuple(kinds))
        self.handlers.append(handler)
        _WIRING[0] += 1
        return handler

    def include_router(self, router: Router) -> Router:
        if router is self:
            raise RouterError(f"router {self.name} cannot include itself")
        if self in router.chain():
            raise RouterError(f"including {router.name} in {self.name} would make a cycle")
        if any(router is child for child in self.children):
            raise RouterError(f"router {router.name} is already included in {self.name}")
        self.children.append(router)
        _WIRING[0] += 1
        return router

    def chain(self) -> list[Router]:
        """This router and every router below it, depth first."""
        found = [self]
        for child in self.children:
            found.extend(child.chain())
        return found

    async def propagate(self, event: Event, data: Data) -> Any:
        """The first handler in this router or the routers it includes, depth first."""
        for router in self.chain():
            result = await router._offer(event, data)
            if result is not UNHANDLED:
                return result
        return UNHANDLED

    async def _offer(self, event: Event, data: Data) -> Any:
        """Offer the event to this router's own handlers only."""
        for handler in self.handlers:
            if handler.matches(event):
                return await handler.call(event, data)
        return UNHANDLED


class Dispatcher(Router):
    """The root router: owns the closed set of injectable names."""

    def __init__(self, injectables: Iterable[str]) -> None:
        super().__init__("root")
        self.injectables = frozenset(injectables) | {"event"}
        # Per (event class, kind): what matches it, worked out once (every event asked each
        # handler of every router before; at thousands of events a second that showed).
        self._plans: dict[tuple[type, str], _Plan] = {}
        self._wiring = _WIRING[0]

    def _plan(self, event: Event) -> _Plan:
        if self._wiring != _WIRING[0]:
            self._plans.clear()
            self._wiring = _WIRING[0]
        key = (type(event), event.kind)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = _Plan.of(self, event)
        return plan

    def fetched_names(self) -> frozenset[str]:
        return frozenset(b.callback.__name__ for r in self.chain() for b in r.befores)

    def check_wiring(self, extra_names: Iterable[str] = ()) -> None:
        """Fail at start-up if a handler asks for something no one provides."""
        known = self.injectables | frozenset(extra_names)
        for router in self.chain():
            for before in router.befores:
                unknown = before.params - known
                if unknown:
                    raise RouterError(
                        f"before-callback {before.name} asks for {', '.join(sorted(unknown))}, "
                        f"which nothing provides; available: {', '.join(sorted(known))}"
                    )
        known |= self.fetched_names()
        for router in self.chain():
            for handler in router.handlers:
                unknown = handler.params - known
                if unknown:
                    raise RouterError(
                        f"handler {handler.name} asks for {', '.join(sorted(unknown))}, "
                        f"which nothing provides; available: {', '.join(sorted(known))}"
                    )

    async def propagate(self, event: Event, data: Data) -> Any:
        """Offer the event to each domain router; their results, or UNHANDLED if none took it.

        Within a domain, the first matching handler of each router in its chain, in order,
        until one takes it (Router.propagate); the root's own first match before them."""
        results = []
        for candidates in self._plan(event).offers:
            for handler in candidates:
                result = await handler.call(event, data)
                if result is not UNHANDLED:
                    results.append(result)
                    break
        return results or UNHANDLED

    def handles(self, event: Event) -> bool:
        """Whether any handler matches `event` (else only the worker's bookkeeping runs)."""
        return any(self._plan(event).offers)

    async def fetch_before(self, event: Event, data: Data) -> Data:
        """What the `before` callbacks matching `event` fetch, by their names."""
        fetched: Data = {}
        for before in self._plan(event).befores:
            fetched[before.callback.__name__] = await before.call(event, data)
        return fetched

    def calls_out(self, event: Event) -> bool:
        """Whether a handler of `event` asks for WeCom itself (inside its transaction)."""
        return self._plan(event).calls_out

    async def feed(self, event: Event, **data: Any) -> Any:
        """Offer the event to each domain router's first matching handler."""
        return await self.propagate(event, data)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the Dispatcher does with one kind of event, as its routers are wired."""

    offers: tuple[tuple[HandlerObject, ...], ...]  # the root's, then per domain router
    befores: tuple[HandlerObject, ...]
    calls_out: bool

    @classmethod
    def of(cls, root: Dispatcher, event: Event) -> _Plan:
        def first(router: Router) -> HandlerObject | None:
            return next((h for h in router.handlers if h.matches(event)), None)

        offers = [tuple(h for h in [first(root)] if h is not None)]
        for child in root.children:
            offers.append(tuple(h for r in child.chain() if (h := first(r)) is not None))
        every = root.chain()
        return cls(
            offers=tuple(o for o in offers if o),
            befores=tuple(b for r in every for b in r.befores if b.matches(event)),
            calls_out=any(
                "wecom" in h.params or h.takes_all
                for r in every
                for h in r.handlers
                if h.matches(event)
            ),
        )
