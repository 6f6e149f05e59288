"""The rows of bench.scale: a brand's logs over DAYS days, generated inside the database.

Every big table is filled by `INSERT ... SELECT` over a numbers source (PostgreSQL's
generate_series, a recursive CTE on SQLite), one statement and one transaction per chunk: no
row crosses from Python, which is what makes tens of millions of rows a matter of minutes
(building them as Python tuples for COPY or executemany costs more than the database's own
insert here). Values are spread with a multiplicative hash of the row number, so a run is
repeatable and both engines hold the same rows.

Per guide and day (`RATES`): 5 customers added (the issue's 50,000 a day over 10,000 guides),
each with its customer row, relation, `added` event (a tenth later `lost`, a third `edited`),
callback in the inbox (the edits' too), enrollment and two SOP tasks (welcome, then a reminder
the next day); 2 forwards, 3 link opens (a third first visits), 0.3 orders, 2 bot replies; and
20 audit entries a day for the whole brand.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

RATES = {"adds": 5, "forwards": 2, "opens": 3, "orders": 0.3, "bot_replies": 2}
AUDIT_PER_DAY = 20
ITEMS = 50
CHUNK = 250_000
PLAYBOOK = "bench_welcome"


@dataclass(frozen=True)
class Dialect:
    """The few expressions the two engines spell differently."""

    postgres: bool
    now: datetime

    def numbers(self, lo: int, hi: int) -> tuple[str, str]:
        """(prefix, from): `n` runs over lo..hi-1."""
        if self.postgres:
            return "", f"generate_series({lo}::bigint, {hi - 1}::bigint) AS s(n)"
        return (
            f"WITH RECURSIVE s(n) AS (SELECT {lo} UNION ALL "
            f"SELECT n + 1 FROM s WHERE n < {hi - 1})",
            "s",
        )

    def ago(self, seconds: str) -> str:
        """The instant `seconds` before NOW, as the column stores it."""
        stamp = self.now.strftime("%Y-%m-%d %H:%M:%S")
        if self.postgres:
            return f"(TIMESTAMPTZ '{stamp}+00' - ({seconds}) * INTERVAL '1 second')"
        # SQLAlchemy's SQLite format for DateTime: microseconds always written.
        moved = f"strftime('%Y-%m-%d %H:%M:%S', '{stamp}', '-' || ({seconds}) || ' seconds')"
        return f"({moved} || '.000000')"

    def guide(self, number: str) -> str:
        if self.postgres:
            return f"('g' || lpad(({number})::text, 4, '0'))"
        return f"printf('g%04d', {number})"

    def json(self, value: str) -> str:
        return f"({value})::json" if self.postgres else value


def spread(n: str, salt: int = 0) -> str:
    """A repeatable pseudo-random 0..2^32-1 from the row number."""
    return f"((({n}) * 2654435761 + {salt * 97_531}) % 4294967296)"


def _ago(n: str, total: int, span: int, floor: int = 0) -> str:
    """Seconds before NOW of row n of `total`: later rows are newer, as in an append-only log
    (ids follow time), within an hour's jitter."""
    step = f"({total} - ({n})) * {max(1, span - 3600)} / {max(1, total)}"
    return f"({floor} + {step} + {spread(n, 9)} % 3600)"


