"""The simulated corp: address book, customers, relations and every WeCom rule, in memory.

No aiohttp here. Everything that depends on time reads `self.now()`, the configured clock.
WeCom's calendar rules (days, months) run in China time, as WeCom's do.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import json
import math
import secrets
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from .config import SimulatorConfig

CN_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
DAY = 86_400
MEDIA_TTL = 3 * DAY
TICKET_TTL = 7200
MINUTE, HOUR = 60, 3600
# jsapi tickets (doc 96909 JS-SDK 签名算法, doc 90454 访问频率限制): the corp ticket at most 400
# an hour per corp and 100 per app, the app (agent_config) ticket 100 an hour per app. The
# simulated corp has one app, so its 100 binds before the corp's 400 can.
TICKET_LIMITS_PER_HOUR = {"jsapi": 100, "agent_config": 100}
TRANSFER_WINDOW = 90 * DAY
TRANSFERS_PER_WINDOW = 2
TRANSFER_DELAY = DAY  # WeCom completes an accepted transfer 24 h later
REMINDS_PER_DAY = 3
MAX_FOLLOW_USERS_PER_PAGE = 500
MAX_CORP_TAGS = 3000

ACTIVE = "active"  # both sides are friends
HALF = "half"  # add_half_external_contact: the guide has not confirmed yet
LOST = "lost"  # the customer deleted the guide; one-way, the guide's APIs still work
REMOVED = "removed"  # the guide deleted the customer
TRANSFERRED = "transferred"  # moved to another guide
FOLLOWING = frozenset({ACTIVE, LOST})  # the guide still has the customer in the list

TRANSFER_ACCEPTED, TRANSFER_PENDING, TRANSFER_REFUSED, TRANSFER_LIMIT = 1, 2, 3, 4
SEND_PENDING, SEND_OK, SEND_NOT_FRIEND, SEND_CAPPED = 0, 1, 2, 3

ERRMSG = {
    -1: "system is busy",
    0: "ok",
    40001: "invalid credential, access_token is invalid or not latest",
    40003: "invalid userid",
    40004: "invalid media type",
    40005: "invalid type",
    40006: "invalid file size",
    40007: "invalid media_id",
    40008: "invalid message type",
    40013: "invalid corpid",
    40014: "invalid access_token",
    40032: "invalid userid list size",
    40056: "invalid agentid",
    40058: "invalid Request Parameter",
    40068: "invalid tagid",
    40071: "UserTag Name Already Exist",
    40072: "invalid tag name",
    40096: "invalid external userid",
    40097: "user is not resigned",
    40126: "corp tag count reaches the limit of 3000",
    40128: "customer transfers too frequent",
    40129: "customer is being transferred",
    40130: "handover_userid equals takeover_userid",
    40131: "handover_userid is not the customer's follow user",
    41001: "access_token missing",
    41002: "corpid missing",
    41004: "corpsecret missing",
    41006: "media_id missing",
    41009: "missing userid",
    41010: "missing url",
    41011: "missing agentid",
    41016: "missing title",
    41033: "missing description",
    41035: "missing external userid",
    41037: "missing contact way type",
    41038: "missing contact way scene",
    41039: "invalid contact way type",
    41040: "invalid contact way scene",
    41041: "contact way user count exceeds the limit",
    41042: "invalid contact way style",
    41043: "missing config_id",
    41044: "invalid config_id",
    41046: "missing msgid",
    41047: "invalid msgid",
    41048: "no customer to send",
    41049: "missing welcome_code",
    41050: "invalid welcome_code",
    41051: "externaluser has started chatting",
    41064: "too many attachments",
    41065: "invalid attachment type",
    41093: "group msg task is canceled",
    41094: "remind group msg too frequently",
    42001: "access_token expired",
    42012: "jsapi_ticket not available",
    44001: "empty media data",
    44004: "empty content",
    45001: "media size out of limit",
    45002: "content size out of limit",
    45008: "too many articles",
    45009: "api freq out of limit",
    48001: "api forbidden",
    50100: "invalid cursor",
    60111: "userid not found",
    60123: "invalid party id",
    81013: "user & party & tag all invalid",
    84061: "not external contact",
}


def wecom_errmsg(errcode: int, detail: str | None = None) -> str:
    if errcode == 0:
        return "ok"
    text = detail or ERRMSG.get(errcode, "simulated error")
    return f"{text}, more info at https://open.work.weixin.qq.com/devtool/query?e={errcode}"


class ApiError(Exception):
    """A WeCom error answer: HTTP 200 with this errcode and errmsg."""

    def __init__(self, errcode: int, detail: str | None = None) -> None:
        self.errcode = errcode
        self.errmsg = wecom_errmsg(errcode, detail)
        super().__init__(self.errmsg)


class ControlError(Exception):
    """A refused control-API request (bad input, unknown entity, impossible transition)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


