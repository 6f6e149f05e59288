"""GroupMemberJoined and GroupMemberLeft: announced once per fact, in the transaction that logs
it, with whether the fact is the member's current state."""

from __future__ import annotations

from guidebot.events import GroupMemberJoined, GroupMemberLeft, Subscribers, wire


def hearing(h) -> list:
    heard: list = []
    subscribers = Subscribers()

    async def note(session, event) -> None:
        heard.append(event)

    subscribers.subscribe(GroupMemberJoined, note)
    subscribers.subscribe(GroupMemberLeft, note)
    wire(h.sessions, subscribers)
    return heard


async def test_each_fact_is_announced_once_and_an_old_one_as_not_current(h):
    heard = hearing(h)
    chat_id = await h.create_group("g1", "快闪群")
    h.advance(30)
    joined = await h.join(chat_id, "wmc1", deliver=False)
    h.advance(30)
    left = await h.leave(chat_id, "wmc1", removed=True, deliver=False)
    await h.deliver(left["plaintext"])
    await h.deliver(joined["plaintext"])
    await h.deliver(left["plaintext"])
    await h.deliver(joined["plaintext"])
    facts = [(type(e).__name__, e.member_id, e.current) for e in heard]
    assert facts == [
        ("GroupMemberJoined", "g1", True),  # the owner, at the group's creation
        ("GroupMemberLeft", "wmc1", True),
        ("GroupMemberJoined", "wmc1", False),  # older than the departure already known
    ]
    left_event = heard[1]
    assert (left_event.removed, left_event.owner_userid, left_event.store_id) == (True, "g1", 11)
    assert left_event.member_type == "customer" and left_event.source == "callback"
