"""Address book events (change_contact): members and departments."""

from dataclasses import dataclass
from typing import ClassVar

from guidebot.wecom.events.base import Event


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactUserEvent(Event):
    """Base of the member events. Since 2022 WeCom sends ids only: fetch user/get for details."""

    userid: str  # UserID
    departments: tuple[int, ...] = ()  # Department "1,2" -> (1, 2)
    main_department: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateUser(ContactUserEvent):
    KIND: ClassVar[str] = "create_user"


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateUser(ContactUserEvent):
    KIND: ClassVar[str] = "update_user"

    new_userid: str | None = None  # NewUserID: set only when the userid itself changed


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteUser(ContactUserEvent):
    KIND: ClassVar[str] = "delete_user"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactPartyEvent(Event):
    """Base of the department events; departments are guidebot's regions and stores."""

    id: int  # Id
    name: str | None = None
    parent_id: int | None = None
    order: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateParty(ContactPartyEvent):
    KIND: ClassVar[str] = "create_party"


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateParty(ContactPartyEvent):
    KIND: ClassVar[str] = "update_party"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteParty(ContactPartyEvent):
    KIND: ClassVar[str] = "delete_party"
