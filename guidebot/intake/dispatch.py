"""The dispatcher every instance runs: each domain's router, and what handlers may ask for."""

from __future__ import annotations

from guidebot.intake.router import Dispatcher

# The closed set of names a handler may declare as parameters (besides `event`).
INJECTABLES = frozenset(
    {
        "session",
        "wecom",
        "clock",
        "settings",
        "telemetry",
        "sop",
        "inbox_id",
        "attempts",
        "after_commit",
    }
)


def build_dispatcher() -> Dispatcher:
    dispatcher = Dispatcher(injectables=INJECTABLES)
    for router in domain_routers():
        dispatcher.include_router(router)
    return dispatcher


def domain_routers() -> list:
    # Imported here so that the wecom and intake layers never import the domain at load time.
    from guidebot.bot.handlers import router as bot
    from guidebot.contacts.handlers import router as contacts
    from guidebot.sop.handlers import before as sop_before
    from guidebot.sop.handlers import router as sop

    # sop_before only remembers a pair's tags before contacts updates them; sop runs after
    # contacts, so the relation it enrolls or stops is already recorded in the transaction.
    return [sop_before, contacts, sop, bot]
