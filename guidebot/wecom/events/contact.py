"""Customer contact events: change_external_contact (one member, one customer), and
change_external_chat / change_external_tag (customer groups, corp tags)."""

from dataclasses import dataclass
from typing import ClassVar

from guidebot.wecom.events.base import Event


@dataclass(frozen=True, slots=True, kw_only=True)
class ExternalContactEvent(Event):
    """Base of the change_external_contact events: one member, one customer."""

    userid: str  # UserID
    external_userid: str  # ExternalUserID


@dataclass(frozen=True, slots=True, kw_only=True)
class AddExternalContact(ExternalContactEvent):
    """The member added the customer, or the customer added the member."""

    KIND: ClassVar[str] = "add_external_contact"

    state: str | None = None  # State: the 「联系我」 state or a 获客链接 customer_channel
    welcome_code: str | None = None  # WelcomeCode: lives 20 s, works once


@dataclass(frozen=True, slots=True, kw_only=True)
class AddHalfExternalContact(ExternalContactEvent):
    """The customer added a member with 免验证 on; the member has not confirmed yet."""

    KIND: ClassVar[str] = "add_half_external_contact"

    state: str | None = None
    welcome_code: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EditExternalContact(ExternalContactEvent):
    """The member edited the customer's remark, description or corp tags in the client."""

    KIND: ClassVar[str] = "edit_external_contact"

    state: str | None = None  # only in older doc copies


@dataclass(frozen=True, slots=True, kw_only=True)
class DelExternalContact(ExternalContactEvent):
    """The member deleted the customer."""

    KIND: ClassVar[str] = "del_external_contact"

    source: str | None = None  # Source: "DELETE_BY_TRANSFER" after an in-service transfer

    @property
    def by_transfer(self) -> bool:
        return self.source == "DELETE_BY_TRANSFER"


@dataclass(frozen=True, slots=True, kw_only=True)
class DelFollowUser(ExternalContactEvent):
    """The customer deleted the member."""

    KIND: ClassVar[str] = "del_follow_user"


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferFail(ExternalContactEvent):
    """An in-service transfer failed. ``userid`` is the TAKEOVER member, not the original."""

    KIND: ClassVar[str] = "transfer_fail"

    fail_reason: str  # FailReason: "customer_refused" | "customer_limit_exceed"

    @property
    def takeover_userid(self) -> str:
        return self.userid


# change_external_chat / change_external_tag --------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ExternalChatEvent(Event):
    """A customer group was created, updated or dismissed; fetch groupchat/get for the truth."""

    KIND: ClassVar[str] = "change_external_chat"

    chat_id: str  # ChatId
    change_type: str  # "create" | "update" | "dismiss"
    update_detail: str | None = None  # add_member, del_member, change_owner, change_name, ...
    join_scene: int | None = None
    quit_scene: int | None = None
    mem_change_cnt: int | None = None
    mem_change_list: tuple[str, ...] = ()  # always a tuple, whether one <Item> or many
    last_mem_ver: str | None = None
    cur_mem_ver: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExternalTagEvent(Event):
    """A corp tag or tag group changed; re-read get_corp_tag_list."""

    KIND: ClassVar[str] = "change_external_tag"

    id: str  # Id: the tag or tag-group id
    change_type: str  # "create" | "update" | "delete" | "shuffle"
    tag_type: str | None = None  # "tag" | "tag_group"; absent on shuffle
    strategy_id: str | None = None  # only for 规则组 tags