# A department's order: "有效的值范围是[0, 2^32)" (doc 90205 创建部门).
ORDER_LIMIT = 2**32


@dataclass(slots=True)
class Department:
    id: int
    name: str
    parentid: int
    order: int = 0


@dataclass(slots=True)
class Member:
    userid: str
    name: str
    department: list[int]
    position: str = ""
    # No mobile, gender, email or avatar: a self-built app created after 2022-06-20 is never
    # given them by user/get or user/list (doc 90196 读取成员), so the simulator keeps none.


@dataclass(slots=True)
class Customer:
    external_userid: str
    name: str
    type: int = 1  # 1 WeChat user, 2 WeCom user
    gender: int = 0
    unionid: str | None = None
    avatar: str = ""
    corp_name: str = ""
    corp_full_name: str = ""
    position: str = ""


@dataclass(slots=True)
class Relation:
    userid: str
    external_userid: str
    createtime: int
    status: str = ACTIVE
    remark: str = ""
    description: str = ""
    tag_ids: list[str] = field(default_factory=list)
    remark_mobiles: list[str] = field(default_factory=list)
    remark_corp_name: str = ""
    add_way: int = 1
    state: str = ""
    oper_userid: str = ""


@dataclass(slots=True)
class WelcomeCode:
    code: str
    userid: str
    external_userid: str
    issued_at: float
    used_at: float | None = None


@dataclass(slots=True)
class Tag:
    id: str
    name: str
    create_time: int
    order: int = 0


@dataclass(slots=True)
class TagGroup:
    group_id: str
    group_name: str
    create_time: int
    order: int = 0
    tags: dict[str, Tag] = field(default_factory=dict)


@dataclass(slots=True)
class SenderTask:
    userid: str
    status: int = 0  # get_groupmsg_task: 0 unsent, 2 sent
    send_time: int | None = None


@dataclass(slots=True)
class SendResult:
    external_userid: str
    userid: str
    status: int = SEND_PENDING
    send_time: int | None = None


@dataclass(slots=True)
class MassTask:
    msgid: str
    create_time: int
    chat_type: str
    text: dict[str, Any] | None
    attachments: list[dict[str, Any]]
    allow_select: bool
    senders: dict[str, SenderTask]
    results: list[SendResult]
    canceled: bool = False
    reminders: list[float] = field(default_factory=list)


@dataclass(slots=True)
class Transfer:
    kind: str  # "in_service" or "resigned"
    handover_userid: str
    takeover_userid: str
    external_userid: str
    created_at: float
    status: int = TRANSFER_PENDING
    takeover_time: int | None = None


@dataclass(slots=True)
class Media:
    media_id: str
    type: str
    filename: str
    content_type: str
    data: bytes
    created_at: float


@dataclass(slots=True)
class Fault:
    api: str
    times: int
    errcode: int | None = None
    http_status: int | None = None
    latency: float = 0.0
    timeout: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "api": self.api,
            "times": self.times,
            "errcode": self.errcode,
            "http_status": self.http_status,
            "latency": self.latency,
            "timeout": self.timeout,
        }


