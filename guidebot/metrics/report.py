"""Reading the rollups: KPIs for a guide, a store or HQ; leaderboards; `guidebot report guides`.

Everything here reads guide_daily and guide_profile_daily only, never the source logs. Counters
are summed over the rows in scope, then each KPI is computed once from the sums (kpis.evaluate).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import os
import re
import sys
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot import i18n
from guidebot.clock import FIRST_YEAR, LAST_YEAR
from guidebot.config import ConfigError, database_url_from_env
from guidebot.contacts.directory import find_store
from guidebot.contacts.models import Department, Guide, GuideStatus, StoreMembership
from guidebot.db.migrate import open_database, prepare_database
from guidebot.db.parking import parked_counts
from guidebot.i18n import N_
from guidebot.metrics import kpis
from guidebot.metrics.models import COUNTERS, NO_STORE, GuideDaily, GuideProfileDaily
from guidebot.metrics.rollup import JOB as ROLLUP_JOB
from guidebot.metrics.rollup import refresh

log = logging.getLogger(__name__)

MAX_PERIOD_DAYS = 366
DEFAULT_PERIOD_DAYS = 7
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class PeriodError(ValueError):
    """A bad period; str() is English, translated(lang) the page's language (guidebot.i18n)."""

    def __init__(self, msgid: str, **values: object) -> None:
        super().__init__(msgid % values)
        self.msgid, self.values = msgid, values

    def translated(self, lang: str) -> str:
        values = dict(self.values)
        if lang != i18n.EN and values.get("name") in _PARAMETER_WORDS:
            values["name"] = i18n.gettext(_PARAMETER_WORDS[values["name"]], lang)  # 开始日期
        return i18n.gettext(self.msgid, lang, **values)


# A period's parameters as a page names them ("from" is the page's 开始日期).
_PARAMETER_WORDS = {"from": N_("From"), "to": N_("To")}


@dataclass(frozen=True, slots=True)
class Period:
    first: date
    last: date

    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]

    def as_json(self) -> dict[str, str]:
        return {"from": self.first.isoformat(), "to": self.last.isoformat()}


def parse_day(raw: str, name: str) -> date:
    if not _DATE.fullmatch(raw):
        raise PeriodError(
            N_("'%(name)s' must be a date YYYY-MM-DD, got %(raw)r"), name=name, raw=raw
        )
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise PeriodError(
            N_("'%(name)s' %(raw)r is not a calendar date"), name=name, raw=raw
        ) from None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise PeriodError(
            N_("'%(name)s' must fall in the years %(first)s to %(last)s"),
            name=name,
            first=FIRST_YEAR,
            last=LAST_YEAR,
        )
    return day


def parse_period(raw_from: str | None, raw_to: str | None, today: date) -> Period:
    """from/to (inclusive local days). Missing `to`: today; missing `from`: 6 days before `to`."""
    last = parse_day(raw_to, "to") if raw_to else today
    first = parse_day(raw_from, "from") if raw_from else last - timedelta(DEFAULT_PERIOD_DAYS - 1)
    if first > last:
        raise PeriodError(N_("'from' %(first)s is after 'to' %(last)s"), first=first, last=last)
    if (last - first).days + 1 > MAX_PERIOD_DAYS:
        raise PeriodError(N_("the period spans more than %(days)s days"), days=MAX_PERIOD_DAYS)
    return Period(first, last)


def today_in(tz: str, now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).astimezone(ZoneInfo(tz)).date()


