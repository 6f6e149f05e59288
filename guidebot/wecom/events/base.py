"""What every WeCom callback event is: the common fields, the catch-all GenericEvent for kinds
not typed, the parse error, and the key that keeps one customer's events in order."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, TypeAlias

# WeCom's own sender for system events; not a member's userid.
_SYSTEM_SENDER = "sys"

# A field's value: the stripped text of a leaf element, a dict for an element with children, or
# a list when an element holds only <Item>s or a name repeats.
FieldValue: TypeAlias = "str | list[FieldValue] | dict[str, FieldValue]"


class EventParseError(ValueError):
    """The callback plaintext is not an event we can read; ``reason`` says why in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Fields every callback carries. Use a subclass; ``kind`` names which one."""

    KIND: ClassVar[str]

    to_user: str  # ToUserName: the CorpID
    from_user: str  # FromUserName: "sys" for system events, else a member's userid
    create_time: datetime  # CreateTime, tz-aware UTC
    msg_type: str  # MsgType: "event", "text", ...
    # Every top-level field, element name -> value. Left out of the hash: a mapping has none.
    raw: Mapping[str, FieldValue] = field(repr=False, hash=False)

    @property
    def kind(self) -> str:
        return self.KIND

    @property
    def userid(self) -> str | None:
        """The member (guide) this event is about, if any."""
        return None

    @property
    def external_userid(self) -> str | None:
        """The customer this event is about, if any."""
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class GenericEvent(Event):
    """Any kind not typed above (update_tag, image messages, menu clicks, new WeCom events).

    Nothing is dropped: ``fields`` (the same mapping as ``raw``) holds every element.
    """

    event: str | None = None  # Event, when MsgType is "event"
    change_type: str | None = None  # ChangeType, when present

    @property
    def kind(self) -> str:
        if self.event is None:
            return f"msg:{self.msg_type}"
        if self.change_type:
            return f"event:{self.event}:{self.change_type}"
        return f"event:{self.event}"

    @property
    def fields(self) -> Mapping[str, FieldValue]:
        return self.raw

    @property
    def userid(self) -> str | None:
        value = self.raw.get("UserID")
        if isinstance(value, str) and value:
            return value
        # Without a UserID, the sender is the member unless WeCom itself sent the event.
        return None if self.from_user == _SYSTEM_SENDER else self.from_user

    @property
    def external_userid(self) -> str | None:
        value = self.raw.get("ExternalUserID")
        return value if isinstance(value, str) and value else None


def customer_key(event: Event) -> str | None:
    """The ExternalUserID when the event concerns one customer, else None.

    A worker keeps the events with one key in order; events without a key need no ordering.
    """
    return event.external_userid