@dataclass(frozen=True)
class Plan:
    guides: int
    days: int

    @property
    def stores(self) -> int:
        return max(1, self.guides // 10)

    @property
    def seconds(self) -> int:
        return self.days * 86_400

    def count(self, kind: str) -> int:
        return int(self.guides * self.days * RATES[kind])

    @property
    def per_guide(self) -> int:
        """Customers each guide added (adds are dealt round-robin: n % guides is the guide)."""
        return max(1, self.count("adds") // self.guides)


Statement = Callable[[Dialect, Plan, str], tuple[str, str]]  # (table, columns + SELECT)


def _add_columns(d: Dialect, p: Plan, n: str) -> dict[str, str]:
    """Shared expressions of an add's rows: the guide, the store, the customer, when."""
    ago = _ago(n, p.count("adds"), p.seconds - 172_800, 172_800)  # at least two days old
    return {
        "guide": d.guide(f"{n} % {p.guides}"),
        "store": f"(100 + ({n} % {p.guides}) % {p.stores})",
        "customer": f"('wm' || {n})",
        "ago": ago,
        "at": d.ago(ago),
        "lost": f"({spread(n, 1)} % 10 = 0)",
    }


# A surname on some names, for searches of one or two characters: 陈 on a tenth of the
# customers (a common one), 张伟 on one in a thousand (a rare one).
SURNAME = "CASE WHEN {n} % 1000 = 7 THEN '张伟' WHEN {n} % 10 = 3 THEN '陈' ELSE '' END"


def customers(d: Dialect, p: Plan, n: str) -> tuple[str, str]:
    a = _add_columns(d, p, n)
    return "customers", (
        "(external_userid, name, type, gender, created_at, updated_at) SELECT "
        f"{a['customer']}, {SURNAME.format(n=n)} || '客户' || {n}, 1, {n} % 3, {a['at']}, "
        f"{a['at']}"
    )


def relations(d: Dialect, p: Plan, n: str) -> tuple[str, str]:
    a = _add_columns(d, p, n)
    mobiles = d.json(
        f"CASE WHEN {n} % 3 = 0 THEN '[\"1380000' || ({n} % 10000) || '\"]' ELSE '[]' END"
    )
    return "relations", (
        "(id, guide_userid, external_userid, status, created_at, confirmed, store_id, channel, "
        "remark, description, tags, remark_mobiles, ended_at, last_event_at, updated_at) SELECT "
        f"{n} + 1, {a['guide']}, {a['customer']}, "
        f"CASE WHEN {a['lost']} THEN 'lost' ELSE 'active' END, {a['at']}, "
        f"{'true' if d.postgres else 1}, {a['store']}, 'store', '客户' || {n} || ' 备注', "
        f"'生日 03-14，喜欢 ' || {n} % 97 || ' 号色', {d.json(repr('[]'))}, {mobiles}, "
        f"CASE WHEN {a['lost']} THEN {d.ago(a['ago'] + ' - 60')} END, {a['at']}, {a['at']}"
    )


def relation_events(kind: str) -> Statement:
    """One event per add of `kind`: added (every add), lost (a tenth), edited (a third)."""
    offset = {"added": 0, "lost": 60, "edited": 120}[kind]

    def statement(d: Dialect, p: Plan, n: str) -> tuple[str, str]:
        a = _add_columns(d, p, n)
        at = d.ago(f"{a['ago']} - {offset}")
        where = {"added": "", "lost": f" WHERE {a['lost']}", "edited": f" WHERE {n} % 3 = 0"}
        return "relation_events", (
            "(occurred_at, recorded_at, kind, guide_userid, store_id, external_userid, channel, "
            f"source, inbox_id) SELECT {at}, {at}, '{kind}', {a['guide']}, {a['store']}, "
            f"{a['customer']}, 'store', 'callback', {n} + 1"
        ) + "{from}" + where[kind]

    return statement


def inbox_events(d: Dialect, p: Plan, n: str) -> tuple[str, str]:
    """The add's callback (its plaintext as stored, about 600 bytes)."""
    a = _add_columns(d, p, n)
    payload = (
        "'<xml><ToUserName><![CDATA[wwbenchcorp0001]]></ToUserName><FromUserName><![CDATA[sys]]>"
        "</FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_contact]]></Event><ChangeType><![CDATA["
        "add_external_contact]]></ChangeType><UserID><![CDATA[' || "
        f"{a['guide']} || ']]></UserID><ExternalUserID><![CDATA[' || {a['customer']} || "
        "']]></ExternalUserID><State><![CDATA[S001]]></State><WelcomeCode><![CDATA[' || "
        f"{spread(n, 2)} || 'bench-welcome-code-0123456789abcdef]]></WelcomeCode></xml>'"
    )
    return "inbox_events", (
        "(id, dedupe_key, kind, customer_key, payload, received_at, status, attempts, "
        f"next_attempt_at, processed_at) SELECT {n} + 1, 'bench:' || {n}, "
        f"'change_external_contact:add_external_contact', {a['customer']}, {payload}, {a['at']}, "
        f"'done', 1, {a['at']}, {a['at']}"
    )


def enrollments(d: Dialect, p: Plan, n: str) -> tuple[str, str]:
    a = _add_columns(d, p, n)
    return "sop_enrollments", (
        "(id, playbook_id, playbook_version, scope, guide_userid, external_userid, store_id, "
        'timezone, "trigger", cycle, status, enrolled_at, ended_at, settings, created_at, '
        f"updated_at) SELECT {n} + 1, '{PLAYBOOK}', 1, {a['guide']}, {a['guide']}, "
        f"{a['customer']}, {a['store']}, 'Asia/Shanghai', 'customer.added', '0', 'completed', "
        f"{a['at']}, {d.ago(a['ago'] + ' - 86400')}, {d.json(repr('{}'))}, {a['at']}, "
        f"{d.ago(a['ago'] + ' - 86400')}"
    )


def tasks(step: str) -> Statement:
    """The welcome (sent at the add; one in ten expired) or the next day's reminder."""

    def statement(d: Dialect, p: Plan, n: str) -> tuple[str, str]:
        a = _add_columns(d, p, n)
        if step == "welcome":
            due, action = a["at"], "welcome"
            status = f"CASE WHEN {spread(n, 3)} % 10 = 0 THEN 'expired' ELSE 'sent' END"
            message = "'您好，我是您的专属导购，欢迎来到品牌会员之家！有任何问题随时找我。'"
        else:
            due, action = d.ago(f"{a['ago']} - 86400"), "remind"
            status = f"CASE WHEN {spread(n, 4)} % 4 = 0 THEN 'skipped' ELSE 'done' END"
            message = "NULL"
        return "sop_tasks", (
            "(id, enrollment_id, step_id, playbook_id, playbook_version, guide_userid, "
            "external_userid, action, due_at, status, attempts, message, sent_at, completed_at, "
            f"completed_by, created_at, updated_at) SELECT "
            f"2 * {n} + {1 if step == 'welcome' else 2}, {n} + 1, '{step}', '{PLAYBOOK}', 1, "
            f"{a['guide']}, {a['customer']}, '{action}', {due}, "
            f"{status}, 1, {message}, {due}, {due}, 'guide', {a['at']}, {due}"
        )

    return statement


def _logged(d: Dialect, p: Plan, n: str, salt: int, narrow: int, total: int) -> dict[str, str]:
    """A log row's guide, one of that guide's first `narrow` customers, an item, an instant."""
    g = f"({n} % {p.guides})"
    add = f"({g} + {p.guides} * ({spread(n, salt)} % {min(narrow, p.per_guide)}))"
    ago = _ago(n, total, p.seconds)
    return {
        "guide": d.guide(g),
        "store": f"(100 + {g} % {p.stores})",
        "customer": f"('wm' || {add})",
        "item": f"(1 + {spread(n, salt + 2)} % 10)",
        "at": d.ago(ago),
    }


def forwards(d: Dialect, p: Plan, n: str) -> tuple[str, str]:
    # Ten items over a guide's 200 regulars: about a fifth are repeat forwards.
    r = _logged(d, p, n, 10, 200, p.count("forwards"))
    return "content_forwards", (
        "(ref, item_id, guide_userid, external_userid, store_id, via, sent_at, recorded_at) "
        f"SELECT 'f' || {n}, {r['item']}, {r['guide']}, {r['customer']}, {r['store']}, 'sidebar', "
        f"{r['at']}, {r['at']}"
    )


def _visitors(p: Plan) -> int:
    return max(1, p.count("opens") // 3)


def open_visitors(d: Dialect, p: Plan, n: str) -> tuple[str, str]:
    r = _logged(d, p, n, 20, 1_000_000, _visitors(p))
    return "content_open_visitors", (
        "(item_id, visitor_key, guide_userid, external_userid, store_id, first_opened_at) "
        f"SELECT 1 + {n} % {ITEMS}, 'v:' || {n}, {r['guide']}, {r['customer']}, {r['store']}, "
        f"{r['at']}"
    )


def opens(d: Dialect, p: Plan, n: str) -> tuple[str, str]:
    v = f"({n} % {_visitors(p)})"
    r = _logged(d, p, v, 20, 1_000_000, _visitors(p))
    at = d.ago(_ago(n, p.count("opens"), p.seconds))
    first = f"({n} < {_visitors(p)})"
    return "content_opens", (
        "(item_id, guide_userid, external_userid, store_id, link_nonce, issued_at, opened_at, "
        f"user_agent_hash, visitor_key, first) SELECT 1 + {v} % {ITEMS}, {r['guide']}, "
        f"{r['customer']}, {r['store']}, 'n' || {n}, {at}, {at}, 'ua' || {v} % 1000, 'v:' || {v}, "
        f"{first if d.postgres else 'CAST(' + first + ' AS INTEGER)'}"
    )


def orders(d: Dialect, p: Plan, n: str) -> tuple[str, str]:
    r = _logged(d, p, n, 40, 1_000_000, p.count("orders"))
    refunded = f"({spread(n, 45)} % 10 = 0)"
    return "orders", (
        "(order_id, external_userid, store_id, amount_fen, paid_at, status, refunded_at, "
        "guide_userid, attribution, created_at, updated_at) SELECT "
        f"'B' || {n}, {r['customer']}, {r['store']}, 1000 + {spread(n, 46)} % 500000, {r['at']}, "
        f"CASE WHEN {refunded} THEN 'refunded' ELSE 'paid' END, CASE WHEN {refunded} THEN "
        f"{r['at']} END, {r['guide']}, 'recent_guide', {r['at']}, {r['at']}"
    )


def bot_replies(d: Dialect, p: Plan, n: str) -> tuple[str, str]:
    r = _logged(d, p, n, 50, 1, p.count("bot_replies"))
    reply = d.json('\'{"text": "今天待办 3 项：回访 2 位客户，转发 1 条新品内容。"}\'')
    return "bot_replies", (
        "(msg_id, guide_userid, request, reply, status, created_at, updated_at, sent_at) SELECT "
        f"'m' || {n}, {r['guide']}, '今天的任务', {reply}, 'sent', {r['at']}, {r['at']}, {r['at']}"
    )


def audit(d: Dialect, p: Plan, n: str) -> tuple[str, str]:
    at = d.ago(_ago(n, p.days * AUDIT_PER_DAY, p.seconds))
    change = d.json('\'{"title": "新品上市 \' || ' + n + " || '\"}'")
    return "audit_log", (
        '(at, actor, role, ip, action, target, "before", "after") SELECT '
        f"{at}, 'hq:alice', 'hq', '10.0.0.8', 'content.update', 'content:' || {n} % {ITEMS}, "
        f"{change}, {change}"
    )


def tables(p: Plan) -> list[tuple[str, Statement, int]]:
    """(label, statement, rows to number) in load order (foreign keys first)."""
    adds = p.count("adds")
    return [
        ("customers", customers, adds),
        ("relations", relations, adds),
        ("relation_events added", relation_events("added"), adds),
        ("relation_events lost", relation_events("lost"), adds),
        ("relation_events edited", relation_events("edited"), adds),
        ("inbox_events", inbox_events, adds),
        ("sop_enrollments", enrollments, adds),
        ("sop_tasks welcome", tasks("welcome"), adds),
        ("sop_tasks remind", tasks("remind"), adds),
        ("content_forwards", forwards, p.count("forwards")),
        ("content_open_visitors", open_visitors, _visitors(p)),
        ("content_opens", opens, p.count("opens")),
        ("orders", orders, p.count("orders")),
        ("bot_replies", bot_replies, p.count("bot_replies")),
        ("audit_log", audit, p.days * AUDIT_PER_DAY),
    ]


def table_names(d: Dialect, p: Plan) -> list[str]:
    return sorted({statement(d, p, "n")[0] for _, statement, _ in tables(p)})


def sql_for(d: Dialect, p: Plan, statement: Statement, lo: int, hi: int) -> str:
    prefix, source = d.numbers(lo, hi)
    table, body = statement(d, p, "n")
    if "{from}" in body:
        body = body.replace("{from}", f" FROM {source}", 1)
    else:
        body += f" FROM {source}"
    return f"{prefix} INSERT INTO {table} {body}"


async def load(engine, d: Dialect, p: Plan, progress: Callable[[str], None]) -> None:
    """Fill every table, chunk by chunk."""
    for label, statement, count in tables(p):
        started = time.perf_counter()
        for lo in range(0, count, CHUNK):
            async with engine.begin() as conn:
                await conn.exec_driver_sql(sql_for(d, p, statement, lo, min(count, lo + CHUNK)))
        progress(f"  {label}: {count:,} numbered in {time.perf_counter() - started:.1f} s")
