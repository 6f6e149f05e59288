"""The simulated corp's records and what every WeCom rule reads: time, the call log, faults and
rate limits, tokens and tickets, the address book and who follows whom.

No aiohttp here. Everything that depends on time reads `self.now()`, the configured clock.
"""

from __future__ import annotations

import calendar
import secrets
from collections import deque
from dataclasses import replace
from typing import Any

from ..config import SimulatorConfig
from ..errors import ApiError, ControlError
from ..records import (
    FOLLOWING,
    HOUR,
    MINUTE,
    ORDER_LIMIT,
    TICKET_LIMITS_PER_HOUR,
    TICKET_TTL,
    Customer,
    Department,
    Fault,
    MassTask,
    Media,
    Member,
    RateLimit,
    Relation,
    Relations,
    TagGroup,
    Transfer,
    WelcomeCode,
    month_of,
)

__all__ = ["StateCore"]


class StateCore:
    """The records of one simulated corp and the rules every WeCom area reads."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        # WeCom always has the root department 1.
        self.departments: dict[int, Department] = {1: Department(1, config.identity.corp_id, 0)}
        self.members: dict[str, Member] = {}
        self.resigned: dict[str, Member] = {}
        self.customers: dict[str, Customer] = {}
        self.relations = Relations()
        self.welcome_codes: dict[str, WelcomeCode] = {}
        self.welcomes: list[dict[str, Any]] = []
        self.tag_groups: dict[str, TagGroup] = {}
        self.tag_index: dict[str, str] = {}  # tag id -> group id
        self.contact_ways: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, MassTask] = {}
        self.mass_receipts: dict[str, list[float]] = {}  # customer -> times a mass message arrived
        self.monthly_cap: int | None = None  # None: as many as the month has days
        self.transfers: list[Transfer] = []
        self.tokens: dict[str, float] = {}  # token -> expiry
        self.tickets: dict[str, tuple[str, float]] = {}  # ticket -> (kind, expiry)
        self.ticket_fetches = {k: RateLimit((HOUR,), ban=True) for k in TICKET_LIMITS_PER_HOUR}
        self.media: dict[str, Media] = {}
        self.app_messages: list[dict[str, Any]] = []
        self.member_sends: dict[str, RateLimit] = {}
        self.duplicate_keys: dict[tuple[str, str], float] = {}
        self.contact_log: list[tuple[float, str, str, str]] = []  # (time, kind, userid, ext)
        # One-to-one chat messages: (time, userid, external_userid, "member" | "customer").
        self.chat_log: list[tuple[float, str, str, str]] = []
        self.faults: list[Fault] = []
        self.api_limits: dict[str, RateLimit] = {}
        self.calls: deque[dict[str, Any]] = deque(maxlen=config.call_log_limit)
        self.deliveries: deque[dict[str, Any]] = deque(maxlen=10_000)
        self._seq = 0
        self._msg_ids: set[int] = set()

    # ---- time and runtime settings -------------------------------------------------------

    def now(self) -> float:
        return self.config.clock()

    def update_config(self, **changes: Any) -> None:
        """Apply /_sim/config changes; SimulatorConfig validates them."""
        call_log_limit = changes.get("call_log_limit")
        try:
            self.config = replace(self.config, **changes)
        except (TypeError, ValueError) as exc:
            raise ControlError(str(exc)) from exc
        if call_log_limit is not None:
            self.calls = deque(self.calls, maxlen=self.config.call_log_limit)

    def cap_for(self, ts: float) -> int:
        if self.monthly_cap is not None:
            return self.monthly_cap
        year, month = month_of(ts)
        return calendar.monthrange(year, month)[1]

    # ---- call log, faults, rate limits ---------------------------------------------------

    def log_call(self, api: str, method: str, query: dict[str, str], body: Any) -> dict[str, Any]:
        self._seq += 1
        redacted = {
            k: ("***" if k in ("access_token", "corpsecret") else v) for k, v in query.items()
        }
        record = {
            "seq": self._seq,
            "api": api,
            "method": method,
            "query": redacted,
            "body": body,
            "answer": None,
            "http_status": None,
            "time": self.now(),
        }
        self.calls.append(record)
        return record

    def call_log(self, api: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["seq"] > since and (api is None or c["api"] == api)]

    def add_fault(self, fault: Fault) -> None:
        self.faults.append(fault)

    def take_fault(self, api: str) -> Fault | None:
        """The next fault for this API (an exact match before "*"), counting one use."""
        for wanted in (api, "*"):
            for fault in self.faults:
                if fault.api == wanted and fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def check_rate(self, api: str) -> None:
        """Each API per corp: 10 000 calls a minute and 150 000 an hour (doc 90454)."""
        limit = self.api_limits.get(api)
        if limit is None:
            limit = self.api_limits[api] = RateLimit((MINUTE, HOUR), ban=True)
        config = self.config
        if not limit.admit(self.now(), (config.api_limit_per_minute, config.api_limit_per_hour)):
            raise ApiError(45009)

    # ---- tokens and tickets --------------------------------------------------------------

    def issue_token(self, corpid: str, corpsecret: str) -> tuple[str, int]:
        identity = self.config.identity
        if not corpid:
            raise ApiError(41002)
        if not corpsecret:
            raise ApiError(41004)
        if corpid != identity.corp_id:
            raise ApiError(40013)
        if corpsecret != identity.secret:
            raise ApiError(40001)
        token = secrets.token_urlsafe(48)
        ttl = self.config.token_ttl
        self.tokens[token] = self.now() + ttl
        return token, ttl

    def check_token(self, token: str | None) -> None:
        if not token:
            raise ApiError(41001)
        expires = self.tokens.get(token)
        if expires is None:
            raise ApiError(40014)
        if self.now() >= expires:
            raise ApiError(42001)

    def check_caller(self, api: str, ip: str | None) -> None:
        """What the admin console set for the app: its 企业可信IP (from elsewhere, every API
        but gettoken answers 60020, naming the address) and whether it is among 客户联系's
        可调用接口的应用 (if not, externalcontact/* answer 48002)."""
        config = self.config
        if config.trusted_ips is not None and ip not in config.trusted_ips:
            hint = secrets.randbelow(10**25)  # WeCom's request id, as its answers carry one
            raise ApiError(
                60020, f"not allow to access from your ip, hint: [{hint}], from ip: {ip}"
            )
        if not config.customer_contact and api.startswith("externalcontact/"):
            raise ApiError(48002)

    def revoke_tokens(self) -> int:
        """WeCom may invalidate tokens early; afterwards they answer 40014."""
        count = len(self.tokens)
        self.tokens.clear()
        return count

    def issue_ticket(self, kind: str) -> str:
        now = self.now()
        if not self.ticket_fetches[kind].admit(now, (TICKET_LIMITS_PER_HOUR[kind],)):
            raise ApiError(45009, f"{kind} ticket fetched too often")
        ticket = secrets.token_urlsafe(64)
        self.tickets[ticket] = (kind, now + TICKET_TTL)
        return ticket

    def ticket_valid(self, kind: str, ticket: str) -> bool:
        entry = self.tickets.get(ticket)
        return entry is not None and entry[0] == kind and self.now() < entry[1]

    # ---- address book --------------------------------------------------------------------

    def upsert_department(self, dept_id: int, name: str, parentid: int, order: int = 0) -> bool:
        if dept_id < 1:
            raise ControlError("id must be a positive integer")
        if not 0 <= order < ORDER_LIMIT:
            raise ControlError(f"order must be in [0, {ORDER_LIMIT})")
        if dept_id == 1:
            parentid = 0
        elif parentid not in self.departments:
            raise ControlError(f"parentid {parentid} is not a known department")
        elif dept_id in self.departments and parentid in self.department_subtree(dept_id):
            raise ControlError("parentid would make a cycle")
        created = dept_id not in self.departments
        self.departments[dept_id] = Department(dept_id, name, parentid, order)
        return created

    def department_subtree(self, dept_id: int) -> list[int]:
        """The department and all below it, parents before children."""
        found = [dept_id]
        for current in found:
            found.extend(d.id for d in self.departments.values() if d.parentid == current)
        return found

    def upsert_member(self, member: Member) -> bool:
        unknown = [d for d in member.department if d not in self.departments]
        if unknown:
            raise ControlError(f"unknown department(s) {unknown}")
        if not member.department:
            raise ControlError("department must name at least one department")
        created = member.userid not in self.members
        self.members[member.userid] = member
        self.resigned.pop(member.userid, None)
        return created

    def resign_member(self, userid: str) -> Member:
        member = self.members.pop(userid, None)
        if member is None:
            raise ControlError(f"unknown userid {userid!r}")
        self.resigned[userid] = member
        return member

    def member(self, userid: str, errcode: int = 40003) -> Member:
        if not userid:
            raise ApiError(41009)
        member = self.members.get(userid)
        if member is None:
            raise ApiError(errcode, f"invalid userid {userid!r}")
        return member

    def members_in(self, dept_id: int, fetch_child: bool) -> list[Member]:
        if dept_id not in self.departments:
            raise ApiError(60123)
        depts = set(self.department_subtree(dept_id)) if fetch_child else {dept_id}
        return [m for m in self.members.values() if depts.intersection(m.department)]

    def upsert_customer(self, customer: Customer) -> bool:
        created = customer.external_userid not in self.customers
        self.customers[customer.external_userid] = customer
        return created

    def customer(self, external_userid: str) -> Customer:
        if not external_userid:
            raise ApiError(41035)
        customer = self.customers.get(external_userid)
        if customer is None:
            raise ApiError(40096)
        return customer

    # ---- relations -----------------------------------------------------------------------

    def pair(self, userid: str, external_userid: str) -> Relation:
        """The relation a pair API needs: 84061 unless the guide still has the customer."""
        self.member(userid)
        self.customer(external_userid)
        relation = self.relations.get((userid, external_userid))
        if relation is None or relation.status not in FOLLOWING:
            raise ApiError(84061)
        return relation

    def followers(self, external_userid: str) -> list[Relation]:
        return sorted(
            (r for r in self.relations.of_customer(external_userid) if r.status in FOLLOWING),
            key=lambda r: (r.createtime, r.userid),
        )

    def customers_of(self, userid: str) -> list[Relation]:
        return sorted(
            (r for r in self.relations.of_guide(userid) if r.status in FOLLOWING),
            key=lambda r: (r.createtime, r.external_userid),
        )

    def record_chat(self, userid: str, external_userid: str, sender: str) -> None:
        """A message in the one-to-one chat of a member and a customer, now ("member" or
        "customer" wrote it): what the contact statistics (.stats) count."""
        self.chat_log.append((self.now(), userid, external_userid, sender))

    def _control_member(self, userid: str) -> Member:
        member = self.members.get(userid)
        if member is None:
            raise ControlError(f"unknown userid {userid!r}")
        return member

    def _control_relation(self, userid: str, external_userid: str) -> Relation:
        relation = self.relations.get((userid, external_userid))
        if relation is None:
            raise ControlError(f"no relation between {userid!r} and {external_userid!r}")
        return relation
