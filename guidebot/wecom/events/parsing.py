"""Decrypted callback plaintext -> a typed event: bounded, entity-free XML reading, and every
field checked against the shape WeCom gives it."""

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, TypeAlias
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as defused_et
from defusedxml import (
    DefusedXmlException,
    DTDForbidden,
    EntitiesForbidden,
    ExternalReferenceForbidden,
)

from guidebot.clock import FIRST_YEAR, LAST_YEAR
from guidebot.wecom.events.base import Event, EventParseError, FieldValue, GenericEvent
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
from guidebot.wecom.flatxml import flat_children

# Real callbacks are well under 2 KiB; the bound is checked before any parsing work is done.
MAX_EVENT_BYTES = 64 * 1024

# WeCom nests at most three levels deep; anything deeper is hostile input, and the walk that
# turns elements into values recurses.
_MAX_DEPTH = 16

# ASCII digits only: int() alone would also accept "1_000", "١٢" and "１２".
_INT_RE = re.compile(r"[+-]?[0-9]{1,20}")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Instants outside the years the API and the reports accept are refused here too: near year
# 9999 a store's UTC offset overflows datetime, and one such event would stop every rollup.
_FIRST_SECOND = int((datetime(FIRST_YEAR, 1, 1, tzinfo=UTC) - _EPOCH).total_seconds())
_LAST_SECOND = int((datetime(LAST_YEAR + 1, 1, 1, tzinfo=UTC) - _EPOCH).total_seconds()) - 1

# The shapes of WeCom's ids, checked as each field is read: a signed callback can still carry
# junk, and an id WeCom could never have issued must not become a guide, customer or store.
# userid: doc 90195 (创建成员) "长度为1~64个字节。只能由数字、字母和“_-@.”四种字符组成，且第一个字符
# 必须是数字或字母". external_userid: "wm…" (a WeChat user) or "wo…" (a WeCom user), as in the
# add_external_contact sample of doc 92130; WeCom documents no length (its samples have about
# 30 characters), and our columns hold 64. Department id: doc 90205 (创建部门) "部门id，32位整型".
_USERID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_@.-]{0,63}")
_EXTERNAL_USERID_RE = re.compile(r"w[mo][A-Za-z0-9_-]{1,62}")
# ChatId ("wr…"), tag and tag-group ids ("et…"), StrategyId: opaque, bounded.
_OPAQUE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
# MsgType, Event and ChangeType name kinds ("event:<Event>:<ChangeType>"), stored in 80 chars.
_NAME_RE = re.compile(r"[A-Za-z0-9_]{1,32}")
DEPARTMENT_ID_MAX = 2**31 - 1
# State is at most 30 characters for a 「联系我」 (doc 92228) and 64 bytes for a 获客链接's
# customer_channel; WelcomeCode has no documented length. Both are kept in 255 characters.
_STATE_MAX = 255
_MSG_ID_MAX = 2**64 - 1  # MsgId is a 64-bit unsigned integer


