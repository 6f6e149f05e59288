"""The simulated corp's records (members, customers, relations, tags, tasks, ...) and WeCom's
limits and codes they follow; the keyset cursor WeCom's paged APIs answer with.

WeCom's calendar rules (days, months) run in China time, as WeCom's do.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from .errors import ApiError

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


class Relations(dict[tuple[str, str], Relation]):
    """Every pair, (userid, external_userid) -> Relation, also found from either side: a
    profile read names all of a customer's guides, and a scan of every pair per read cost the
    simulator about a millisecond once a benchmark had added ten thousand customers."""

    def __init__(self) -> None:
        super().__init__()
        self._by_customer: dict[str, dict[str, Relation]] = {}
        self._by_guide: dict[str, dict[str, Relation]] = {}

    def __setitem__(self, key: tuple[str, str], relation: Relation) -> None:
        super().__setitem__(key, relation)
        userid, external_userid = key
        self._by_customer.setdefault(external_userid, {})[userid] = relation
        self._by_guide.setdefault(userid, {})[external_userid] = relation

    def __delitem__(self, key: tuple[str, str]) -> None:
        super().__delitem__(key)
        userid, external_userid = key
        del self._by_customer[external_userid][userid]
        del self._by_guide[userid][external_userid]

    def _unsupported(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("Relations: set or delete one pair at a time")

    pop = popitem = clear = update = setdefault = _unsupported  # would bypass the indexes

    def of_customer(self, external_userid: str) -> list[Relation]:
        return list(self._by_customer.get(external_userid, {}).values())

    def of_guide(self, userid: str) -> list[Relation]:
        return list(self._by_guide.get(userid, {}).values())


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
    external_userid: str  # "" for a group send (chat_type group)
    userid: str
    status: int = SEND_PENDING
    send_time: int | None = None
    chat_id: str | None = None  # a group send's customer group


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
