"""Messages to the app and app events: a member's text, a member opening the app."""

from dataclasses import dataclass
from typing import ClassVar

from guidebot.wecom.events.base import Event


@dataclass(frozen=True, slots=True, kw_only=True)
class TextMessage(Event):
    """A member wrote text to the app; ``from_user`` is that member's userid."""

    KIND: ClassVar[str] = "text"

    content: str
    msg_id: int  # MsgId: 64-bit, the dedupe key for messages
    agent_id: int | None = None

    @property
    def userid(self) -> str:
        return self.from_user


@dataclass(frozen=True, slots=True, kw_only=True)
class EnterAgent(Event):
    """A member opened the app (sent only when the app reports entering)."""

    KIND: ClassVar[str] = "enter_agent"

    event_key: str = ""  # EventKey: empty in practice
    agent_id: int | None = None

    @property
    def userid(self) -> str:
        return self.from_user
