"""An event router in the shape of aiogram's: handlers per event kind, filters, outer middlewares.

    router = Router("contacts")

    @router.on(AddExternalContact, filters=[ChannelState("store:")])
    async def on_added(event: AddExternalContact, session: AsyncSession) -> None: ...

A handler is registered for event classes (matched with isinstance) or kind strings (matched
against `event.kind`, e.g. "event:click" for a generic event). Filters run in order; a filter
returns False to pass the handler by, True to accept, or a dict whose items become extra
arguments (a filter lists those names in its `provides` attribute). A handler declares what
it needs by parameter name; the Dispatcher checks every name against its closed set at
start-up, so a typo fails when the server starts, not at 3 am.
Within one router (with the routers it includes) the first handler that accepts an event
handles it. The Dispatcher gives every event to each top-level domain router in turn, in the
order they were included, so contacts can record an add before the SOP engine enrolls it.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from guidebot.wecom.events import Event

Data = dict[str, Any]
Next = Callable[[Event, Data], Awaitable[Any]]
Middleware = Callable[[Next, Event, Data], Awaitable[Any]]
Filter = Callable[[Event], bool | Data | Awaitable[bool | Data]]


class _Unhandled:
    def __repr__(self) -> str:
        return "UNHANDLED"


UNHANDLED: Any = _Unhandled()


class RouterError(RuntimeError):
    """A mistake in how handlers were wired; raised at start-up."""


@dataclass(frozen=True, slots=True)
class HandlerObject:
    callback: Callable[..., Awaitable[Any]]
    kinds: tuple[type[Event] | str, ...]
    filters: tuple[Filter, ...]
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

    async def check(self, event: Event) -> Data | None:
        """Run the filters: None when one refuses, else the extra arguments they supplied."""
        extra: Data = {}
        for check in self.filters:
            verdict = check(event)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            if not verdict:
                return None
            if isinstance(verdict, dict):
                extra.update(verdict)
        return extra

    async def call(self, event: Event, data: Data) -> Any:
        available = {"event": event, **data}
        if self.takes_all:
            return await self.callback(**available)
        return await self.callback(**{k: v for k, v in available.items() if k in self.params})


class Router:
    def __init__(self, name: str) -> None:
        self.name = name
        self.handlers: list[HandlerObject] = []
        self.children: list[Router] = []

    def on(self, *kinds: type[Event] | str, filters: Iterable[Filter] = ()) -> Callable:
        """Decorator: `@router.on(AddExternalContact, filters=[ChannelState("store:")])`."""
        if not kinds:
            raise RouterError(f"router {self.name}: on() needs at least one event kind")

        def register(callback: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            self.register(callback, *kinds, filters=filters)
            return callback

        return register

    def register(
        self,
        callback: Callable[..., Awaitable[Any]],
        *kinds: type[Event] | str,
        filters: Iterable[Filter] = (),
    ) -> HandlerObject:
        for kind in kinds:
            if not (isinstance(kind, str) or (isinstance(kind, type) and issubclass(kind, Event))):
                raise RouterError(
                    f"router {self.name}: {kind!r} is neither an Event class nor a kind string"
                )
        handler = HandlerObject(callback, tuple(kinds), tuple(filters))
        self.handlers.append(handler)
        return handler

    def include_router(self, router: Router) -> Router:
        if router is self:
            raise RouterError(f"router {self.name} cannot include itself")
        if self in router.chain():
            raise RouterError(f"including {router.name} in {self.name} would make a cycle")
        if any(router is child for child in self.children):
            raise RouterError(f"router {router.name} is already included in {self.name}")
        self.children.append(router)
        return router

    def chain(self) -> list[Router]:
        """This router and every router below it, depth first."""
        found = [self]
        for child in self.children:
            found.extend(child.chain())
        return found

    async def propagate(self, event: Event, data: Data) -> Any:
        """The first taker in this router or the routers it includes, depth first."""
        for router in self.chain():
            result = await router._offer(event, data)
            if result is not UNHANDLED:
                return result
        return UNHANDLED

    async def _offer(self, event: Event, data: Data) -> Any:
        """Offer the event to this router's own handlers only."""
        for handler in self.handlers:
            if not handler.matches(event):
                continue
            extra = await handler.check(event)
            if extra is None:
                continue
            return await handler.call(event, {**data, **extra})
        return UNHANDLED


class Dispatcher(Router):
    """The root router: owns the outer middlewares and the closed set of injectable names."""

    def __init__(self, injectables: Iterable[str]) -> None:
        super().__init__("root")
        self.injectables = frozenset(injectables) | {"event"}
        self.middlewares: list[Middleware] = []

    def middleware(self, middleware: Middleware) -> Middleware:
        """Add an outer middleware; the first added is the outermost."""
        self.middlewares.append(middleware)
        return middleware

    def check_wiring(self, extra_names: Iterable[str] = ()) -> None:
        """Fail at start-up if a handler asks for something no one provides."""
        known = self.injectables | frozenset(extra_names)
        for router in self.chain():
            for handler in router.handlers:
                provided = {name for f in handler.filters for name in getattr(f, "provides", ())}
                unknown = handler.params - known - provided
                if unknown:
                    raise RouterError(
                        f"handler {handler.name} asks for {', '.join(sorted(unknown))}, "
                        f"which nothing provides; available: {', '.join(sorted(known))}"
                    )

    async def propagate(self, event: Event, data: Data) -> Any:
        """Offer the event to each domain router; their results, or UNHANDLED if none took it."""
        results = []
        for result in [await self._offer(event, data)] + [
            await child.propagate(event, data) for child in self.children
        ]:
            if result is not UNHANDLED:
                results.append(result)
        return results or UNHANDLED

    async def feed(self, event: Event, **data: Any) -> Any:
        """Run the event through the middlewares, then each domain router's first taker."""
        call: Next = self.propagate
        for middleware in reversed(self.middlewares):
            call = partial(middleware, call)
        return await call(event, data)