class RateLimit:
    """WeCom's frequency limits for one subject (an API, a ticket kind, a member's inbox).

    Each window counts what it admitted in the last `span` seconds, sliding, not per clock
    minute or hour. With `ban`, the call over a limit is refused and so is every call for that
    window's length after it ("按分钟拦截则被屏蔽60秒，按小时拦截则被屏蔽60分钟", doc 90454);
    without it only the excess is refused (app messages: "超过部分会被丢弃不下发").
    """

    # Calls are counted in slots of span/3600 (1/60 s for a minute, 1 s for an hour), so a
    # window keeps at most 3600 entries however fast a benchmark calls.
    SLOTS = 3600

    __slots__ = ("_admitted", "_counts", "ban", "banned_until", "spans")

    def __init__(self, spans: Sequence[int], *, ban: bool) -> None:
        self.spans = tuple(spans)
        self.ban = ban
        # Per window: [slot, calls in it], oldest first.
        self._admitted: list[deque[list[int]]] = [deque() for _ in self.spans]
        self._counts = [0] * len(self.spans)
        self.banned_until = 0.0

    def admit(self, now: float, limits: Sequence[int]) -> bool:
        """Count one call if every window has room; limits pair with `spans`."""
        if now < self.banned_until:
            return False
        slots = [math.floor(now * self.SLOTS / span) for span in self.spans]
        for index, limit in enumerate(limits):
            admitted = self._admitted[index]
            # A slot leaves the window a whole span after it began.
            while admitted and admitted[0][0] <= slots[index] - self.SLOTS:
                self._counts[index] -= admitted.popleft()[1]
            if self._counts[index] >= limit:
                if self.ban:
                    self.banned_until = now + self.spans[index]
                return False
        for index, admitted in enumerate(self._admitted):
            if admitted and admitted[-1][0] == slots[index]:
                admitted[-1][1] += 1
            else:
                admitted.append([slots[index], 1])
            self._counts[index] += 1
        return True


def encode_cursor(key: Sequence[Any]) -> str:
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def keyset_page(
    items: Sequence[tuple[tuple[Any, ...], Any]], cursor: str, limit: int
) -> tuple[list[Any], str]:
    """One page of `(key, value)` pairs sorted by key, after the key the cursor names.

    Keyset, not offset, so rows added or removed between pages do not shift the others.
    """
    if cursor:
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            after = tuple(json.loads(base64.urlsafe_b64decode(padded)))
            remaining = [item for item in items if item[0] > after]
        except (binascii.Error, ValueError, TypeError) as exc:
            raise ApiError(50100) from exc
    else:
        remaining = list(items)
    page = remaining[:limit]
    next_cursor = encode_cursor(page[-1][0]) if len(remaining) > limit else ""
    return [value for _, value in page], next_cursor


def month_of(ts: float) -> tuple[int, int]:
    moment = datetime.fromtimestamp(ts, CN_TZ)
    return moment.year, moment.month


def day_start(ts: float) -> int:
    """00:00 China time of the day holding `ts`."""
    moment = datetime.fromtimestamp(ts, CN_TZ)
    return int(moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp())