class _Fields:
    """Reads top-level fields by element name; errors name the event kind being read."""

    __slots__ = ("raw", "where")

    def __init__(self, raw: Mapping[str, FieldValue], where: str = "") -> None:
        self.raw = raw
        self.where = where

    def at(self, where: str) -> "_Fields":
        return _Fields(self.raw, where)

    def error(self, message: str) -> EventParseError:
        return EventParseError(f"{self.where}: {message}" if self.where else message)

    def _text(self, name: str) -> str | None:
        value = self.raw.get(name)
        if value is None or isinstance(value, str):
            return value
        raise self.error(f"{name} must be a single text value")

    def optional(self, name: str) -> str | None:
        """Absent and empty are the same: WeCom omits fields it has no value for."""
        return self._text(name) or None

    def required(self, name: str, *, allow_empty: bool = False) -> str:
        value = self._text(name)
        if value is None or (not value and not allow_empty):
            raise self.error(f"missing {name}")
        return value

    def _to_int(self, name: str, value: str) -> int:
        if not _INT_RE.fullmatch(value):
            raise self.error(f"{name} is not an integer: {value[:40]!r}")
        return int(value)

    def required_int(self, name: str) -> int:
        return self._to_int(name, self.required(name))

    def optional_int(self, name: str) -> int | None:
        value = self.optional(name)
        return None if value is None else self._to_int(name, value)

    def int_list(self, name: str) -> tuple[int, ...]:
        """A comma-separated list of integers, e.g. Department "1,2" -> (1, 2)."""
        value = self.optional(name)
        if value is None:
            return ()
        return tuple(self._to_int(name, part.strip()) for part in value.split(",") if part.strip())

    def items(self, name: str, shape: re.Pattern[str] | None = None) -> tuple[str, ...]:
        """An element of <Item>s, e.g. MemChangeList; one Item or many, always a tuple."""
        value = self.raw.get(name)
        if value is None or value == "":
            return ()
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            if shape is not None:
                for item in value:
                    self._shaped(name, item, shape)  # type: ignore[arg-type]  # a str, checked
            return tuple(value)  # type: ignore[arg-type]  # checked just above
        raise self.error(f"{name} must hold <Item> text elements")

    # -- WeCom's shapes -----------------------------------------------------------------------

    def _shaped(self, name: str, value: str, shape: re.Pattern[str]) -> str:
        if not shape.fullmatch(value):
            raise self.error(f"{name} is not a WeCom {_SHAPE_NAMES[shape]}: {value[:40]!r}")
        return value

    def userid(self, name: str) -> str:
        return self._shaped(name, self.required(name), _USERID_RE)

    def optional_userid(self, name: str) -> str | None:
        value = self.optional(name)
        return None if value is None else self._shaped(name, value, _USERID_RE)

    def external_userid(self, name: str) -> str:
        return self._shaped(name, self.required(name), _EXTERNAL_USERID_RE)

    def optional_external_userid(self, name: str) -> str | None:
        value = self.optional(name)
        return None if value is None else self._shaped(name, value, _EXTERNAL_USERID_RE)

    def opaque_id(self, name: str) -> str:
        return self._shaped(name, self.required(name), _OPAQUE_ID_RE)

    def optional_opaque_id(self, name: str) -> str | None:
        value = self.optional(name)
        return None if value is None else self._shaped(name, value, _OPAQUE_ID_RE)

    def type_name(self, name: str) -> str:
        return self._shaped(name, self.required(name), _NAME_RE)

    def optional_type_name(self, name: str) -> str | None:
        value = self.optional(name)
        return None if value is None else self._shaped(name, value, _NAME_RE)

    def optional_text(self, name: str, limit: int) -> str | None:
        """Free text with no documented shape, bounded so that it fits where it is kept."""
        value = self.optional(name)
        if value is not None and len(value) > limit:
            raise self.error(f"{name} is over {limit} characters")
        return value

    def _in_range(self, name: str, value: int, low: int, high: int) -> int:
        if not low <= value <= high:
            raise self.error(f"{name} out of range: {value}")
        return value

    def department_id(self, name: str) -> int:
        return self._in_range(name, self.required_int(name), 1, DEPARTMENT_ID_MAX)

    def optional_department_id(self, name: str, *, low: int = 1) -> int | None:
        value = self.optional_int(name)
        return None if value is None else self._in_range(name, value, low, DEPARTMENT_ID_MAX)

    def department_ids(self, name: str) -> tuple[int, ...]:
        ids = self.int_list(name)
        for value in ids:
            self._in_range(name, value, 1, DEPARTMENT_ID_MAX)
        return ids

    def msg_id(self, name: str) -> int:
        return self._in_range(name, self.required_int(name), 0, _MSG_ID_MAX)

    def instant(self, name: str) -> datetime:
        """Epoch seconds, within the years FIRST_YEAR..LAST_YEAR: every instant read here."""
        seconds = self.required_int(name)
        if not _FIRST_SECOND <= seconds <= _LAST_SECOND:
            raise self.error(
                f"{name} out of range: {seconds} (years {FIRST_YEAR} to {LAST_YEAR} only)"
            )
        return _EPOCH + timedelta(seconds=seconds)


_SHAPE_NAMES = {
    _USERID_RE: "userid",
    _EXTERNAL_USERID_RE: "external_userid",
    _OPAQUE_ID_RE: "id",
    _NAME_RE: "name",
}


def _to_text(xml: str | bytes) -> str | bytes:
    """Enforce MAX_EVENT_BYTES before any parsing; the size is counted in UTF-8 bytes."""
    if isinstance(xml, bytearray | memoryview):
        xml = bytes(xml)
    if isinstance(xml, bytes):
        size = len(xml)
    elif isinstance(xml, str):
        # A str longer than the limit in characters is longer in bytes too; skip encoding it.
        if len(xml) > MAX_EVENT_BYTES:
            size = len(xml)
        else:
            try:
                size = len(xml.encode("utf-8"))
            except UnicodeEncodeError as exc:
                raise EventParseError("text is not valid Unicode (lone surrogate)") from exc
    else:
        raise TypeError(f"parse_event() takes str or bytes, not {type(xml).__name__}")
    if size > MAX_EVENT_BYTES:
        raise EventParseError(f"event is over the {MAX_EVENT_BYTES}-byte limit")
    return xml


