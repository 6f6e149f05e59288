"""The event router: kinds, injection by name, domain routers."""

from __future__ import annotations

import pytest

from guidebot.intake.router import UNHANDLED, Dispatcher, Router, RouterError
from guidebot.wecom.events import AddExternalContact, DelFollowUser, parse_event
from tests.support import event_xml

ADD = parse_event(event_xml("add_external_contact", "g1", "wmc1", 100, State="s10:qr:x"))
LEFT = parse_event(event_xml("del_follow_user", "g1", "wmc1", 200))
CLICK = parse_event(
    "<xml><ToUserName>c</ToUserName><FromUserName>g1</FromUserName><CreateTime>1</CreateTime>"
    "<MsgType>event</MsgType><Event>click</Event><EventKey>menu</EventKey></xml>"
)


def dispatcher_with(*routers: Router, names=("session",)) -> Dispatcher:
    dispatcher = Dispatcher(injectables=names)
    for router in routers:
        dispatcher.include_router(router)
    return dispatcher


async def test_handlers_match_by_class_or_by_kind_string():
    router, seen = Router("r"), []

    @router.on(AddExternalContact)
    async def added(event):
        seen.append(("class", event.kind))

    @router.on("event:click")
    async def clicked(event):
        seen.append(("kind", event.kind))

    dispatcher = dispatcher_with(router)
    await dispatcher.feed(ADD)
    await dispatcher.feed(CLICK)
    assert await dispatcher.feed(LEFT) is UNHANDLED
    assert seen == [("class", "add_external_contact"), ("kind", "event:click")]


async def test_handlers_get_only_the_names_they_declare():
    router, got = Router("r"), {}

    @router.on(DelFollowUser)
    async def handler(event, session):
        got.update(session=session, event=event)

    await dispatcher_with(router).feed(LEFT, session="S", other="ignored")
    assert got == {"session": "S", "event": LEFT}


async def test_first_taker_within_a_router_and_every_domain_router_gets_the_event():
    contacts, sop, seen = Router("contacts"), Router("sop"), []

    @contacts.on(AddExternalContact)
    async def record(event):
        seen.append("contacts")
        return "recorded"

    @contacts.on(AddExternalContact)
    async def never(event):
        seen.append("second contacts handler")

    @sop.on(AddExternalContact)
    async def enroll(event):
        seen.append("sop")
        return "enrolled"

    result = await dispatcher_with(contacts, sop).feed(ADD)
    assert seen == ["contacts", "sop"]  # in inclusion order
    assert result == ["recorded", "enrolled"]


def test_wiring_mistakes_fail_at_start_up():
    router = Router("r")

    @router.on(DelFollowUser)
    async def typo(event, sesion): ...

    with pytest.raises(RouterError, match="asks for sesion"):
        dispatcher_with(router).check_wiring()
    with pytest.raises(RouterError, match="cannot include itself"):
        router.include_router(router)
    child = Router("child")
    router.include_router(child)
    with pytest.raises(RouterError, match="cycle"):
        child.include_router(router)
    with pytest.raises(RouterError, match="neither an Event class nor a kind string"):
        router.register(typo, int)
    with pytest.raises(RouterError, match="must be an async function"):
        router.register(lambda event: None, DelFollowUser)


async def test_a_before_callback_fetches_by_its_name_and_its_handler_takes_it():
    router, seen = Router("contacts"), []

    @router.before(AddExternalContact)
    async def profile(event, wecom):
        return {"name": f"{wecom}:{event.external_userid}"}

    @router.on(AddExternalContact)
    async def added(event, profile, session):
        seen.append(profile)

    dispatcher = dispatcher_with(router, names=("session", "wecom"))
    dispatcher.check_wiring()  # `profile` is known: a before-callback provides it
    fetched = await dispatcher.fetch_before(ADD, {"wecom": "w", "session": None})
    assert fetched == {"profile": {"name": "w:wmc1"}}
    assert await dispatcher.fetch_before(LEFT, {"wecom": "w"}) == {}
    await dispatcher.feed(ADD, session=None, **fetched)
    assert seen == [{"name": "w:wmc1"}]
    # The add's handler reads no WeCom itself; a handler that does calls out.
    assert not dispatcher.calls_out(ADD)

    @router.on(DelFollowUser)
    async def left(event, wecom):
        return None

    assert dispatcher.calls_out(LEFT)


def test_a_before_callback_asking_for_what_nobody_provides_fails_at_start_up():
    router = Router("contacts")

    @router.before(AddExternalContact)
    async def profile(event, wecmo):
        return None

    with pytest.raises(RouterError, match="wecmo"):
        dispatcher_with(router, names=("session", "wecom")).check_wiring()


async def test_a_router_wired_after_events_were_fed_is_offered_the_next_ones():
    """The dispatcher works out once per kind of event what matches it, and again whenever
    the wiring changes."""
    first, seen = Router("first"), []

    @first.on(AddExternalContact)
    async def added(event):
        seen.append("first")

    dispatcher = dispatcher_with(first)
    await dispatcher.feed(ADD)
    assert not dispatcher.handles(CLICK)
    late = Router("late")

    @late.on(AddExternalContact)
    async def also(event):
        seen.append("late")

    dispatcher.include_router(late)
    await dispatcher.feed(ADD)
    more = Router("more")
    late.include_router(more)

    @more.on(AddExternalContact)
    async def never(event):  # late's own handler takes it first
        seen.append("more")

    await dispatcher.feed(ADD)
    assert seen == ["first", "first", "late", "first", "late"]
    assert dispatcher.handles(ADD)