class SimState:
    """One simulated corp. Several can live in one process; nothing is shared."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        # WeCom always has the root department 1.
        self.departments: dict[int, Department] = {1: Department(1, config.identity.corp_id, 0)}
        self.members: dict[str, Member] = {}
        self.resigned: dict[str, Member] = {}
        self.customers: dict[str, Customer] = {}
        self.relations: dict[tuple[str, str], Relation] = {}
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
            (
                r
                for (_, ext), r in self.relations.items()
                if ext == external_userid and r.status in FOLLOWING
            ),
            key=lambda r: (r.createtime, r.userid),
        )

    def customers_of(self, userid: str) -> list[Relation]:
        return sorted(
            (
                r
                for (uid, _), r in self.relations.items()
                if uid == userid and r.status in FOLLOWING
            ),
            key=lambda r: (r.createtime, r.external_userid),
        )

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

    # ---- corp tags -----------------------------------------------------------------------

    def add_tags(
        self,
        tags: list[tuple[str, int, str | None]],
        *,
        group_id: str | None = None,
        group_name: str | None = None,
        group_order: int = 0,
    ) -> tuple[TagGroup, list[Tag]]:
        """Add tags (name, order, wanted id) to a group named by id, or by name (created).

        Everything is checked before anything changes: a refused request leaves no group or
        tag behind.
        """
        now = int(self.now())
        group: TagGroup | None
        if group_id:
            group = self.tag_groups.get(group_id)
            if group is None:
                raise ApiError(40068, f"invalid group_id {group_id!r}")
        else:
            if not group_name:
                raise ApiError(40058, "group_id or group_name is required")
            if len(group_name) > 30:
                raise ApiError(40072, "group_name is longer than 30 characters")
            group = next((g for g in self.tag_groups.values() if g.group_name == group_name), None)
        label = group.group_name if group else group_name
        names = {t.name for t in group.tags.values()} if group else set()
        ids: set[str] = set()
        for name, _, wanted_id in tags:
            if not name or len(name) > 30:
                raise ApiError(40072, f"tag name {name!r} must be 1-30 characters")
            if name in names:
                raise ApiError(40071, f"tag {name!r} already exists in {label!r}")
            names.add(name)
            if wanted_id is not None:
                if wanted_id in self.tag_index or wanted_id in ids:
                    raise ApiError(40071, f"tag id {wanted_id!r} already exists")
                ids.add(wanted_id)
        # doc 92117 管理企业标签: a corp has at most 3000 tags; 40126 says it is full.
        if len(self.tag_index) + len(tags) > MAX_CORP_TAGS:
            raise ApiError(40126)
        if group is None:
            group = TagGroup("et" + secrets.token_urlsafe(18), str(group_name), now, group_order)
            self.tag_groups[group.group_id] = group
        added = []
        for name, order, wanted_id in tags:
            tag_id = wanted_id or "et" + secrets.token_urlsafe(18)
            tag = Tag(tag_id, name, now, order)
            group.tags[tag_id] = tag
            self.tag_index[tag_id] = group.group_id
            added.append(tag)
        return group, added

    def tag(self, tag_id: str) -> tuple[TagGroup, Tag]:
        group = self.tag_groups[self.tag_index[tag_id]]
        return group, group.tags[tag_id]

    def delete_tags(self, tag_ids: list[str], group_ids: list[str]) -> None:
        for tag_id in tag_ids:
            if tag_id not in self.tag_index:
                raise ApiError(40068, f"invalid tagid {tag_id!r}")
        for group_id in group_ids:
            if group_id not in self.tag_groups:
                raise ApiError(40068, f"invalid group_id {group_id!r}")
        doomed = set(tag_ids)
        for group_id in group_ids:
            doomed.update(self.tag_groups.pop(group_id).tags)
        for tag_id in doomed:
            group_id = self.tag_index.pop(tag_id)
            if group_id in self.tag_groups:
                self.tag_groups[group_id].tags.pop(tag_id, None)
        for group_id in [g for g, group in self.tag_groups.items() if not group.tags]:
            del self.tag_groups[group_id]  # WeCom drops a group with its last tag
        for relation in self.relations.values():
            relation.tag_ids = [t for t in relation.tag_ids if t not in doomed]

    # ---- media ---------------------------------------------------------------------------

    def add_media(self, kind: str, filename: str, content_type: str, data: bytes) -> Media:
        media = Media(
            "3" + secrets.token_urlsafe(40), kind, filename, content_type, data, self.now()
        )
        self.media[media.media_id] = media
        return media

    def live_media(self, media_id: str, kind: str | None = None) -> Media:
        """A temporary media id is valid for 3 days, and only for its own type."""
        if not media_id:
            raise ApiError(41006)
        media = self.media.get(media_id)
        if media is None or self.now() - media.created_at > MEDIA_TTL:
            raise ApiError(40007)
        if kind is not None and media.type != kind:
            raise ApiError(40007, f"media_id is a {media.type}, not a {kind}")
        return media

    # ---- mass messages (企业群发) -----------------------------------------------------------

    def create_task(
        self,
        *,
        sender: str | None,
        external_userids: list[str] | None,
        tag_groups: list[list[str]],
        text: dict[str, Any] | None,
        attachments: list[dict[str, Any]],
        allow_select: bool,
    ) -> tuple[MassTask, list[str]]:
        """A task only: nothing reaches a customer until the guide confirms it."""
        fail_list: list[str] = []
        targets: list[Relation] = []
        if external_userids is not None:
            for ext in dict.fromkeys(external_userids):
                relation = self._sender_for(ext, sender)
                if relation is None or not self._has_tags(relation, tag_groups):
                    fail_list.append(ext)
                else:
                    targets.append(relation)
        else:
            pool = (
                self.customers_of(sender)
                if sender
                else [r for r in self.relations.values() if r.status in FOLLOWING]
            )
            chosen: dict[str, Relation] = {}
            for relation in sorted(pool, key=lambda r: (r.createtime, r.userid)):
                if self._has_tags(relation, tag_groups):
                    chosen[relation.external_userid] = relation  # the latest guide wins
            targets = list(chosen.values())
        if not targets:
            raise ApiError(41048)
        senders = {r.userid: SenderTask(r.userid) for r in targets}
        task = MassTask(
            msgid="msg" + secrets.token_urlsafe(21),
            create_time=int(self.now()),
            chat_type="single",
            text=text,
            attachments=attachments,
            allow_select=allow_select,
            senders=senders,
            results=[SendResult(r.external_userid, r.userid) for r in targets],
        )
        self.tasks[task.msgid] = task
        return task, fail_list

    def _sender_for(self, external_userid: str, sender: str | None) -> Relation | None:
        if sender:
            relation = self.relations.get((sender, external_userid))
            return relation if relation is not None and relation.status in FOLLOWING else None
        followers = self.followers(external_userid)
        # WeCom sends through the guide the customer talked to last; the newest stands in.
        return followers[-1] if followers else None

    def _has_tags(self, relation: Relation, tag_groups: list[list[str]]) -> bool:
        # Groups are ANDed, tags within a group ORed (WeCom's tag_filter).
        return all(set(group) & set(relation.tag_ids) for group in tag_groups)

    def task(self, msgid: str) -> MassTask:
        if not msgid:
            raise ApiError(41046)
        task = self.tasks.get(msgid)
        if task is None:
            raise ApiError(41047)
        return task

    def confirm_task(
        self, msgid: str, userid: str, only: list[str] | None = None
    ) -> list[SendResult]:
        """The guide taps send: each customer gets it, or fails as not-a-friend or capped."""
        task = self.tasks.get(msgid)
        if task is None:
            raise ControlError(f"unknown msgid {msgid!r}")
        sender = task.senders.get(userid)
        if sender is None:
            raise ControlError(f"{userid!r} is not a sender of {msgid!r}")
        if task.canceled:
            raise ControlError("the task was canceled", 409)
        if sender.status != 0:
            raise ControlError(f"{userid!r} already sent {msgid!r}", 409)
        now = self.now()
        month = month_of(now)
        cap = self.cap_for(now)
        mine = [r for r in task.results if r.userid == userid]
        for result in mine:
            if only is not None and result.external_userid not in only:
                continue
            relation = self.relations.get((userid, result.external_userid))
            receipts = self.mass_receipts.setdefault(result.external_userid, [])
            if relation is None or relation.status != ACTIVE:
                result.status = SEND_NOT_FRIEND
            elif sum(1 for t in receipts if month_of(t) == month) >= cap:
                result.status = SEND_CAPPED
            else:
                result.status = SEND_OK
                result.send_time = int(now)
                receipts.append(now)
        sender.status = 2
        sender.send_time = int(now)
        return mine

    def remind_task(self, msgid: str) -> None:
        task = self.task(msgid)
        if task.canceled:
            raise ApiError(41093)
        now = self.now()
        task.reminders = [t for t in task.reminders if t > now - DAY]
        if len(task.reminders) >= REMINDS_PER_DAY:
            raise ApiError(41094)
        task.reminders.append(now)

    def cancel_task(self, msgid: str) -> None:
        self.task(msgid).canceled = True

    # ---- transfers -----------------------------------------------------------------------

    def start_transfer(
        self, kind: str, handover: str, takeover: str, external_userids: list[str]
    ) -> list[dict[str, Any]]:
        if not handover or not takeover:
            raise ApiError(41009, "handover_userid and takeover_userid are required")
        if kind == "resigned":
            if handover in self.members:
                raise ApiError(40097)
            if handover not in self.resigned:
                raise ApiError(60111, f"invalid handover_userid {handover!r}")
        elif handover not in self.members:
            raise ApiError(60111, f"invalid handover_userid {handover!r}")
        if takeover not in self.members:
            raise ApiError(60111, f"invalid takeover_userid {takeover!r}")
        if handover == takeover:
            raise ApiError(40130)
        if not external_userids or len(external_userids) > 100:
            raise ApiError(40058, "external_userid must list 1-100 customers")
        now = self.now()
        answers = []
        for ext in external_userids:
            answers.append(
                {
                    "external_userid": ext,
                    "errcode": self._transfer_one(kind, handover, takeover, ext, now),
                }
            )
        return answers

    def _transfer_one(self, kind: str, handover: str, takeover: str, ext: str, now: float) -> int:
        if ext not in self.customers:
            return 40096
        relation = self.relations.get((handover, ext))
        if relation is None or relation.status not in FOLLOWING:
            return 40131
        if any(t.external_userid == ext and t.status == TRANSFER_PENDING for t in self.transfers):
            return 40129
        # 90 自然日内每位客户仅可被转接2次 applies to in-service transfers.
        recent = [
            t
            for t in self.transfers
            if t.external_userid == ext
            and t.kind == "in_service"
            and t.created_at > now - TRANSFER_WINDOW
        ]
        if kind == "in_service" and len(recent) >= TRANSFERS_PER_WINDOW:
            return 40128
        self.transfers.append(
            Transfer(kind, handover, takeover, ext, now, takeover_time=int(now) + TRANSFER_DELAY)
        )
        return 0

    def transfer_results(self, kind: str, handover: str, takeover: str) -> list[Transfer]:
        latest: dict[str, Transfer] = {}
        for transfer in self.transfers:
            if (transfer.kind, transfer.handover_userid, transfer.takeover_userid) == (
                kind,
                handover,
                takeover,
            ):
                latest[transfer.external_userid] = transfer
        return list(latest.values())

    def finish_transfer(
        self, handover: str, takeover: str, external_userid: str, outcome: str
    ) -> tuple[Transfer, Relation | None, bool]:
        """Complete a pending transfer. Returns (transfer, takeover relation, newly added)."""
        transfer = next(
            (
                t
                for t in self.transfers
                if (t.handover_userid, t.takeover_userid, t.external_userid)
                == (handover, takeover, external_userid)
                and t.status == TRANSFER_PENDING
            ),
            None,
        )
        if transfer is None:
            raise ControlError(
                f"no pending transfer of {external_userid!r} from {handover!r} to {takeover!r}"
            )
        if outcome == "refuse":
            transfer.status = TRANSFER_REFUSED
            transfer.takeover_time = None
            return transfer, None, False
        if outcome == "limit":
            transfer.status = TRANSFER_LIMIT
            transfer.takeover_time = None
            return transfer, None, False
        transfer.status = TRANSFER_ACCEPTED
        transfer.takeover_time = int(self.now())
        old = self.relations.get((handover, external_userid))
        if old is not None and old.status in FOLLOWING:
            old.status = TRANSFERRED
        existing = self.relations.get((takeover, external_userid))
        if existing is not None and existing.status in FOLLOWING:
            return transfer, existing, False  # already friends: WeCom sends no add event
        relation = Relation(
            userid=takeover,
            external_userid=external_userid,
            createtime=int(self.now()),
            add_way=202,  # 管理员/负责人分配
            oper_userid=handover,
        )
        self.relations[(takeover, external_userid)] = relation
        return transfer, relation, True

    # ---- app messages --------------------------------------------------------------------

    def deliver_app_message(
        self, userid: str, msgtype: str, content: dict[str, Any], duplicate_window: float | None
    ) -> str:
        """Hand one message to one member: "sent", "dropped" (rate) or "duplicate"."""
        now = self.now()
        if duplicate_window is not None:
            key = (userid, json.dumps([msgtype, content], sort_keys=True, ensure_ascii=False))
            last = self.duplicate_keys.get(key)
            if last is not None and now - last < duplicate_window:
                return "duplicate"
            self.duplicate_keys[key] = now
        # Per app and member: 30 a minute, 1000 an hour; WeCom drops the excess silently.
        inbox = self.member_sends.get(userid)
        if inbox is None:
            inbox = self.member_sends[userid] = RateLimit((MINUTE, HOUR), ban=False)
        config = self.config
        limits = (config.member_messages_per_minute, config.member_messages_per_hour)
        if not inbox.admit(now, limits):
            return "dropped"
        self.app_messages.append(
            {"userid": userid, "msgtype": msgtype, msgtype: content, "time": now}
        )
        return "sent"

    def new_msg_id(self) -> int:
        """A 64-bit MsgId, unique here and unlikely to repeat across simulator restarts."""
        while True:
            msg_id = secrets.randbits(62) | (1 << 62)
            if msg_id not in self._msg_ids:
                self._msg_ids.add(msg_id)
                return msg_id

    # ---- statistics ----------------------------------------------------------------------

    def behavior_data(self, userids: set[str], start: int, end: int) -> list[dict[str, Any]]:
        first, last = day_start(start), day_start(min(end, self.now()))
        days: dict[int, dict[str, Any]] = {}
        stat_time = first
        while stat_time <= last:
            days[stat_time] = {
                "stat_time": stat_time,
                "chat_cnt": 0,
                "message_cnt": 0,
                "negative_feedback_cnt": 0,
                "new_apply_cnt": 0,
                "new_contact_cnt": 0,
            }
            stat_time += DAY  # China time has no DST
        for when, kind, userid, _ in self.contact_log:
            day = days.get(day_start(when))
            if day is not None and userid in userids:
                field_name = "new_contact_cnt" if kind == "new_contact" else "negative_feedback_cnt"
                day[field_name] += 1
        return list(days.values())
