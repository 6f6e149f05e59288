"""Router filters on contact events.

    @router.on(AddExternalContact, filters=[ChannelState("poster")])
    async def on_poster_add(event: AddExternalContact, way: ParsedState | None) -> None: ...

A filter is called with the event (see guidebot.intake.router); it answers False to pass the
handler by, or a dict whose items become the handler's extra arguments.
"""

from __future__ import annotations

from typing import Any

from guidebot.contacts.ways import ParsedState, parse_state
from guidebot.wecom.events import Event


class ChannelState:
    """Accepts add events whose contact-way state starts with `prefix_or_channel`, or whose
    guidebot-format state (``s{store}:{channel}[:{campaign}]``) names that channel.

    Provides ``way``: the parsed state (a ParsedState), or None for a state matched by prefix
    that is not in guidebot's format.
    """

    provides = ("way",)

    def __init__(self, prefix_or_channel: str) -> None:
        if not prefix_or_channel:
            raise ValueError("ChannelState needs a prefix or a channel name")
        self.match = prefix_or_channel

    def __call__(self, event: Event) -> bool | dict[str, Any]:
        state = getattr(event, "state", None)
        if not state:
            return False
        parsed: ParsedState | None = parse_state(state)
        if state.startswith(self.match) or (parsed is not None and parsed.channel == self.match):
            return {"way": parsed}
        return False

    def __repr__(self) -> str:
        return f"ChannelState({self.match!r})"
