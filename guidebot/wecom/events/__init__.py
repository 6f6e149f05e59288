"""WeCom callback events: decrypted plaintext XML -> typed, frozen dataclasses.

This is WeCom's protocol and nothing of guidebot's: no domain, web or database imports (only
the instant window of guidebot.clock, a stdlib-only leaf).

``parse_event(xml)`` is the one entry point. It returns one of the typed events (the table
below) for the kinds guidebot acts on, or a :class:`GenericEvent` that keeps every field for
anything else, so an unknown kind can still be stored and acknowledged. Every problem with the
input (too big, not XML, a DTD or entity, a missing or non-integer field of a known kind, an
instant outside the years FIRST_YEAR..LAST_YEAR, an id WeCom could not have issued) raises
:class:`EventParseError` and nothing else.

The event types live by kind (``base``: Event, GenericEvent, the parse error; ``contact``:
customer contact, chat and tag events; ``directory``: members and departments; ``messages``:
text and app events) and the reading of the XML in ``parsing``; all are importable from here.

Each event's ``kind`` is a stable name for routing:

========================================  ==============================================
event                                     kind
========================================  ==============================================
change_external_contact / <ChangeType>    "add_external_contact", "add_half_external_contact",
                                          "edit_external_contact", "del_external_contact",
                                          "del_follow_user", "transfer_fail"
change_external_chat                      "change_external_chat"
change_external_tag                       "change_external_tag"
change_contact / <ChangeType>             "create_user", "update_user", "delete_user",
                                          "create_party", "update_party", "delete_party"
MsgType text                              "text"
enter_agent                               "enter_agent"
anything else                             "event:<Event>[:<ChangeType>]" or "msg:<MsgType>"
========================================  ==============================================
"""

from guidebot.wecom.events.base import (
    Event,
    EventParseError,
    FieldValue,
    GenericEvent,
    customer_key,
)
from guidebot.wecom.events.contact import (
    AddExternalContact,
    AddHalfExternalContact,
    DelExternalContact,
    DelFollowUser,
    EditExternalContact,
    ExternalChatEvent,
    ExternalContactEvent,
    ExternalTagEvent,
    TransferFail,
)
from guidebot.wecom.events.directory import (
    ContactPartyEvent,
    ContactUserEvent,
    CreateParty,
    CreateUser,
    DeleteParty,
    DeleteUser,
    UpdateParty,
    UpdateUser,
)
from guidebot.wecom.events.messages import EnterAgent, TextMessage
from guidebot.wecom.events.parsing import (
    DEPARTMENT_ID_MAX,
    KNOWN_KINDS,
    MAX_EVENT_BYTES,
    parse_event,
)

__all__ = [
    "DEPARTMENT_ID_MAX",
    "KNOWN_KINDS",
    "MAX_EVENT_BYTES",
    "AddExternalContact",
    "AddHalfExternalContact",
    "ContactPartyEvent",
    "ContactUserEvent",
    "CreateParty",
    "CreateUser",
    "DelExternalContact",
    "DelFollowUser",
    "DeleteParty",
    "DeleteUser",
    "EditExternalContact",
    "EnterAgent",
    "Event",
    "EventParseError",
    "ExternalChatEvent",
    "ExternalContactEvent",
    "ExternalTagEvent",
    "FieldValue",
    "GenericEvent",
    "TextMessage",
    "TransferFail",
    "UpdateParty",
    "UpdateUser",
    "customer_key",
    "parse_event",
]
