"""`guidebot report guides` (table, csv, json) and the morning reports to guides and managers."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from guidebot.contacts.directory import update_store
from guidebot.contacts.models import Department
from guidebot.db.parking import ParkedRow
from guidebot.metrics.daily_report import daily_message, send_reports
from guidebot.metrics.kpis import KPI_NAMES
from guidebot.metrics.report import display_width, report_guides
from guidebot.web.keys import CLOCK, WECOM
from tests.integration.test_cli import guidebot_here
from tests.metrics.conftest import at, make_harness
from tests.support import make_settings


async def small_week(h) -> None:
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await h.add("g1", "wmc02")
    await h.add("g2", "wmc04")
    h.set_time(at(10, 10, 30))
    await h.lose("g1", "wmc02")
    await h.order(
        {
            "order_id": "R-1",
            "external_userid": "wmc04",
            "amount": "1288",
            "paid_at": "2026-03-10T03:00Z",
        },
        status=201,
    )
    await h.settle()


async def test_report_guides_as_table_csv_and_json(h):
    await small_week(h)
    url = h.settings.database_url
    period = {"raw_from": "2026-03-09", "raw_to": "2026-03-15", "timezone": "Asia/Shanghai"}

    status, table = await report_guides(url, store=None, fmt="table", **period)
    assert status == 0
    lines = table.splitlines()
    assert lines[0] == "guides 2026-03-09 .. 2026-03-15"
    assert lines[1].split() == ["userid", "name", "stores", *KPI_NAMES]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == {"g1", "g2", "g3"}
    assert rows["g1"][:7] == ["g1", "王芳", "11", "2", "1", "0", "1"]
    assert rows["g2"][-23:-20] == ["1", "1288.00", "0.0%"]  # orders, gmv, profile (c04: none)
    assert rows["g2"][-20:-15] == ["0", "0", "0", "0", "0.0%"]  # no customer groups
    assert rows["g2"][-15:-13] == ["0", "0"]  # nothing came through a group's link
    assert rows["g2"][-13:-5] == ["0", "-", "0", "0", "-", "0", "0", "0"]  # no group steps
    assert rows["g2"][-5:] == ["0", "0", "-", "-", "0"]  # no WeCom contact statistics read
    # Columns line up in terminal cells: CJK names are two cells wide.
    starts = {display_width(line[: line.index(" 11 ")]) for line in lines[2:] if " 11 " in line}
    assert len(starts) == 1

    status, text = await report_guides(url, store="12", fmt="csv", **period)
    assert status == 0
    records = list(csv.DictReader(io.StringIO(text)))
    assert [r["userid"] for r in records] == ["g2"]
    assert (records[0]["from"], records[0]["to"], records[0]["stores"]) == (
        "2026-03-09",
        "2026-03-15",
        "12",
    )
    assert (records[0]["new_customers"], records[0]["gmv"], records[0]["open_rate"]) == (
        "1",
        "1288.00",
        "",
    )

    status, text = await report_guides(url, store="11", fmt="json", **period)
    document = json.loads(text)
    assert set(document) == {"from", "to", "store", "guides"}
    assert [g["userid"] for g in document["guides"]] == ["g1", "g3"]
    g1 = document["guides"][0]
    assert (g1["name"], g1["stores"]) == ("王芳", ["11"])
    assert list(g1["metrics"]) == list(KPI_NAMES)
    assert (g1["metrics"]["new_customers"], g1["metrics"]["lost_customers"]) == (2, 1)

    status, text = await report_guides(url, store="99", fmt="json", **period)
    assert (status, text) == (2, "guidebot report guides: no store '99'\n")
    status, text = await report_guides(
        url, store=None, fmt="json", raw_from="2026-03-15", raw_to="2026-03-09", timezone="UTC"
    )
    assert status == 2 and "after" in text


async def test_the_report_command_runs_as_a_process(h):
    await small_week(h)
    env = {
        **os.environ,
        "GUIDEBOT_DATABASE_URL": h.settings.database_url,
        "GUIDEBOT_TIMEZONE": "Asia/Shanghai",
        "PYTHONPATH": os.getcwd(),
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "guidebot.cli",
            "report",
            "guides",
            "--from",
            "2026-03-09",
            "--to",
            "2026-03-15",
            "--format",
            "json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    guides = {g["userid"]: g["metrics"] for g in json.loads(done.stdout)["guides"]}
    assert (guides["g1"]["new_customers"], guides["g2"]["gmv"]) == (2, "1288.00")
    # The same command again, in this process (its answer, not the start-up again).
    bad = await asyncio.to_thread(guidebot_here, "report", "guides", "--from", "yesterday", env=env)
    assert bad.returncode == 2 and "YYYY-MM-DD" in bad.stderr


@pytest.fixture
async def hm(aiohttp_client, database_url, clock, sop_dir):
    """The harness with g1 named a store manager (GUIDEBOT_STORE_MANAGERS=g1)."""
    return await make_harness(aiohttp_client, database_url, clock, sop_dir, store_managers=("g1",))


async def run_reports(h):
    return await send_reports(h.sessions, h.app[WECOM], h.app[CLOCK], h.settings)


async def test_morning_reports_at_nine_store_time_once_each(hm):
    h = hm
    await small_week(h)
    async with h.sessions() as session, session.begin():
        await update_store(session, "12", timezone="America/Los_Angeles", now=h.clock.now())
    await h.settle()

    # 09:00 in Los Angeles (00:00 in Shanghai): only g2, with Los Angeles's yesterday, when
    # the order (03:00 UTC on the 10th) was paid.
    h.set_time(datetime(2026, 3, 10, 9, 0, tzinfo=ZoneInfo("America/Los_Angeles")))
    assert (await run_reports(h)).daily == 1
    [card] = await h.app_messages("g2")
    assert card["textcard"]["title"] == "李娜，昨日业绩 3月9日"
    assert "订单 1 · GMV ¥1288.00" in card["textcard"]["description"]

    h.set_time(at(11, 8, 59))
    assert (await run_reports(h)).daily == 0
    h.set_time(at(11, 9, 0))  # 09:00 in Shanghai; 18:00 the day before in Los Angeles
    report = await run_reports(h)
    assert (report.daily, report.weekly) == (2, 0)  # g1 and g3 (store 11), not g2
    [card] = await h.app_messages("g1")
    assert card["msgtype"] == "textcard"
    assert card["textcard"]["title"] == "王芳，昨日业绩 3月10日"
    description = card["textcard"]["description"]
    assert "新客 0 · 流失 1 · 删除 0 · 净增 -1" in description
    assert "今日待办 1 项" in description  # c01's reminder (due Tue 10:00, not yet sent)
    assert card["textcard"]["url"].endswith("/sidebar")
    h.set_time(at(11, 9, 30))
    assert (await run_reports(h)).daily == 0  # once per guide per day

    # Monday: the weekly report to the manager of store 11, for last Monday..Sunday.
    await h.fault("message/send", 81013)  # the first send is refused, and tried again later
    h.set_time(at(16, 9, 0))
    report = await run_reports(h)
    assert (report.daily, report.weekly, report.failed) == (1, 1, 1)
    h.set_time(at(16, 10, 0))
    report = await run_reports(h)
    assert (report.daily, report.weekly, report.failed) == (1, 0, 0)
    weekly = [m for m in await h.app_messages("g1") if "周报" in m["textcard"]["title"]]
    assert [m["textcard"]["title"] for m in weekly] == ["张江店 周报 3/9–3/15"]
    assert "新客 2 · 流失 1 · 删除 0 · 净增 1" in weekly[0]["textcard"]["description"]
    assert "新客前三：王芳 2、张伟 0" in weekly[0]["textcard"]["description"]
    h.set_time(at(16, 12, 0))  # past the morning window: nothing more
    assert (await run_reports(h)).daily == 0


def test_report_text_fits_wecoms_textcard():
    values = {name: 123456 for name in KPI_NAMES} | {"welcome_rate": 0.5, "gmv": "9999999.99"}
    title, description = daily_message(
        "王" * 20, "张" * 40, datetime(2026, 3, 9).date(), values, 99
    )
    assert len(description.encode()) <= 512
    assert title.startswith("王")


def test_store_managers_come_from_the_environment():
    from guidebot.config import ConfigError, Settings

    env = make_settings("sqlite+aiosqlite:///x.db").as_env()
    settings = Settings.from_env({**env, "GUIDEBOT_STORE_MANAGERS": " g1, g3 "})
    assert settings.store_managers == ("g1", "g3")
    assert Settings.from_env(settings.as_env()) == settings
    assert Settings.from_env(env).attribution_days == 7
    with pytest.raises(ConfigError, match="GUIDEBOT_ATTRIBUTION_DAYS"):
        Settings.from_env({**env, "GUIDEBOT_ATTRIBUTION_DAYS": "0"})


async def test_a_guide_whose_report_cannot_be_made_is_parked_and_the_others_get_theirs(hm):
    """Store 12's time zone is no IANA name (written by an older version or by hand): that
    used to stop every morning report, and every rollup row, for every store."""
    h = hm
    await small_week(h)
    async with h.sessions() as session, session.begin():
        await session.execute(
            update(Department).where(Department.id == 12).values(timezone="Mars/Olympus")
        )
    await h.add("g1", "wmc11")
    await h.add("g2", "wmc12")
    rollup = await h.settle()
    assert rollup.parked >= 1  # g2's rows (store 12) are parked, with the reason...
    async with h.sessions() as session:
        parked = list(await session.scalars(select(ParkedRow)))
    assert {p.job for p in parked} == {"metrics-rollup"}
    assert all("'Mars/Olympus' is not an IANA time zone" in p.reason for p in parked)
    # (the zone change itself, and g2's add: store 12's rows)
    assert all(p.detail.startswith("zone 12 ") or "of g2/" in p.detail for p in parked)
    # ...and g1's figures are up to date all the same.
    _, body = await h.api(
        "GET", "/guides/g1/metrics", params={"from": "2026-03-09", "to": "2026-03-15"}
    )
    assert body["metrics"]["new_customers"] == 3  # wmc01, wmc02 and wmc11

    h.set_time(at(11, 9, 0))  # 09:00 in Shanghai
    report = await run_reports(h)
    assert (report.daily, report.parked) == (2, 1)  # g1 and g3; g2 parked
    assert len(await h.app_messages("g1")) == 1 and len(await h.app_messages("g3")) == 1
    assert await h.app_messages("g2") == []
    async with h.sessions() as session:
        [row] = list(
            await session.scalars(select(ParkedRow).where(ParkedRow.job == "metrics-reports"))
        )
    assert (row.table_name, row.row_key, row.detail) == ("guides", "g2", "daily report to g2")
    assert row.reason == (
        "ValueError: store 12's time zone 'Mars/Olympus' is not an IANA time zone"
    )
