"""The dispatcher every instance runs, and what handlers may ask for.

The app (the composition root) hands in the domain routers; intake knows no domain. Each domain
router hears every event; no router depends on another having run first (what one domain's
handling means to another travels as a domain event, guidebot.events).
"""

from __future__ import annotations

from collections.abc import Iterable

from guidebot.intake.router import Dispatcher, Router

# The closed set of names a handler may declare as parameters (besides `event`).
INJECTABLES = frozenset(
    {"session", "wecom", "clock", "settings", "telemetry", "inbox_id", "attempts"}
)


def build_dispatcher(routers: Iterable[Router]) -> Dispatcher:
    dispatcher = Dispatcher(injectables=INJECTABLES)
    for router in routers:
        dispatcher.include_router(router)
    return dispatcher
