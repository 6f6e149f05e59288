"""The admin as a reader meets it: a demo-like week seeded into the web harness (customers added
and lost, tasks sent, done, skipped and overdue, content forwarded and opened, an order, a
customer group, audited changes), and a walk that opens every admin page reachable from the
navigation, following every link to another admin page, so a page or a table added later is
walked without anyone listing it here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlsplit

from sqlalchemy import select

from guidebot.audit.models import AuditEntry
from guidebot.contacts.models import Customer, Department, Guide
from guidebot.content.models import ContentItem
from guidebot.groups.models import CustomerGroup
from guidebot.metrics.cohorts import refresh_cohorts
from guidebot.web.accounts import Account
from tests.metrics.conftest import at

NOT_PAGES = ("/admin/login", "/admin/logout", "/admin/static/")
FILES = ("/media",)  # a content item's uploaded file: bytes, not a page


async def seed_week(h) -> None:
    """Monday to Wednesday of the metrics harness's week, the state at Wednesday noon."""
    h.set_time(at(9, 10))
    for guide, customer in (("g1", "wmc01"), ("g1", "wmc02"), ("g3", "wmc03"), ("g2", "wmc04")):
        await h.add(guide, customer)
    await h.edit("g1", "wmc01", remark="陈女士")
    await h.tick()
    item = await h.item("春季新品")
    await h.open(await h.forward("g1", "wmc01", item))
    h.set_time(at(9, 11))
    await h.lose("g3", "wmc03")
    await h.act("groups", {"owner": "g1", "name": "张江VIP群", "members": ["wmc01", "wmc02"]})
    await h.act("groups", {"owner": "g2", "name": "徐汇体验官群", "members": ["wmc04"]})
    h.set_time(at(10, 11))
    await h.tick()
    await h.skip("g1", "wmc02", "顾客出差")
    await h.complete("g2", "wmc04")
    body = {
        "order_id": "A-1",
        "external_userid": "wmc01",
        "amount": "199.00",
        "paid_at": at(10, 12).isoformat(),
    }
    await h.order(body, status=201)
    h.set_time(at(11, 12))  # wmc01's reminder is now overdue
    await h.tick()
    await h.settle()
    await refresh_cohorts(h.sessions, h.settings.timezone, h.clock.now())
    h.advance(timedelta(minutes=1))


async def seeded_words(h) -> tuple[set[str], set[str]]:
    """What the seeded data itself holds: names people gave things (Chinese, shown as they are
    in either language) and identifiers (customer IDs, userids, store codes, ...)."""
    names: set[str] = {"顾客出差", "陈女士", "VIP"}
    codes: set[str] = {"A-1", "week_sop", "welcome.j2", "remind_day1_intro.j2"}
    async with h.sessions() as session:
        for model, name_fields, code_fields in (
            (Customer, ("name",), ("external_userid",)),
            (Guide, ("name",), ("userid",)),
            (Department, ("name",), ("code",)),
            (ContentItem, ("title",), ("url",)),
            (CustomerGroup, ("name",), ("chat_id",)),
        ):
            for row in await session.scalars(select(model)):
                names |= {getattr(row, f) for f in name_fields if getattr(row, f)}
                codes |= {str(getattr(row, f)) for f in code_fields if getattr(row, f)}
        codes |= set(await session.scalars(select(Account.username)))
        for actor, target in (
            await session.execute(select(AuditEntry.actor, AuditEntry.target))
        ).all():
            codes |= {*(actor or "").split(), target or ""}  # "hq:admin token", "order:A-1"
    names.add("测试欢迎与次日提醒")  # the playbook's name
    return names, codes


# ---- reading a page --------------------------------------------------------------------------


@dataclass
class Table:
    id: str | None
    classes: list[str]
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


