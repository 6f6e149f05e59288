"""How customers and guides become (and stop being) contacts, what a guide notes on a
customer, and the welcome code an add hands out."""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from ..errors import ApiError, ControlError
from ..records import (
    ACTIVE,
    FOLLOWING,
    HALF,
    LOST,
    REMOVED,
    Customer,
    Relation,
    WelcomeCode,
)
from .core import StateCore

__all__ = ["ContactsState"]


class ContactsState(StateCore):
    """Adds, deletions and edits of contacts; welcome codes."""

    def add_contact(
        self,
        userid: str,
        external_userid: str,
        *,
        half: bool = False,
        state: str = "",
        name: str | None = None,
        add_way: int = 1,
        welcome_code: bool = False,
    ) -> tuple[Relation, WelcomeCode | None]:
        """The customer adds the guide (half: the guide has 免验证 and not yet confirmed)."""
        self._control_member(userid)
        if external_userid not in self.customers:
            self.customers[external_userid] = Customer(external_userid, name or external_userid)
        existing = self.relations.get((userid, external_userid))
        if existing is not None and existing.status == ACTIVE:
            raise ControlError(f"{external_userid!r} is already a customer of {userid!r}", 409)
        if existing is not None and existing.status == HALF and not half:
            existing.status = ACTIVE  # the guide confirmed a 免验证 add
            relation = existing
        else:
            relation = Relation(
                userid=userid,
                external_userid=external_userid,
                createtime=int(self.now()),
                status=HALF if half else ACTIVE,
                add_way=add_way,
                state=state,
                oper_userid=external_userid,  # the customer initiated the add
            )
            self.relations[(userid, external_userid)] = relation
        if relation.status == ACTIVE:
            self.contact_log.append((self.now(), "new_contact", userid, external_userid))
        code = self.mint_welcome_code(userid, external_userid) if welcome_code else None
        return relation, code

    def delete_by_customer(self, userid: str, external_userid: str) -> Relation:
        relation = self._control_relation(userid, external_userid)
        if relation.status != ACTIVE:
            raise ControlError(f"relation is {relation.status}, not active", 409)
        relation.status = LOST
        self.contact_log.append((self.now(), "negative_feedback", userid, external_userid))
        return relation

    def delete_by_guide(self, userid: str, external_userid: str) -> Relation:
        relation = self._control_relation(userid, external_userid)
        if relation.status not in FOLLOWING:
            raise ControlError(
                f"relation is {relation.status}; the guide has no such customer", 409
            )
        relation.status = REMOVED
        return relation

    def edit_contact(
        self,
        userid: str,
        external_userid: str,
        *,
        remark: str | None = None,
        description: str | None = None,
        remark_mobiles: list[str] | None = None,
        add_tag: Iterable[str] = (),
        remove_tag: Iterable[str] = (),
    ) -> Relation:
        relation = self._control_relation(userid, external_userid)
        if relation.status not in FOLLOWING:
            raise ControlError(
                f"relation is {relation.status}; the guide has no such customer", 409
            )
        unknown = [t for t in (*add_tag, *remove_tag) if t not in self.tag_index]
        if unknown:
            raise ControlError(f"unknown tag id(s) {unknown}")
        if remark is not None:
            relation.remark = remark
        if description is not None:
            relation.description = description
        if remark_mobiles is not None:
            relation.remark_mobiles = remark_mobiles
        self._apply_tags(relation, add_tag, remove_tag)
        return relation

    def _apply_tags(self, relation: Relation, add: Iterable[str], remove: Iterable[str]) -> None:
        removing = set(remove)
        relation.tag_ids = [t for t in relation.tag_ids if t not in removing]
        for tag_id in add:
            if tag_id not in relation.tag_ids and tag_id not in removing:
                relation.tag_ids.append(tag_id)

    def mark_tag(
        self, userid: str, external_userid: str, add: list[str], remove: list[str]
    ) -> None:
        relation = self.pair(userid, external_userid)
        if not add and not remove:
            raise ApiError(40058, "add_tag and remove_tag are both empty")
        for tag_id in (*add, *remove):
            if tag_id not in self.tag_index:
                raise ApiError(40068, f"invalid tagid {tag_id!r}")
        self._apply_tags(relation, add, remove)

    # ---- welcome codes -------------------------------------------------------------------

    def mint_welcome_code(self, userid: str, external_userid: str) -> WelcomeCode:
        code = WelcomeCode(secrets.token_urlsafe(24), userid, external_userid, self.now())
        self.welcome_codes[code.code] = code
        return code

    def use_welcome_code(self, code: str) -> WelcomeCode:
        """Check and spend a welcome code: once, within welcome_code_ttl of the event."""
        if not code:
            raise ApiError(41049)
        welcome = self.welcome_codes.get(code)
        if welcome is None:
            raise ApiError(41050)
        if welcome.used_at is not None:
            raise ApiError(41051)
        if self.now() - welcome.issued_at > self.config.welcome_code_ttl:
            raise ApiError(
                41050,
                f"invalid welcome_code: expired {self.config.welcome_code_ttl:g}s after"
                " the add event",
            )
        welcome.used_at = self.now()
        return welcome
