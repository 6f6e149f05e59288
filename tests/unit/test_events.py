"""guidebot.wecom.events: WeCom callback plaintext -> typed events, safely."""

import ast
import dataclasses
import importlib
import pkgutil
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import guidebot.clock as clock_module
import guidebot.wecom.events as events_module
from guidebot.wecom.events import (
    KNOWN_KINDS,
    MAX_EVENT_BYTES,
    AddExternalContact,
    AddHalfExternalContact,
    CreateParty,
    CreateUser,
    DeleteParty,
    DeleteUser,
    DelExternalContact,
    DelFollowUser,
    EditExternalContact,
    EnterAgent,
    Event,
    EventParseError,
    ExternalChatEvent,
    ExternalTagEvent,
    GenericEvent,
    TextMessage,
    TransferFail,
    UpdateParty,
    UpdateUser,
    customer_key,
    parse_event,
)
from tests.fuzzing import examples

FIXTURES = Path(__file__).parents[1] / "fixtures" / "wecom"

# 1403610513, the CreateTime of every customer-contact sample.
SAMPLE_TIME = datetime(2014, 6, 24, 11, 48, 33, tzinfo=UTC)


def load(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def event_xml(*elements: str, msg_type: str = "event", create_time: str = "1403610513") -> str:
    """A callback with the common header and the given body elements."""
    return (
        "<xml><ToUserName><![CDATA[toUser]]></ToUserName>"
        "<FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{create_time}</CreateTime>"
        f"<MsgType><![CDATA[{msg_type}]]></MsgType>" + "".join(elements) + "</xml>"
    )


def assert_system_header(event: Event) -> None:
    assert event.to_user == "toUser"
    assert event.from_user == "sys"
    assert event.create_time == SAMPLE_TIME
    assert event.create_time.utcoffset() == timedelta(0)
    assert event.msg_type == "event"


# --------------------------------------------------------------------------------------------
# One test per official sample in tests/fixtures/wecom
# --------------------------------------------------------------------------------------------

COVERED_FIXTURES: set[str] = set()


def fixture_test(name: str):
    COVERED_FIXTURES.add(name)
    return lambda fn: fn


@fixture_test("add_external_contact.xml")
def test_add_external_contact() -> None:
    event = parse_event(load("add_external_contact.xml"))
    assert type(event) is AddExternalContact
    assert_system_header(event)
    assert event.kind == "add_external_contact"
    assert event.userid == "zhangsan"
    assert event.external_userid == "woAJ2GCAAAXtWyujaWJHDDGi0mAAAA"
    assert event.state == "teststate"
    assert event.welcome_code == "WELCOMECODE"
    assert customer_key(event) == "woAJ2GCAAAXtWyujaWJHDDGi0mAAAA"
    assert dict(event.raw) == {
        "ToUserName": "toUser",
        "FromUserName": "sys",
        "CreateTime": "1403610513",
        "MsgType": "event",
        "Event": "change_external_contact",
        "ChangeType": "add_external_contact",
        "UserID": "zhangsan",
        "ExternalUserID": "woAJ2GCAAAXtWyujaWJHDDGi0mAAAA",
        "State": "teststate",
        "WelcomeCode": "WELCOMECODE",
    }


@fixture_test("add_half_external_contact.xml")
def test_add_half_external_contact() -> None:
    event = parse_event(load("add_half_external_contact.xml"))
    assert type(event) is AddHalfExternalContact
    assert_system_header(event)
    assert event.kind == "add_half_external_contact"
    assert event.userid == "zhangsan"
    assert event.external_userid == "woAJ2GCAAAXtWyujaWJHDDGi0mACAAAA"
    assert event.state == "teststate"
    assert event.welcome_code == "WELCOMECODE"
    assert customer_key(event) == "woAJ2GCAAAXtWyujaWJHDDGi0mACAAAA"


@fixture_test("edit_external_contact.xml")
def test_edit_external_contact() -> None:
    event = parse_event(load("edit_external_contact.xml"))
    assert type(event) is EditExternalContact
    assert_system_header(event)
    assert event.kind == "edit_external_contact"
    assert event.userid == "zhangsan"
    assert event.external_userid == "woAJ2GCAAAXtWyujaWJHDDGi0mAAAA"
    assert event.state is None
    assert customer_key(event) == "woAJ2GCAAAXtWyujaWJHDDGi0mAAAA"


@fixture_test("del_external_contact.xml")
def test_del_external_contact() -> None:
    event = parse_event(load("del_external_contact.xml"))
    assert type(event) is DelExternalContact
    assert_system_header(event)
    assert event.kind == "del_external_contact"
    assert event.userid == "zhangsan"
    assert event.external_userid == "woAJ2GCAAAXtWyujaWJHDDGi0mACAAAA"
    assert event.source == "DELETE_BY_TRANSFER"
    assert event.by_transfer is True
    assert customer_key(event) == "woAJ2GCAAAXtWyujaWJHDDGi0mACAAAA"


def test_del_external_contact_without_source() -> None:
    xml = load("del_external_contact.xml").replace(
        "<Source><![CDATA[DELETE_BY_TRANSFER]]></Source>", ""
    )
    event = parse_event(xml)
    assert type(event) is DelExternalContact
    assert event.source is None
    assert event.by_transfer is False


@fixture_test("del_follow_user.xml")
def test_del_follow_user() -> None:
    event = parse_event(load("del_follow_user.xml"))
    assert type(event) is DelFollowUser
    assert_system_header(event)
    assert event.kind == "del_follow_user"
    assert event.userid == "zhangsan"
    assert event.external_userid == "woAJ2GCAAAXtWyujaWJHDDGi0mACHAAA"
    assert customer_key(event) == "woAJ2GCAAAXtWyujaWJHDDGi0mACHAAA"


@fixture_test("transfer_fail.xml")
def test_transfer_fail() -> None:
    event = parse_event(load("transfer_fail.xml"))
    assert type(event) is TransferFail
    assert_system_header(event)
    assert event.kind == "transfer_fail"
    assert event.fail_reason == "customer_refused"
    # UserID is the takeover member.
    assert event.userid == "zhangsan"
    assert event.takeover_userid == "zhangsan"
    assert event.external_userid == "woAJ2GCAAAXtWyujaWJHDDGi0mAAAA"
    assert customer_key(event) == "woAJ2GCAAAXtWyujaWJHDDGi0mAAAA"


@fixture_test("change_external_chat_create.xml")
def test_change_external_chat_create() -> None:
    event = parse_event(load("change_external_chat_create.xml"))
    assert type(event) is ExternalChatEvent
    assert_system_header(event)
    assert event.kind == "change_external_chat"
    assert event.chat_id == "CHAT_ID"
    assert event.change_type == "create"
    assert event.update_detail is None
    assert event.join_scene is None
    assert event.quit_scene is None
    assert event.mem_change_cnt is None
    assert event.mem_change_list == ()
    assert event.last_mem_ver is None
    assert event.cur_mem_ver is None
    assert customer_key(event) is None
    assert event.userid is None


@fixture_test("change_external_chat_update.xml")
def test_change_external_chat_update() -> None:
    event = parse_event(load("change_external_chat_update.xml"))
    assert type(event) is ExternalChatEvent
    assert_system_header(event)
    assert event.kind == "change_external_chat"
    assert event.chat_id == "CHAT_ID"
    assert event.change_type == "update"
    assert event.update_detail == "add_member"
    assert event.join_scene == 1
    assert event.quit_scene == 0
    assert event.mem_change_cnt == 10
    assert event.mem_change_list == ("Jack", "Rose")
    assert event.last_mem_ver == "9c3f97c2ada667dfb5f6d03308d963e1"
    assert event.cur_mem_ver == "71217227bbd112ecfe3a49c482195cb4"
    assert event.raw["MemChangeList"] == ["Jack", "Rose"]
    assert customer_key(event) is None


@fixture_test("change_external_chat_dismiss.xml")
def test_change_external_chat_dismiss() -> None:
    event = parse_event(load("change_external_chat_dismiss.xml"))
    assert type(event) is ExternalChatEvent
    assert_system_header(event)
    assert event.chat_id == "CHAT_ID"
    assert event.change_type == "dismiss"
    assert event.update_detail is None
    assert event.mem_change_list == ()


@fixture_test("change_external_tag_create.xml")
def test_change_external_tag_create() -> None:
    event = parse_event(load("change_external_tag_create.xml"))
    assert type(event) is ExternalTagEvent
    assert_system_header(event)
    assert event.kind == "change_external_tag"
    assert event.id == "TAG_ID"
    assert event.tag_type == "tag"
    assert event.change_type == "create"
    assert event.strategy_id is None
    assert customer_key(event) is None


@fixture_test("change_external_tag_shuffle.xml")
def test_change_external_tag_shuffle() -> None:
    event = parse_event(load("change_external_tag_shuffle.xml"))
    assert type(event) is ExternalTagEvent
    assert_system_header(event)
    assert event.id == "TAG_ID"
    assert event.tag_type is None
    assert event.change_type == "shuffle"
    assert event.strategy_id == "STRATEGY_ID"


@fixture_test("change_contact_create_user.xml")
def test_change_contact_create_user() -> None:
    event = parse_event(load("change_contact_create_user.xml"))
    assert type(event) is CreateUser
    assert_system_header(event)
    assert event.kind == "create_user"
    assert event.userid == "zhangsan"
    assert event.departments == (1, 2)
    assert event.main_department == 2
    assert event.external_userid is None
    assert customer_key(event) is None


@fixture_test("change_contact_update_user.xml")
def test_change_contact_update_user() -> None:
    event = parse_event(load("change_contact_update_user.xml"))
    assert type(event) is UpdateUser
    assert_system_header(event)
    assert event.kind == "update_user"
    assert event.userid == "zhangsan"
    assert event.new_userid == "zhangsan2"
    assert event.departments == (1, 2)
    assert event.main_department == 2


@fixture_test("change_contact_delete_user.xml")
def test_change_contact_delete_user() -> None:
    event = parse_event(load("change_contact_delete_user.xml"))
    assert type(event) is DeleteUser
    assert_system_header(event)
    assert event.kind == "delete_user"
    assert event.userid == "zhangsan"
    assert event.departments == ()
    assert event.main_department is None


@fixture_test("change_contact_create_party.xml")
def test_change_contact_create_party() -> None:
    event = parse_event(load("change_contact_create_party.xml"))
    assert type(event) is CreateParty
    assert_system_header(event)
    assert event.kind == "create_party"
    assert event.id == 2
    assert event.name == "张江店"
    assert event.parent_id == 1
    assert event.order == 1
    assert event.userid is None


@fixture_test("change_contact_delete_party.xml")
def test_change_contact_delete_party() -> None:
    event = parse_event(load("change_contact_delete_party.xml"))
    assert type(event) is DeleteParty
    assert_system_header(event)
    assert event.kind == "delete_party"
    assert event.id == 2
    assert event.name is None
    assert event.parent_id is None
    assert event.order is None


def test_change_contact_update_party() -> None:
    xml = event_xml(
        "<Event><![CDATA[change_contact]]></Event><ChangeType>update_party</ChangeType>",
        "<Id>3</Id><Name><![CDATA[徐汇店]]></Name><ParentId>1</ParentId>",
    )
    event = parse_event(xml)
    assert type(event) is UpdateParty
    assert event.kind == "update_party"
    assert (event.id, event.name, event.parent_id, event.order) == (3, "徐汇店", 1, None)


@fixture_test("text_msg.xml")
def test_text_message() -> None:
    event = parse_event(load("text_msg.xml"))
    assert type(event) is TextMessage
    assert event.kind == "text"
    assert event.to_user == "toUser"
    assert event.from_user == "fromUser"
    assert event.create_time == datetime(2012, 9, 28, 11, 31, 0, tzinfo=UTC)
    assert event.msg_type == "text"
    assert event.content == "this is a test"
    assert event.msg_id == 1234567890123456
    assert event.agent_id == 1
    assert event.userid == "fromUser"
    assert customer_key(event) is None


@fixture_test("enter_agent.xml")
def test_enter_agent() -> None:
    event = parse_event(load("enter_agent.xml"))
    assert type(event) is EnterAgent
    assert event.kind == "enter_agent"
    assert event.to_user == "toUser"
    assert event.from_user == "FromUser"
    assert event.create_time == datetime(2014, 8, 15, 8, 26, 29, tzinfo=UTC)
    assert event.msg_type == "event"
    assert event.event_key == ""
    assert event.agent_id == 1
    assert event.userid == "FromUser"
    assert customer_key(event) is None


def test_every_fixture_has_a_test() -> None:
    assert {path.name for path in FIXTURES.glob("*.xml")} == COVERED_FIXTURES


def test_known_kinds_are_the_typed_kinds() -> None:
    kinds = {parse_event(path.read_bytes()).kind for path in FIXTURES.glob("*.xml")}
    assert kinds | {"update_party"} == KNOWN_KINDS


# --------------------------------------------------------------------------------------------
# Shapes that vary in the wild
# --------------------------------------------------------------------------------------------


def chat_update(mem_change_list: str) -> str:
    return event_xml(
        "<Event><![CDATA[change_external_chat]]></Event>",
        "<ChatId><![CDATA[CHAT_ID]]></ChatId><ChangeType><![CDATA[update]]></ChangeType>",
        "<UpdateDetail><![CDATA[del_member]]></UpdateDetail><QuitScene>1</QuitScene>",
        mem_change_list,
    )


def test_one_item_and_several_items_are_both_tuples() -> None:
    one = parse_event(chat_update("<MemChangeList><Item>Jack</Item></MemChangeList>"))
    two = parse_event(
        chat_update("<MemChangeList><Item>Jack</Item><Item>Rose</Item></MemChangeList>")
    )
    assert isinstance(one, ExternalChatEvent)
    assert isinstance(two, ExternalChatEvent)
    assert one.mem_change_list == ("Jack",)
    assert two.mem_change_list == ("Jack", "Rose")
    assert one.raw["MemChangeList"] == ["Jack"]
    assert one.quit_scene == 1


def test_empty_or_absent_mem_change_list_is_an_empty_tuple() -> None:
    empty = parse_event(chat_update("<MemChangeList></MemChangeList>"))
    absent = parse_event(chat_update(""))
    assert isinstance(empty, ExternalChatEvent)
    assert isinstance(absent, ExternalChatEvent)
    assert empty.mem_change_list == ()
    assert absent.mem_change_list == ()


def test_change_type_cdata_and_plain_text_parse_the_same() -> None:
    cdata = load("change_contact_create_user.xml").replace(
        "<ChangeType>create_user</ChangeType>", "<ChangeType><![CDATA[create_user]]></ChangeType>"
    )
    assert "CDATA[create_user]" in cdata
    plain = load("add_external_contact.xml").replace(
        "<ChangeType><![CDATA[add_external_contact]]></ChangeType>",
        "<ChangeType>add_external_contact</ChangeType>",
    )
    assert "<ChangeType>add_external_contact</ChangeType>" in plain
    assert parse_event(cdata) == parse_event(load("change_contact_create_user.xml"))
    assert type(parse_event(plain)) is AddExternalContact
    assert parse_event(plain) == parse_event(load("add_external_contact.xml"))


def test_whitespace_around_values_is_stripped() -> None:
    xml = event_xml(
        "<Event>\n  change_external_contact\n</Event>",
        "<ChangeType>\n\t<![CDATA[del_follow_user]]>\n</ChangeType>",
        "<UserID>  <![CDATA[ zhangsan ]]>  </UserID>",
        "<ExternalUserID>\n<![CDATA[wmCUSTOMER]]>\n</ExternalUserID>",
        create_time="  1403610513\n",
    )
    event = parse_event(xml)
    assert type(event) is DelFollowUser
    assert event.userid == "zhangsan"
    assert event.external_userid == "wmCUSTOMER"
    assert event.create_time == SAMPLE_TIME


def test_department_list_with_spaces_and_one_entry() -> None:
    xml = event_xml(
        "<Event>change_contact</Event><ChangeType>update_user</ChangeType>",
        "<UserID>lisi</UserID><Department> 3 , 14 </Department>",
    )
    event = parse_event(xml)
    assert isinstance(event, UpdateUser)
    assert event.departments == (3, 14)
    assert event.new_userid is None
    single = parse_event(xml.replace(" 3 , 14 ", "7"))
    assert isinstance(single, UpdateUser)
    assert single.departments == (7,)


def reorder(xml: str, order: str) -> str:
    """Rewrite the top-level elements of a (one element per line) fixture in another order."""
    lines = [line for line in xml.strip().splitlines() if line.strip()]
    assert lines[0] == "<xml>" and lines[-1] == "</xml>"
    body = lines[1:-1]
    body = body[::-1] if order == "reversed" else body[1::2] + body[0::2]
    return "<xml>\n" + "\n".join(body) + "\n</xml>"


@pytest.mark.parametrize("order", ["reversed", "interleaved"])
@pytest.mark.parametrize(
    "name",
    ["add_external_contact.xml", "transfer_fail.xml", "change_external_chat_update.xml"],
)
def test_element_order_does_not_matter(name: str, order: str) -> None:
    original = load(name)
    shuffled = reorder(original, order)
    assert shuffled.splitlines()[1] != original.splitlines()[1]
    assert parse_event(shuffled) == parse_event(original)


def test_tag_event_with_change_type_before_id() -> None:
    xml = event_xml(
        "<ChangeType><![CDATA[delete]]></ChangeType><Id><![CDATA[TAG_GROUP]]></Id>",
        "<TagType><![CDATA[tag_group]]></TagType><Event><![CDATA[change_external_tag]]></Event>",
    )
    event = parse_event(xml)
    assert isinstance(event, ExternalTagEvent)
    assert (event.id, event.change_type, event.tag_type) == ("TAG_GROUP", "delete", "tag_group")


def test_bytes_and_str_parse_alike() -> None:
    raw = (FIXTURES / "change_contact_create_party.xml").read_bytes()
    assert parse_event(raw) == parse_event(raw.decode("utf-8"))
    declared = b'<?xml version="1.0" encoding="UTF-8"?>' + raw
    event = parse_event(declared)
    assert isinstance(event, CreateParty)
    assert event.name == "张江店"


def test_text_message_without_agent_id() -> None:
    xml = load("text_msg.xml").replace("<AgentID>1</AgentID>", "")
    event = parse_event(xml)
    assert isinstance(event, TextMessage)
    assert event.agent_id is None


# --------------------------------------------------------------------------------------------
# Unknown kinds keep every field
# --------------------------------------------------------------------------------------------


def test_menu_click_is_generic() -> None:
    xml = (
        "<xml><ToUserName><![CDATA[toUser]]></ToUserName>"
        "<FromUserName><![CDATA[guide01]]></FromUserName><CreateTime>1408090816</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[click]]></Event>"
        "<EventKey><![CDATA[MY_TASKS]]></EventKey><AgentID>1</AgentID></xml>"
    )
    event = parse_event(xml)
    assert type(event) is GenericEvent
    assert event.kind == "event:click"
    assert event.event == "click"
    assert event.change_type is None
    assert event.msg_type == "event"
    assert event.create_time == datetime(2014, 8, 15, 8, 20, 16, tzinfo=UTC)
    assert dict(event.fields) == {
        "ToUserName": "toUser",
        "FromUserName": "guide01",
        "CreateTime": "1408090816",
        "MsgType": "event",
        "Event": "click",
        "EventKey": "MY_TASKS",
        "AgentID": "1",
    }
    assert event.fields == event.raw
    assert event.userid == "guide01"  # sent by a member, not by "sys"
    assert customer_key(event) is None


def test_image_message_is_generic_with_nested_fields() -> None:
    xml = (
        "<xml><ToUserName><![CDATA[toUser]]></ToUserName>"
        "<FromUserName><![CDATA[guide01]]></FromUserName><CreateTime>1348831860</CreateTime>"
        "<MsgType><![CDATA[image]]></MsgType>"
        "<PicUrl><![CDATA[https://example.com/a.jpg]]></PicUrl>"
        "<MediaId><![CDATA[MEDIA]]></MediaId><MsgId>1234567890123456</MsgId>"
        "<SendPicsInfo><Count>2</Count><PicList>"
        "<item><PicMd5Sum><![CDATA[aaa]]></PicMd5Sum></item>"
        "<item><PicMd5Sum><![CDATA[bbb]]></PicMd5Sum></item>"
        "</PicList></SendPicsInfo>"
        "<Tag>a</Tag><Tag>b</Tag>"
        "<AgentID>1</AgentID></xml>"
    )
    event = parse_event(xml)
    assert type(event) is GenericEvent
    assert event.kind == "msg:image"
    assert event.event is None
    assert event.msg_type == "image"
    assert dict(event.fields) == {
        "ToUserName": "toUser",
        "FromUserName": "guide01",
        "CreateTime": "1348831860",
        "MsgType": "image",
        "PicUrl": "https://example.com/a.jpg",
        "MediaId": "MEDIA",
        "MsgId": "1234567890123456",
        "SendPicsInfo": {
            "Count": "2",
            "PicList": [{"PicMd5Sum": "aaa"}, {"PicMd5Sum": "bbb"}],
        },
        "Tag": ["a", "b"],  # a repeated element keeps every value, in order
        "AgentID": "1",
    }


def test_change_contact_update_tag_is_generic() -> None:
    xml = event_xml(
        "<Event><![CDATA[change_contact]]></Event><ChangeType>update_tag</ChangeType>",
        "<TagId>1</TagId><AddUserItems><![CDATA[zhangsan,lisi]]></AddUserItems>",
        "<DelUserItems><![CDATA[wangwu]]></DelUserItems>",
        "<AddPartyItems><![CDATA[1,2]]></AddPartyItems><DelPartyItems><![CDATA[3]]></DelPartyItems>",
    )
    event = parse_event(xml)
    assert type(event) is GenericEvent
    assert event.kind == "event:change_contact:update_tag"
    assert event.event == "change_contact"
    assert event.change_type == "update_tag"
    assert_system_header(event)
    assert dict(event.fields) == {
        "ToUserName": "toUser",
        "FromUserName": "sys",
        "CreateTime": "1403610513",
        "MsgType": "event",
        "Event": "change_contact",
        "ChangeType": "update_tag",
        "TagId": "1",
        "AddUserItems": "zhangsan,lisi",
        "DelUserItems": "wangwu",
        "AddPartyItems": "1,2",
        "DelPartyItems": "3",
    }
    assert event.userid is None  # from "sys", no UserID


def test_unknown_change_type_of_a_known_event_is_generic() -> None:
    xml = event_xml(
        "<Event><![CDATA[change_external_contact]]></Event>",
        "<ChangeType><![CDATA[msg_audit_approved]]></ChangeType>",
        "<UserID><![CDATA[zhangsan]]></UserID><ExternalUserID><![CDATA[wmX]]></ExternalUserID>",
    )
    event = parse_event(xml)
    assert type(event) is GenericEvent
    assert event.kind == "event:change_external_contact:msg_audit_approved"
    assert event.userid == "zhangsan"
    assert event.external_userid == "wmX"
    assert customer_key(event) == "wmX"


def test_unknown_chat_change_type_is_generic() -> None:
    event = parse_event(
        event_xml("<Event>change_external_chat</Event><ChatId>C</ChatId><ChangeType>x</ChangeType>")
    )
    assert type(event) is GenericEvent
    assert event.kind == "event:change_external_chat:x"
    assert event.fields["ChatId"] == "C"


# --------------------------------------------------------------------------------------------
# Events are values
# --------------------------------------------------------------------------------------------


def test_events_are_frozen_and_raw_is_read_only() -> None:
    event = parse_event(load("add_external_contact.xml"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.userid = "someone-else"  # type: ignore[misc]
    with pytest.raises(TypeError):
        event.raw["UserID"] = "someone-else"  # type: ignore[index]
    assert not hasattr(event, "__dict__")  # slots
    assert hash(event) == hash(parse_event(load("add_external_contact.xml")))


# --------------------------------------------------------------------------------------------
# Hostile and broken input: one error type, a reason a person can read
# --------------------------------------------------------------------------------------------

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE xml [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<xml><ToUserName>&lol3;</ToUserName><FromUserName>sys</FromUserName>
<CreateTime>1403610513</CreateTime><MsgType>event</MsgType><Event>x</Event></xml>"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><ToUserName>&xxe;</ToUserName><FromUserName>sys</FromUserName>
<CreateTime>1403610513</CreateTime><MsgType>event</MsgType><Event>x</Event></xml>"""

# Well-formed and harmless for a plain parser: only the refusal of DTDs rejects it.
INTERNAL_ENTITY = (
    load("del_follow_user.xml")
    .replace("<xml>", '<!DOCTYPE xml [<!ENTITY who "zhangsan">]>\n<xml>')
    .replace("<UserID><![CDATA[zhangsan]]></UserID>", "<UserID>&who;</UserID>")
)

PLAIN_DOCTYPE = "<!DOCTYPE xml>\n" + load("del_follow_user.xml")

EXTERNAL_DTD = '<!DOCTYPE xml SYSTEM "http://example.com/evil.dtd">\n' + load("del_follow_user.xml")


@pytest.mark.parametrize(
    "xml",
    [BILLION_LAUGHS, EXTERNAL_ENTITY, INTERNAL_ENTITY, PLAIN_DOCTYPE, EXTERNAL_DTD],
    ids=["billion-laughs", "external-entity", "internal-entity", "doctype", "external-dtd"],
)
def test_dtds_and_entities_are_refused(xml: str) -> None:
    for body in (xml, xml.encode("utf-8")):
        with pytest.raises(EventParseError, match="not allowed") as caught:
            parse_event(body)
        assert caught.value.reason == str(caught.value)


def test_body_over_the_size_limit_is_refused_before_parsing() -> None:
    header = load("del_follow_user.xml")
    at_limit = header + " " * (MAX_EVENT_BYTES - len(header.encode("utf-8")))
    assert len(at_limit.encode("utf-8")) == MAX_EVENT_BYTES
    assert isinstance(parse_event(at_limit), DelFollowUser)
    assert isinstance(parse_event(at_limit.encode("utf-8")), DelFollowUser)

    over = at_limit + " "
    for body in (over, over.encode("utf-8")):
        with pytest.raises(EventParseError, match="limit"):
            parse_event(body)
    # Malformed too, yet the size is what is reported: nothing was parsed.
    with pytest.raises(EventParseError, match="limit"):
        parse_event(b"<" * (MAX_EVENT_BYTES + 1))


def test_size_limit_counts_utf8_bytes_of_a_str() -> None:
    header = load("del_follow_user.xml")
    # Under the limit in characters, over it in bytes (each 张 is three bytes).
    padding = "<!--" + "张" * (MAX_EVENT_BYTES // 3) + "-->"
    xml = header + padding
    assert len(xml) < MAX_EVENT_BYTES < len(xml.encode("utf-8"))
    with pytest.raises(EventParseError, match="limit"):
        parse_event(xml)


@pytest.mark.parametrize(
    "xml",
    ["", "<xml>", "<xml><MsgType>event</xml>", "not xml at all", "<xml>&undefined;</xml>"],
)
def test_malformed_xml(xml: str) -> None:
    with pytest.raises(EventParseError, match=r"^malformed XML: "):
        parse_event(xml)


def test_root_must_be_xml() -> None:
    xml = load("del_follow_user.xml").replace("<xml>", "<root>").replace("</xml>", "</root>")
    with pytest.raises(EventParseError, match="expected <xml>"):
        parse_event(xml)


@pytest.mark.parametrize("value", ["abc", "", "14036105.13", "1_403_610_513", "１４０３", "0x10"])
def test_non_integer_create_time(value: str) -> None:
    xml = load("del_follow_user.xml").replace("1403610513", value)
    with pytest.raises(EventParseError, match="CreateTime"):
        parse_event(xml)


@pytest.mark.parametrize("value", ["-1", "253402300800", "99999999999999999999"])
def test_create_time_out_of_range(value: str) -> None:
    xml = load("del_follow_user.xml").replace("1403610513", value)
    with pytest.raises(EventParseError, match="CreateTime out of range"):
        parse_event(xml)


@pytest.mark.parametrize(
    "value",
    [
        "253402300799",  # 9999-12-31T23:59:59Z: a datetime, but a store's offset overflows it
        "253370764800",  # 9999-01-01T00:00:00Z, the first second past the window
        "-86400",  # 1969-12-31
    ],
)
def test_create_time_outside_the_years_the_api_accepts_is_refused(value: str) -> None:
    xml = load("del_follow_user.xml").replace("1403610513", value)
    with pytest.raises(EventParseError, match=r"CreateTime out of range: .* \(years 1970 to 9998"):
        parse_event(xml)


@pytest.mark.parametrize(
    ("value", "instant"),
    [
        ("0", datetime(1970, 1, 1, tzinfo=UTC)),
        ("253370764799", datetime(9998, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_create_time_at_the_ends_of_the_window_is_accepted(value: str, instant: datetime) -> None:
    event = parse_event(load("del_follow_user.xml").replace("1403610513", value))
    assert event.create_time == instant


# WeCom's documented id shapes. userid: doc 90195 创建成员, "长度为1~64个字节。只能由数字、字母和
# “_-@.”四种字符组成，且第一个字符必须是数字或字母". external_userid: "wm…" or "wo…"
# (the add_external_contact sample of doc 92130), within our 64-character columns. Department
# id: doc 90205 创建部门, "部门id，32位整型" (positive). A signed callback with anything else is
# junk: refused at parse time, so the callback is a 400 and nothing is stored.
USER = "<UserID><![CDATA[zhangsan]]></UserID>"
EXT = "<ExternalUserID><![CDATA[woAJ2GCAAAXtWyujaWJHDDGi0mACHAAA]]></ExternalUserID>"


@pytest.mark.parametrize(
    ("fixture", "old", "new", "reason"),
    [
        # The UserID: a CDATA section inside a CDATA section.
        ("del_follow_user.xml", USER, "<UserID><![CDATA[<![CDATA[g01]]></UserID>", "userid"),
        ("del_follow_user.xml", USER, f"<UserID>{'g' * 65}</UserID>", "userid"),
        ("del_follow_user.xml", USER, "<UserID>_g01</UserID>", "userid"),  # first: letter/digit
        ("del_follow_user.xml", USER, "<UserID>g 01</UserID>", "userid"),
        ("del_follow_user.xml", USER, "<UserID>王芳</UserID>", "userid"),
        ("change_contact_create_user.xml", USER, "<UserID>g01/..</UserID>", "userid"),
        ("change_contact_update_user.xml", "zhangsan2", "zhang san", "userid"),  # NewUserID
        ("text_msg.xml", "fromUser", "from&lt;User&gt;", "userid"),
        ("del_follow_user.xml", EXT, "<ExternalUserID>c01</ExternalUserID>", "external_userid"),
        (
            "del_follow_user.xml",
            EXT,
            f"<ExternalUserID>wm{'A' * 63}</ExternalUserID>",  # 65 characters
            "external_userid",
        ),
        ("del_follow_user.xml", EXT, "<ExternalUserID>wm<![CDATA[x]]></ExternalUserID>", None),
        ("change_external_chat_update.xml", "CHAT_ID", "CHAT ID", "id"),
        ("change_external_chat_update.xml", "<Item>Jack</Item>", "<Item>J ack</Item>", "userid"),
        ("change_external_tag_create.xml", "TAG_ID", "TAG/ID", "id"),
    ],
)
def test_ids_outside_wecoms_documented_shapes_are_refused(
    fixture: str, old: str, new: str, reason: str | None
) -> None:
    xml = load(fixture)
    assert old in xml
    if reason is None:  # "wm" then a CDATA section: the text is "wmx", a fine id
        assert parse_event(xml.replace(old, new)).external_userid == "wmx"
        return
    with pytest.raises(EventParseError, match=f"is not a WeCom {reason}: "):
        parse_event(xml.replace(old, new))


@pytest.mark.parametrize(
    ("fixture", "old", "new", "field"),
    [
        # The 19-digit department id: it fitted no column and failed until parked.
        ("change_contact_create_user.xml", "1,2", "1,1234567890123456789", "Department"),
        ("change_contact_create_user.xml", "1,2", "0,2", "Department"),
        ("change_contact_update_user.xml", "<MainDepartment>2", "<MainDepartment>-2", "Main"),
        ("change_contact_create_party.xml", "<Id>2</Id>", "<Id>2147483648</Id>", "Id"),
        ("change_contact_create_party.xml", "<Id>2</Id>", "<Id>0</Id>", "Id"),
        ("change_contact_create_party.xml", "[1]]></ParentId>", "[-1]]></ParentId>", "ParentId"),
        ("text_msg.xml", "1234567890123456", "-1", "MsgId"),
        ("text_msg.xml", "1234567890123456", str(2**64), "MsgId"),
    ],
)
def test_ids_out_of_their_integer_range_are_refused(
    fixture: str, old: str, new: str, field: str
) -> None:
    xml = load(fixture)
    assert old in xml
    with pytest.raises(EventParseError, match=f"{field}[A-Za-z]* out of range"):
        parse_event(xml.replace(old, new))


def test_ids_at_the_ends_of_wecoms_shapes_are_accepted() -> None:
    longest = "g" + "_-@.9" * 12 + "Z" * 3  # 64 bytes
    event = parse_event(
        load("del_follow_user.xml")
        .replace(USER, f"<UserID>{longest}</UserID>")
        .replace(EXT, f"<ExternalUserID>wo{'A' * 62}</ExternalUserID>")
    )
    assert (len(event.userid), len(event.external_userid)) == (64, 64)
    party = parse_event(
        load("change_contact_create_party.xml")
        .replace("<Id>2</Id>", "<Id>2147483647</Id>")
        .replace("[1]]></ParentId>", "[0]]></ParentId>")  # a department under no parent
    )
    assert isinstance(party, CreateParty)
    assert (party.id, party.parent_id) == (2**31 - 1, 0)
    assert parse_event(load("text_msg.xml").replace("1234567890123456", str(2**64 - 1)))


@pytest.mark.parametrize(
    ("elements", "reason"),
    [
        # An unknown kind is stored, under its kind and customer key: both must fit their
        # columns (80 characters) on PostgreSQL as on SQLite.
        (
            (
                "<Event>change_external_contact</Event><ChangeType>x</ChangeType>",
                f"<ExternalUserID>wm{'x' * 90}</ExternalUserID>",
            ),
            "ExternalUserID is not a WeCom",
        ),
        (
            (
                "<Event>change_external_contact</Event><ChangeType>x</ChangeType>",
                "<UserID><![CDATA[<![CDATA[g01]]></UserID>",
            ),
            "UserID is not a WeCom",
        ),
        ((f"<Event>{'e' * 33}</Event>",), "Event is not a WeCom name"),
        (("<Event>x</Event>", f"<ChangeType>{'c' * 33}</ChangeType>"), "ChangeType is not a"),
        (("<Event>click me</Event>",), "Event is not a WeCom name"),
    ],
)
def test_generic_events_keep_to_the_same_shapes(elements: tuple[str, ...], reason: str) -> None:
    with pytest.raises(EventParseError, match=reason):
        parse_event(event_xml(*elements))


def test_a_kind_built_from_the_longest_names_fits_the_inbox_column() -> None:
    event = parse_event(event_xml(f"<Event>{'e' * 32}</Event><ChangeType>{'c' * 32}</ChangeType>"))
    assert len(event.kind) <= 80
    with pytest.raises(EventParseError, match="MsgType is not a WeCom name"):
        parse_event(event_xml(msg_type="m" * 33))


@pytest.mark.parametrize("name", ["State", "WelcomeCode"])
def test_state_and_welcome_code_fit_where_they_are_kept(name: str) -> None:
    xml = load("add_external_contact.xml")
    value = {"State": "teststate", "WelcomeCode": "WELCOMECODE"}[name]
    assert parse_event(xml.replace(value, "s" * 255))
    with pytest.raises(EventParseError, match=f"{name} is over 255 characters"):
        parse_event(xml.replace(value, "s" * 256))


def test_missing_external_userid() -> None:
    xml = load("add_external_contact.xml").replace(
        "<ExternalUserID><![CDATA[woAJ2GCAAAXtWyujaWJHDDGi0mAAAA]]></ExternalUserID>", ""
    )
    with pytest.raises(EventParseError) as caught:
        parse_event(xml)
    assert caught.value.reason == (
        "change_external_contact add_external_contact: missing ExternalUserID"
    )
    assert isinstance(caught.value, ValueError)


def test_empty_external_userid_counts_as_missing() -> None:
    xml = load("del_follow_user.xml").replace("woAJ2GCAAAXtWyujaWJHDDGi0mACHAAA", "")
    with pytest.raises(EventParseError, match="del_follow_user: missing ExternalUserID"):
        parse_event(xml)


def test_empty_text_content_is_kept_and_an_empty_optional_field_is_none() -> None:
    text = parse_event(load("text_msg.xml").replace("this is a test", ""))
    assert isinstance(text, TextMessage)
    assert text.content == ""
    add = parse_event(load("add_external_contact.xml").replace("teststate", ""))
    assert isinstance(add, AddExternalContact)
    assert add.state is None


def test_repeated_optional_field_is_refused() -> None:
    xml = load("add_external_contact.xml")
    state = "<State><![CDATA[teststate]]></State>"
    with pytest.raises(EventParseError, match="State must be a single text value"):
        parse_event(xml.replace(state, state * 2))


@pytest.mark.parametrize(
    ("fixture", "element", "reason"),
    [
        ("add_external_contact.xml", "MsgType", "missing MsgType"),
        ("add_external_contact.xml", "CreateTime", "missing CreateTime"),
        ("add_external_contact.xml", "ToUserName", "missing ToUserName"),
        ("add_external_contact.xml", "Event", "missing Event"),
        ("add_external_contact.xml", "ChangeType", "change_external_contact: missing ChangeType"),
        (
            "del_follow_user.xml",
            "UserID",
            "change_external_contact del_follow_user: missing UserID",
        ),
        ("transfer_fail.xml", "FailReason", "transfer_fail: missing FailReason"),
        (
            "change_external_chat_update.xml",
            "ChatId",
            "change_external_chat update: missing ChatId",
        ),
        ("change_external_tag_create.xml", "Id", "change_external_tag create: missing Id"),
        ("change_contact_create_user.xml", "UserID", "change_contact create_user: missing UserID"),
        ("change_contact_delete_party.xml", "Id", "change_contact delete_party: missing Id"),
        ("text_msg.xml", "MsgId", "text message: missing MsgId"),
        ("text_msg.xml", "Content", "text message: missing Content"),
    ],
)
def test_missing_required_field(fixture: str, element: str, reason: str) -> None:
    xml = re.sub(rf"<{element}>.*?</{element}>", "", load(fixture))
    assert f"<{element}>" not in xml
    with pytest.raises(EventParseError, match=re.escape(reason)):
        parse_event(xml)


@pytest.mark.parametrize(
    ("fixture", "old", "new", "field"),
    [
        ("text_msg.xml", "1234567890123456", "12345x", "MsgId"),
        ("text_msg.xml", "<AgentID>1</AgentID>", "<AgentID>one</AgentID>", "AgentID"),
        ("change_external_chat_update.xml", "<JoinScene>1", "<JoinScene>1.5", "JoinScene"),
        ("change_contact_create_user.xml", "1,2", "1,a", "Department"),
        ("change_contact_create_party.xml", "<Id>2</Id>", "<Id>two</Id>", "Id"),
        ("change_contact_create_party.xml", "<Order>1", "<Order>first", "Order"),
    ],
)
def test_non_integer_fields(fixture: str, old: str, new: str, field: str) -> None:
    xml = load(fixture)
    assert old in xml
    with pytest.raises(EventParseError, match=f"{field} is not an integer"):
        parse_event(xml.replace(old, new, 1))


def test_repeated_or_nested_scalar_field_is_refused() -> None:
    doubled = load("del_follow_user.xml").replace(
        "<UserID><![CDATA[zhangsan]]></UserID>",
        "<UserID>zhangsan</UserID><UserID>lisi</UserID>",
    )
    with pytest.raises(EventParseError, match="UserID must be a single text value"):
        parse_event(doubled)
    nested = load("del_follow_user.xml").replace(
        "<UserID><![CDATA[zhangsan]]></UserID>", "<UserID><a>zhangsan</a></UserID>"
    )
    with pytest.raises(EventParseError, match="UserID must be a single text value"):
        parse_event(nested)


@pytest.mark.parametrize(
    "body",
    [
        "<xml>\ud800</xml>",  # lone surrogate
        b'<?xml version="1.0" encoding="no-such-codec"?><xml/>',
        b'<?xml version="1.0" encoding="gbk"?><xml/>',  # expat has no multi-byte codecs
        b"\x00\x01\x02",
        "<xml>" + "<a>" * 5000 + "</a>" * 5000 + "</xml>",  # depth the value walk refuses
    ],
    ids=["surrogate", "unknown-encoding", "multibyte-encoding", "binary", "deep-nesting"],
)
def test_odd_input_raises_event_parse_error(body: str | bytes) -> None:
    with pytest.raises(EventParseError):
        parse_event(body)


def test_non_text_argument_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        parse_event(12345)  # type: ignore[arg-type]


@settings(max_examples=examples(300), deadline=None)
@given(st.one_of(st.text(), st.binary()))
def test_arbitrary_input_parses_or_raises_event_parse_error(body: str | bytes) -> None:
    try:
        event = parse_event(body)
    except EventParseError as exc:
        assert exc.reason
    else:
        assert isinstance(event, Event)


FIXTURE_TEXTS = [path.read_text(encoding="utf-8") for path in sorted(FIXTURES.glob("*.xml"))]
XML_VALUES = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=30)


@settings(max_examples=examples(300), deadline=None)
@given(
    fixture=st.sampled_from(FIXTURE_TEXTS),
    data=st.data(),
)
def test_fixtures_with_arbitrary_field_values_parse_or_raise_event_parse_error(
    fixture: str, data: st.DataObject
) -> None:
    """Replace one field's value in a real sample; reaches the typed builders, not just expat."""
    names = re.findall(r"<([A-Za-z]+)>", fixture)
    name = data.draw(st.sampled_from([n for n in names if n not in ("xml", "Item")]))
    value = data.draw(st.one_of(XML_VALUES, st.from_regex(r"-?[0-9]{0,22}", fullmatch=True)))
    replacement = f"<{name}>{escape(value)}</{name}>"
    xml = re.sub(rf"<{name}>.*?</{name}>", lambda _: replacement, fixture, count=1)
    try:
        event = parse_event(xml)
    except EventParseError as exc:
        assert exc.reason
    else:
        assert isinstance(event, Event)
        assert event.create_time.tzinfo is not None
        assert 1970 <= event.create_time.year <= 9998
        # Whatever parses fits the inbox (80 characters) and the domain's columns (64).
        assert len(event.kind) <= 80
        assert event.userid is None or 1 <= len(event.userid.encode()) <= 64
        assert event.external_userid is None or len(event.external_userid) <= 64


# --------------------------------------------------------------------------------------------
# The module is WeCom's protocol only
# --------------------------------------------------------------------------------------------


def _imports(*modules) -> set[str]:
    source = "\n".join(Path(m.__file__).read_text(encoding="utf-8") for m in modules)
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            # A relative import may only reach siblings inside guidebot/wecom.
            assert node.level <= 1, ast.unparse(node)
            imported.add(f"guidebot.wecom.{node.module}" if node.level else str(node.module))
    assert imported  # the walk found the imports
    return imported


def test_module_imports_nothing_of_ours_or_of_the_web_and_db_stack() -> None:
    # guidebot.wecom.events is a package: every module of it keeps to the rule.
    parts = pkgutil.iter_modules(events_module.__path__, f"{events_module.__name__}.")
    for name in _imports(events_module, *(importlib.import_module(p.name) for p in parts)):
        top = name.split(".")[0]
        assert top not in {"aiohttp", "sqlalchemy"}, name
        if top == "guidebot":
            # The one exception: the instant window every date in guidebot keeps to.
            assert name.startswith("guidebot.wecom") or name == "guidebot.clock", name
    # ... and guidebot.clock is a leaf: the standard library only.
    assert {name.split(".")[0] for name in _imports(clock_module)} <= set(sys.stdlib_module_names)