class Page(HTMLParser):
    """A page's links, tables, export links and the text a reader sees (attributes a reader
    reads on hover included; scripts, the YAML editor and raw JSON left out)."""

    HIDDEN = frozenset({"script", "style", "textarea", "pre", "code"})
    SHOWN_ATTRS = ("title", "placeholder", "aria-label", "alt", "value")
    TYPED = frozenset({"text", "search", "submit", "button", None})  # inputs showing their value

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.tables: list[Table] = []
        self.exports: dict[str, list[str]] = {}
        self.words: list[str] = []
        self._hidden = 0
        self._stack: list[Table] = []
        self._cell: list[str] | None = None
        self._in_head = False
        self._export: str | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in self.HIDDEN:
            self._hidden += 1
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
            if self._export is not None:
                self.exports[self._export].append(a["href"])
        if tag == "span" and "exports" in (a.get("class") or "").split():
            self._export = a.get("data-for") or ""
            self.exports.setdefault(self._export, [])
        if tag == "table":
            self._stack.append(Table(a.get("id"), (a.get("class") or "").split()))
        if tag == "thead":
            self._in_head = True
        if tag == "tr" and self._stack and not self._in_head:
            self._stack[-1].rows.append([])
        if tag in ("td", "th") and self._stack:
            self._cell = []
        if not self._hidden:
            shown = self.SHOWN_ATTRS
            if tag == "option" or (tag == "input" and a.get("type") not in self.TYPED):
                shown = tuple(k for k in shown if k != "value")  # a code sent, not read
            self.words += [a[k] for k in shown if a.get(k)]

    def handle_endtag(self, tag):
        if tag in self.HIDDEN:
            self._hidden -= 1
        if tag == "span":
            self._export = None
        if tag == "thead":
            self._in_head = False
        if tag in ("td", "th") and self._stack and self._cell is not None:
            text = " ".join("".join(self._cell).split())
            table = self._stack[-1]
            if self._in_head:
                table.headers.append(text)
            elif table.rows:
                table.rows[-1].append(text)
            self._cell = None
        if tag == "table" and self._stack:
            self.tables.append(self._stack.pop())

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if not self._hidden:
            self.words.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.words).split())


# ---- walking ---------------------------------------------------------------------------------


def admin_routes(app) -> dict[str, re.Pattern[str]]:
    """Every admin page's route (GET, under /admin, not sign-in or files) as a pattern."""
    found = {}
    for route in app.router.routes():
        canonical = route.resource.canonical if route.resource else ""
        if route.method != "GET" or not canonical.startswith("/admin"):
            continue
        if any(canonical.startswith(p) for p in NOT_PAGES) or canonical.endswith(FILES):
            continue
        pattern = re.sub(r"\{[^}:]+(?::([^}]+))?\}", lambda m: f"(?:{m[1] or '[^/]+'})", canonical)
        found[canonical] = re.compile(f"^{pattern}$")
    return found


def route_of(routes: dict[str, re.Pattern[str]], path: str) -> str | None:
    # A literal route (/admin/content/new) before a pattern that would also match it.
    literal = [r for r in routes if r == path]
    if literal:
        return literal[0]
    return next((r for r, pattern in routes.items() if pattern.match(path)), None)


async def walk(h, headers, *, lang: str = "zh", limit: int = 80) -> dict[str, tuple[str, str]]:
    """url → (route, html) for each admin page reached from /admin by links, in `lang`; one
    visit per route and set of query keys (a page's filters, not each value of them)."""
    routes = admin_routes(h.app)
    queue, seen, pages = ["/admin"], set(), {}
    while queue and len(pages) < limit:
        url = queue.pop(0)
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        route = route_of(routes, parts.path)
        key = (route, tuple(sorted(query)))
        if route is None or key in seen or "format" in query or "lang" in query:
            continue
        seen.add(key)
        response = await h.client.get(parts.path, params={**query, "lang": lang}, headers=headers)
        html = await response.text()
        assert response.status == 200, (url, response.status, html[-2000:])
        pages[url] = (route, html)
        for href in Page(html).links:
            target = urlsplit(href)
            if target.path.startswith("/admin") and not target.netloc:
                queue.append(href)
    return pages


def missing_routes(h, pages: dict[str, tuple[str, str]]) -> set[str]:
    return set(admin_routes(h.app)) - {route for route, _ in pages.values()}