def _parse_root(xml: str | bytes) -> Element:
    try:
        # forbid_dtd refuses any <!DOCTYPE>, so no entity of any kind can be declared.
        return defused_et.fromstring(
            xml, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DTDForbidden as exc:
        raise EventParseError("DOCTYPE is not allowed (no DTDs or entity declarations)") from exc
    except EntitiesForbidden as exc:
        raise EventParseError("entity declarations are not allowed") from exc
    except ExternalReferenceForbidden as exc:
        raise EventParseError("external references are not allowed") from exc
    except DefusedXmlException as exc:
        raise EventParseError(f"forbidden XML construct: {type(exc).__name__}") from exc
    except ParseError as exc:
        raise EventParseError(f"malformed XML: {exc}") from exc
    except (LookupError, ValueError) as exc:
        # expat raises these for an unknown or multi-byte encoding in the XML declaration.
        raise EventParseError(f"unsupported XML encoding: {exc}") from exc


def _value(element: Element, depth: int) -> FieldValue:
    children = list(element)
    if not children:
        return (element.text or "").strip()
    if depth >= _MAX_DEPTH:
        raise EventParseError("XML is nested too deeply")
    # WeCom writes lists as <Item>s; keep them a list even when there is only one.
    if all(child.tag in ("Item", "item") for child in children):
        return [_value(child, depth + 1) for child in children]
    return _group(children, depth + 1)


def _group(children: list[Element], depth: int) -> dict[str, FieldValue]:
    return _by_name([(child.tag, _value(child, depth)) for child in children])


def _by_name(pairs: Sequence[tuple[str, FieldValue]]) -> dict[str, FieldValue]:
    """Values by element name; a repeated name becomes a list of its values, in order."""
    by_name = dict(pairs)
    if len(by_name) == len(pairs):  # no name repeats, as in nearly every event: nothing to group
        return by_name
    grouped: dict[str, list[FieldValue]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return {name: values[0] if len(values) == 1 else values for name, values in grouped.items()}


# Builders get the reader (already naming the kind) and the common keyword arguments.
_Builder: TypeAlias = Callable[[_Fields, dict[str, Any]], Event]


def _build_external_contact(cls: type[ExternalContactEvent]) -> _Builder:
    def build(f: _Fields, common: dict[str, Any]) -> Event:
        extra: dict[str, Any] = {}
        if cls is AddExternalContact or cls is AddHalfExternalContact:
            extra = {
                "state": f.optional_text("State", _STATE_MAX),
                "welcome_code": f.optional_text("WelcomeCode", _STATE_MAX),
            }
        elif cls is EditExternalContact:
            extra = {"state": f.optional_text("State", _STATE_MAX)}
        elif cls is DelExternalContact:
            extra = {"source": f.optional("Source")}
        elif cls is TransferFail:
            extra = {"fail_reason": f.required("FailReason")}
        return cls(
            **common,
            userid=f.userid("UserID"),
            external_userid=f.external_userid("ExternalUserID"),
            **extra,
        )

    return build


def _build_chat(f: _Fields, common: dict[str, Any]) -> Event:
    return ExternalChatEvent(
        **common,
        chat_id=f.opaque_id("ChatId"),
        change_type=f.required("ChangeType"),
        update_detail=f.optional("UpdateDetail"),
        join_scene=f.optional_int("JoinScene"),
        quit_scene=f.optional_int("QuitScene"),
        mem_change_cnt=f.optional_int("MemChangeCnt"),
        # Members and customers who joined or left: userids and external_userids.
        mem_change_list=f.items("MemChangeList", _USERID_RE),
        last_mem_ver=f.optional("LastMemVer"),
        cur_mem_ver=f.optional("CurMemVer"),
    )


def _build_tag(f: _Fields, common: dict[str, Any]) -> Event:
    return ExternalTagEvent(
        **common,
        id=f.opaque_id("Id"),
        change_type=f.required("ChangeType"),
        tag_type=f.optional("TagType"),
        strategy_id=f.optional_opaque_id("StrategyId"),
    )


def _build_user(cls: type[ContactUserEvent]) -> _Builder:
    def build(f: _Fields, common: dict[str, Any]) -> Event:
        extra = {"new_userid": f.optional_userid("NewUserID")} if cls is UpdateUser else {}
        return cls(
            **common,
            userid=f.userid("UserID"),
            departments=f.department_ids("Department"),
            main_department=f.optional_department_id("MainDepartment"),
            **extra,
        )

    return build


def _build_party(cls: type[ContactPartyEvent]) -> _Builder:
    def build(f: _Fields, common: dict[str, Any]) -> Event:
        return cls(
            **common,
            id=f.department_id("Id"),
            name=f.optional("Name"),
            parent_id=f.optional_department_id("ParentId", low=0),  # 0: above the root
            order=f.optional_int("Order"),
        )

    return build


def _build_text(f: _Fields, common: dict[str, Any]) -> Event:
    return TextMessage(
        **common,
        content=f.required("Content", allow_empty=True),
        msg_id=f.msg_id("MsgId"),
        agent_id=f.optional_int("AgentID"),
    )


def _build_enter_agent(f: _Fields, common: dict[str, Any]) -> Event:
    return EnterAgent(
        **common,
        event_key=f.optional("EventKey") or "",
        agent_id=f.optional_int("AgentID"),
    )


# Events whose meaning depends on ChangeType: Event -> {ChangeType -> builder}. A ChangeType
# missing from the inner table (e.g. change_contact update_tag) parses to a GenericEvent.
_BY_CHANGE_TYPE: dict[str, dict[str, _Builder]] = {
    "change_external_contact": {
        cls.KIND: _build_external_contact(cls)
        for cls in (
            AddExternalContact,
            AddHalfExternalContact,
            EditExternalContact,
            DelExternalContact,
            DelFollowUser,
            TransferFail,
        )
    },
    "change_external_chat": dict.fromkeys(("create", "update", "dismiss"), _build_chat),
    "change_external_tag": dict.fromkeys(("create", "update", "delete", "shuffle"), _build_tag),
    "change_contact": {
        **{cls.KIND: _build_user(cls) for cls in (CreateUser, UpdateUser, DeleteUser)},
        **{cls.KIND: _build_party(cls) for cls in (CreateParty, UpdateParty, DeleteParty)},
    },
}
_BY_EVENT: dict[str, _Builder] = {"enter_agent": _build_enter_agent}
_BY_MSG_TYPE: dict[str, _Builder] = {"text": _build_text}

# Every kind a typed event can have; anything else is a GenericEvent's "event:..."/"msg:...".
KNOWN_KINDS: frozenset[str] = frozenset(
    {
        AddExternalContact.KIND,
        AddHalfExternalContact.KIND,
        EditExternalContact.KIND,
        DelExternalContact.KIND,
        DelFollowUser.KIND,
        TransferFail.KIND,
        ExternalChatEvent.KIND,
        ExternalTagEvent.KIND,
        CreateUser.KIND,
        UpdateUser.KIND,
        DeleteUser.KIND,
        CreateParty.KIND,
        UpdateParty.KIND,
        DeleteParty.KIND,
        TextMessage.KIND,
        EnterAgent.KIND,
    }
)


def parse_event(xml: str | bytes) -> Event:
    """Parse one decrypted WeCom callback into a typed event (or a GenericEvent).

    Raises EventParseError, with a short reason, for anything that is not a readable event.
    """
    document = _to_text(xml)
    flat = flat_children(document)  # most events: no element tree needed
    if flat is not None:
        by_name = _by_name(flat)
    else:
        root = _parse_root(document)
        if root.tag != "xml":
            raise EventParseError(f"root element is <{root.tag[:40]}>, expected <xml>")
        by_name = _group(list(root), depth=1)
    raw: Mapping[str, FieldValue] = MappingProxyType(by_name)
    fields = _Fields(by_name)  # the dict itself: a lookup through the proxy costs more

    msg_type = fields.type_name("MsgType")
    common: dict[str, Any] = {
        "to_user": fields.required("ToUserName"),
        "from_user": fields.userid("FromUserName"),  # "sys", or the member who sent it
        "create_time": fields.instant("CreateTime"),
        "msg_type": msg_type,
        "raw": raw,
    }

    if msg_type != "event":
        build = _BY_MSG_TYPE.get(msg_type)
        if build is None:
            return _generic(fields, common)
        return build(fields.at(f"{msg_type} message"), common)

    event = fields.type_name("Event")
    change_types = _BY_CHANGE_TYPE.get(event)
    if change_types is not None:
        change_type = fields.at(event).required("ChangeType")
        build = change_types.get(change_type)
        if build is not None:
            return build(fields.at(f"{event} {change_type}"), common)
    elif (build := _BY_EVENT.get(event)) is not None:
        return build(fields.at(event), common)
    change_type = fields.optional_type_name("ChangeType")
    return _generic(fields, common, event=event, change_type=change_type)


def _generic(fields: _Fields, common: dict[str, Any], **kind: str | None) -> GenericEvent:
    # A kind we do not type still names its member and customer (`userid`, `customer_key`):
    # they must have WeCom's shapes as in the typed events.
    fields.optional_userid("UserID")
    fields.optional_external_userid("ExternalUserID")
    return GenericEvent(**common, **kind)