def period_from_query(query: Mapping[str, str], tz: str, now: datetime) -> Period:
    """The period a request's `from` and `to` name, relative to today in `tz`; PeriodError."""
    return parse_period(
        query.get("from", "").strip() or None,
        query.get("to", "").strip() or None,
        today_in(tz, now),
    )


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose rows: one guide, one store, or everyone (HQ); `stores` narrows any of them to the
    rows of those stores (a manager's): each row carries the guide's store at the event's time,
    so a guide who moved brings none of the other store's history along."""

    guide: str | None = None
    store_id: int | None = None
    stores: frozenset[int] | None = None
    guides: frozenset[str] | None = None  # these guides' rows only (a leaderboard's shown)

    def whose(self, query: Any, guide_column: Any) -> Any:
        """`query` narrowed to the scope's guide or guides (its stores are the caller's)."""
        if self.guide is not None:
            query = query.where(guide_column == self.guide)
        if self.guides is not None:
            query = query.where(guide_column.in_(sorted(self.guides)))
        return query

    def fits(self, store: int) -> bool:
        return (self.store_id is None or store == self.store_id) and (
            self.stores is None or store in self.stores
        )


# ---- sums -------------------------------------------------------------------------------------


async def counter_totals(
    session: AsyncSession,
    scope: Scope,
    period: Period,
    *,
    group: str | None = None,
    columns: Iterable[str] = COUNTERS,
) -> dict[Any, dict[str, int]]:
    """Summed guide_daily counters (`columns` of them), keyed by None, by day ("day"), by guide
    ("guide") or by store ("store")."""
    wanted = set(columns)
    columns = [c for c in COUNTERS if c in wanted]
    keys = {
        None: [],
        "day": [GuideDaily.day],
        "guide": [GuideDaily.guide_userid],
        "store": [GuideDaily.store_id],
    }[group]
    sums = [func.coalesce(func.sum(getattr(GuideDaily, c)), 0).label(c) for c in columns]
    query = select(*keys, *sums).where(
        GuideDaily.day >= period.first, GuideDaily.day <= period.last
    )
    query = scope.whose(query, GuideDaily.guide_userid)
    if scope.store_id is not None:
        query = query.where(GuideDaily.store_id == scope.store_id)
    if scope.stores is not None:
        query = query.where(GuideDaily.store_id.in_(sorted(scope.stores)))
    if keys:
        query = query.group_by(*keys)
    out: dict[Any, dict[str, int]] = {}
    for row in await session.execute(query):
        values = row._mapping
        key = values[keys[0].key] if keys else None
        out[key] = {c: int(values[c] or 0) for c in columns}
    return out


# The snapshot columns behind kpis.PROFILE_COLUMNS, in that order.
SNAPSHOT = (
    GuideProfileDaily.filled,
    GuideProfileDaily.active,
    GuideProfileDaily.groups_owned,
    GuideProfileDaily.in_group,
)


async def _latest_snapshots(
    session: AsyncSession, scope: Scope, on_or_before: date, since: date | None = None
) -> list[tuple[str, date, int, tuple[int, ...]]]:
    """(guide, day, store, the SNAPSHOT values): each guide's last snapshot on or before the
    day, and with `since`, every snapshot from `since` on as well."""
    latest = select(
        GuideProfileDaily.guide_userid.label("guide"), func.max(GuideProfileDaily.day).label("day")
    ).where(GuideProfileDaily.day <= (since - timedelta(days=1) if since else on_or_before))
    latest = scope.whose(latest, GuideProfileDaily.guide_userid)
    latest = latest.group_by(GuideProfileDaily.guide_userid).subquery()
    columns = (
        GuideProfileDaily.guide_userid,
        GuideProfileDaily.day,
        GuideProfileDaily.store_id,
        *SNAPSHOT,
    )
    rows = list(
        await session.execute(
            select(*columns).join(
                latest,
                and_(
                    GuideProfileDaily.guide_userid == latest.c.guide,
                    GuideProfileDaily.day == latest.c.day,
                ),
            )
        )
    )
    if since is not None:
        query = select(*columns).where(
            GuideProfileDaily.day >= since, GuideProfileDaily.day <= on_or_before
        )
        query = scope.whose(query, GuideProfileDaily.guide_userid)
        rows += list(await session.execute(query))
    return [(r[0], r[1], r[2], tuple(r[3:])) for r in rows]


async def profile_totals(
    session: AsyncSession, scope: Scope, period: Period, *, group: str | None = None
) -> dict[Any, dict[str, int]]:
    """The snapshot columns (kpis.PROFILE_COLUMNS: profile data, groups owned, customers in a
    group) from each guide's last snapshot on or before the period's end (by day: on or before
    each day), keyed by None, by day ("day"), by guide ("guide") or by store ("store"). A store
    counts a guide whose snapshot was taken there."""

    fits = scope.fits
    out: dict[Any, dict[str, int]] = defaultdict(lambda: dict.fromkeys(kpis.PROFILE_COLUMNS, 0))

    def add(key: Any, values: tuple[int, ...]) -> None:
        for column, value in zip(kpis.PROFILE_COLUMNS, values, strict=True):
            out[key][column] += value or 0

    if group != "day":
        for guide, _day, store, values in await _latest_snapshots(session, scope, period.last):
            if fits(store):
                add({"guide": guide, "store": store}.get(group), values)
        return dict(out)
    per_guide: dict[str, list[tuple[date, int, tuple[int, ...]]]] = defaultdict(list)
    for guide, day, store, values in await _latest_snapshots(
        session, scope, period.last, since=period.first
    ):
        per_guide[guide].append((day, store, values))
    days = period.days()
    for snapshots in per_guide.values():
        snapshots.sort()
        index, current = 0, None
        for day in days:
            while index < len(snapshots) and snapshots[index][0] <= day:
                current = snapshots[index]
                index += 1
            if current is not None and fits(current[1]):
                add(day, current[2])
    return dict(out)


def _blank() -> dict[str, int]:
    return kpis.empty_totals()


async def metrics(
    session: AsyncSession, scope: Scope, period: Period, *, by_day: bool = False
) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """The KPIs over the period, and per day when asked."""
    totals = _blank()
    if not by_day:
        kpis.add_totals(totals, (await counter_totals(session, scope, period)).get(None, {}))
        kpis.add_totals(totals, (await profile_totals(session, scope, period)).get(None, {}))
        return kpis.evaluate(totals), None
    # The period's totals from the days' (two reads, not four: at 10,000 guides each is a
    # tenth of a second or more): the counters summed, the snapshots as of the last day.
    counters = await counter_totals(session, scope, period, group="day")
    profiles = await profile_totals(session, scope, period, group="day")
    for sums in counters.values():
        kpis.add_totals(totals, sums)
    kpis.add_totals(totals, profiles.get(period.last, {}))
    days = []
    for day in period.days():
        day_totals = kpis.add_totals(_blank(), counters.get(day, {}))
        kpis.add_totals(day_totals, profiles.get(day, {}))
        days.append({"day": day.isoformat(), "metrics": kpis.evaluate(day_totals)})
    return kpis.evaluate(totals), days


async def per_guide(
    session: AsyncSession,
    period: Period,
    store_id: int | None,
    *,
    columns: Iterable[str] = COUNTERS,
    guides: Iterable[str] | None = None,
) -> dict[str, dict[str, int]]:
    """Summed counters (`columns` of them) and profile snapshot per guide (in one store when
    given; of `guides` only, when given)."""
    scope = Scope(store_id=store_id, guides=None if guides is None else frozenset(guides))
    out: dict[str, dict[str, int]] = defaultdict(_blank)
    counters = await counter_totals(session, scope, period, group="guide", columns=columns)
    for guide, sums in counters.items():
        kpis.add_totals(out[guide], sums)
    for guide, sums in (await profile_totals(session, scope, period, group="guide")).items():
        kpis.add_totals(out[guide], sums)
    return dict(out)


async def per_store(
    session: AsyncSession, period: Period, stores: Iterable[int] | None = None
) -> dict[int, dict[str, Any]]:
    """The KPIs of each store (of these stores when given) over the period: two grouped reads
    whatever the number of stores, each store's figures those of metrics() in its scope."""
    scope = Scope(stores=None if stores is None else frozenset(stores))
    totals: dict[int, dict[str, int]] = defaultdict(_blank)
    for store, sums in (await counter_totals(session, scope, period, group="store")).items():
        kpis.add_totals(totals[store], sums)
    for store, sums in (await profile_totals(session, scope, period, group="store")).items():
        kpis.add_totals(totals[store], sums)
    return {store: kpis.evaluate(sums) for store, sums in totals.items()}


async def guide_names(session: AsyncSession, userids: Iterable[str]) -> dict[str, str]:
    wanted = sorted(set(userids))
    names: dict[str, str] = {}
    for i in range(0, len(wanted), 500):
        for userid, name in await session.execute(
            select(Guide.userid, Guide.name).where(Guide.userid.in_(wanted[i : i + 500]))
        ):
            names[userid] = name
    return names


async def leaderboard(
    session: AsyncSession,
    period: Period,
    metric: str,
    *,
    store_id: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Guides ranked by one KPI over the period (bigger first; no value last; then userid).

    Every guide is ranked by that one KPI, summing only the counters it needs; the rest are
    summed and worked out for those shown (at 10,000 guides all forty counters and thirty-six
    KPIs of every guide were 2.6 s of the dashboard's 3.2)."""
    kpi = kpis.KPI_BY_NAME[metric]
    ranking = await per_guide(session, period, store_id, columns=kpis.columns_of([metric]))
    ranked = sorted(
        ranking,
        key=lambda guide: (-kpis.sort_key(kpi, _number(kpi.value(ranking[guide]))), guide),
    )[:limit]
    names = await guide_names(session, ranked)
    totals = await per_guide(session, period, store_id, guides=ranked) if ranked else {}
    shown = [(guide, kpis.evaluate(totals.get(guide, _blank()))) for guide in ranked]
    return [
        {
            "rank": rank,
            "userid": guide,
            "name": names.get(guide, guide),
            "value": values[metric],
            "metrics": values,
        }
        for rank, (guide, values) in enumerate(shown, start=1)
    ]


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, str) else value


# ---- `guidebot report guides` ------------------------------------------------------------------


@dataclass(slots=True)
class GuideLine:
    userid: str
    name: str
    stores: list[str]
    metrics: dict[str, Any]


async def guide_lines(
    session: AsyncSession, period: Period, store_id: int | None
) -> list[GuideLine]:
    """One line per guide with rows in the period (in the store when given), plus the store's
    (or every) active guide with none, so an idle guide shows as zeros."""
    totals = await per_guide(session, period, store_id)
    query = select(GuideDaily.guide_userid, GuideDaily.store_id).where(
        GuideDaily.day >= period.first, GuideDaily.day <= period.last
    )
    if store_id is not None:
        query = query.where(GuideDaily.store_id == store_id)
    stores: dict[str, set[int]] = defaultdict(set)
    for guide, store in (await session.execute(query.distinct())).all():
        stores[guide].add(store)
    members = select(StoreMembership.guide_userid, StoreMembership.store_id).join(
        Guide, Guide.userid == StoreMembership.guide_userid
    )
    members = members.where(StoreMembership.valid_to.is_(None), Guide.status == GuideStatus.ACTIVE)
    if store_id is not None:
        members = members.where(StoreMembership.store_id == store_id)
    for guide, store in await session.execute(members):
        stores[guide].add(store)
        totals.setdefault(guide, _blank())
    codes = {
        d.id: d.code
        for d in await session.scalars(
            select(Department).where(Department.id.in_({s for v in stores.values() for s in v}))
        )
    }
    names = await guide_names(session, totals)
    lines = [
        GuideLine(
            userid=guide,
            name=names.get(guide, guide),
            stores=sorted(codes.get(s, "-") if s != NO_STORE else "-" for s in stores[guide]),
            metrics=kpis.evaluate(sums),
        )
        for guide, sums in totals.items()
    ]
    lines.sort(key=lambda line: (line.stores, line.userid))
    return lines


def _cell(kpi: kpis.Kpi, value: Any) -> str:
    if value is None:
        return "-"
    if kpi.kind == "rate":
        return f"{value * 100:.1f}%"
    return f"{value:g}" if kpi.kind == "minutes" else str(value)


def display_width(text: str) -> int:
    """Terminal columns: CJK wide and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int, right: bool) -> str:
    space = " " * (width - display_width(text))
    return space + text if right else text + space


HEADER = ("userid", "name", "stores", *kpis.KPI_NAMES)


def format_table(period: Period, lines: Sequence[GuideLine]) -> str:
    body = [
        [line.userid, line.name, ",".join(line.stores)]
        + [_cell(k, line.metrics[k.name]) for k in kpis.KPIS]
        for line in lines
    ]
    widths = [max(display_width(r[i]) for r in [list(HEADER), *body]) for i in range(len(HEADER))]
    out = [f"guides {period.first} .. {period.last}"]
    for i, row in enumerate([list(HEADER), *body]):
        cells = [_pad(cell, widths[j], right=j >= 3 and i > 0) for j, cell in enumerate(row)]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out) + "\n"


def format_csv(period: Period, lines: Sequence[GuideLine]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["from", "to", *HEADER])
    for line in lines:
        writer.writerow(
            [period.first, period.last, line.userid, line.name, " ".join(line.stores)]
            + ["" if line.metrics[k] is None else line.metrics[k] for k in kpis.KPI_NAMES]
        )
    return buffer.getvalue()


def format_json(period: Period, lines: Sequence[GuideLine], store: str | None) -> str:
    document = {
        **period.as_json(),
        "store": store,
        "guides": [
            {
                "userid": line.userid,
                "name": line.name,
                "stores": line.stores,
                "metrics": line.metrics,
            }
            for line in lines
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


async def report_guides(
    database_url: str,
    *,
    raw_from: str | None,
    raw_to: str | None,
    store: str | None,
    fmt: str,
    timezone: str,
    now: datetime | None = None,
) -> tuple[int, str]:
    """(exit status, text) of `guidebot report guides`. Catches up pending rollup work first,
    then reads only the rollups. Default period: the 7 days up to yesterday (GUIDEBOT_TIMEZONE)."""
    now = now or datetime.now(UTC)
    yesterday = today_in(timezone, now) - timedelta(days=1)
    try:
        period = parse_period(raw_from, raw_to, yesterday)
    except PeriodError as exc:
        return 2, f"guidebot report guides: {exc}\n"
    async with open_database(database_url, prepare=False) as sessions:
        await refresh(sessions, timezone, now)
        async with sessions() as session:
            left_out = (await parked_counts(session)).get(ROLLUP_JOB, 0)
            if left_out:
                log.warning(
                    "有 %d 行数据无法计入业绩，已搁置 / %d row(s) the rollup could not handle are "
                    "parked and left out of these figures: see `guidebot jobs parked`",
                    left_out,
                    left_out,
                )
            store_id = None
            if store is not None:
                found = await find_store(session, store)
                if found is None or not found.is_store:
                    return 2, f"guidebot report guides: no store {store!r}\n"
                store_id = found.id
            lines = await guide_lines(session, period, store_id)
    if fmt == "csv":
        return 0, format_csv(period, lines)
    if fmt == "json":
        return 0, format_json(period, lines, store)
    return 0, format_table(period, lines)


def report_guides_command(
    *, raw_from: str | None, raw_to: str | None, store: str | None, fmt: str
) -> int:
    """The CLI entry: GUIDEBOT_DATABASE_URL and GUIDEBOT_TIMEZONE only (no WeCom settings)."""
    timezone = os.environ.get("GUIDEBOT_TIMEZONE", "").strip() or "Asia/Shanghai"
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("GUIDEBOT_TIMEZONE", f"unknown IANA time zone {timezone!r}") from None
    url = database_url_from_env()
    prepare_database(url)
    status, text = asyncio.run(
        report_guides(
            url,
            raw_from=raw_from,
            raw_to=raw_to,
            store=store,
            fmt=fmt,
            timezone=timezone,
        )
    )
    (sys.stdout if status == 0 else sys.stderr).write(text)
    return status
