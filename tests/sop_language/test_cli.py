"""`guidebot sop check` and `guidebot sop simulate`, through guidebot.cli.main."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guidebot.cli import main

ROOT = Path(__file__).resolve().parents[2]
CASES = Path(__file__).parent / "cases"
LANGUAGES = Path(__file__).parent / "languages"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GUIDEBOT_* settings at all: the sop commands need none of the secrets."""
    import os

    for name in list(os.environ):
        if name.startswith("GUIDEBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(ROOT)


def test_check_shipped_playbooks_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sop", "check", "--lang", "en"]) == 0
    assert capsys.readouterr().out == "5 playbooks OK\n"
    assert main(["sop", "check", "--lang", "en", "sop/first_contact.yaml"]) == 0
    assert capsys.readouterr().out == "1 playbook OK\n"
    assert main(["sop", "check", "--lang", "zh"]) == 0
    assert capsys.readouterr().out == "5 个旅程检查通过\n"


def test_check_uses_guidebot_sop_dir(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sop = tmp_path / "sop"
    sop.mkdir()
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    shutil.copy(ROOT / "sop" / "birthday.yaml", sop)
    monkeypatch.setenv("GUIDEBOT_SOP_DIR", str(sop))
    assert main(["sop", "check", "--lang", "en"]) == 0
    assert capsys.readouterr().out == "1 playbook OK\n"


def test_check_prints_one_line_per_error_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    good = "sop/follow_up_7d.yaml"
    bad = "tests/sop_language/cases/welcome_twice.yaml"
    worse = "tests/sop_language/cases/duration_bad.yaml"
    assert main(["sop", "check", "--lang", "en", good, bad, worse]) == 1
    captured = capsys.readouterr()
    # The golden files name the bare file; on the command line the path shows as given.
    assert captured.out.splitlines() == golden(bad, "welcome_twice") + golden(worse, "duration_bad")
    assert captured.err == "5 errors in 2 of 3 playbooks\n"


def test_check_prints_warnings_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    loops = "tests/sop_language/cases/template_loops.yaml"
    assert main(["sop", "check", "--lang", "en", loops]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [*golden(loops, "template_loops"), "1 playbook OK (5 warnings)"]
    assert "warning W101: " in lines[0] and "a loop inside a loop" in lines[0]


def golden(path: str, case: str) -> list[str]:
    """The golden lines (tests/sop_language/languages, in English) as the command prints them."""
    lines = (LANGUAGES / f"{case}.en.expected").read_text(encoding="utf-8").splitlines()
    return [path + line.removeprefix(f"{case}.yaml") for line in lines]


def test_check_a_directory_with_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sop", "check", "--lang", "en", "tests/sop_language/cases"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) > 60
    assert all(line.startswith("tests/sop_language/cases/") for line in lines)
    assert (
        "tests/sop_language/cases/time_stays_string.yaml:5:22: send_window.hours: E307 "
        "hours '22:00' must be a range 'HH:MM-HH:MM', such as '10:00-21:00'" in lines
    )


def test_check_a_missing_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sop", "check", "--lang", "en", "nowhere.yaml"]) == 1
    assert "nowhere.yaml: no such file or directory" in capsys.readouterr().err
    assert main(["sop", "check", "--lang", "zh", "nowhere.yaml"]) == 1
    assert "nowhere.yaml：没有这个文件或目录" in capsys.readouterr().err


def test_simulate_friday_2055_in_shanghai(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sop", "simulate", "first_contact", "--added-at", "2025-03-07T20:55"]) == 0
    out = capsys.readouterr().out
    assert "time zone  Asia/Shanghai, the playbook's (no --store given)" in out
    assert "1. welcome · welcome" in out
    assert "due      2025-03-07 20:55:00 Fri (+08:00) = 2025-03-07 12:55:00 UTC" in out
    assert "expires  2025-03-07 20:55:20 Fri (+08:00) = 2025-03-07 12:55:20 UTC (after 20s)" in out
    assert "at once, on the add (not moved by the window)" in out
    assert "2. day1_intro · remind" in out
    assert "due      2025-03-08 20:55:00 Sat (+08:00) = 2025-03-08 12:55:00 UTC" in out
    assert "message  王女士您好，我是上海南京西路店的导购李娜" in out


def test_simulate_follow_up_with_a_utc_time_and_a_snapped_step(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        main(["sop", "simulate", "sop/follow_up_7d.yaml", "--added-at", "2025-03-07T13:30Z"]) == 0
    )
    out = capsys.readouterr().out
    assert "added      2025-03-07 21:30:00 Fri (+08:00) = 2025-03-07 13:30:00 UTC" in out
    # Day 3 would be Monday 21:30, after the window: Tuesday 10:00.
    assert "due      2025-03-11 10:00:00 Tue (+08:00) = 2025-03-11 02:00:00 UTC" in out
    assert "moved into the window from 2025-03-10 21:30:00 Mon (+08:00)" in out
    assert "due      2025-03-15 10:00:00 Sat (+08:00) = 2025-03-15 02:00:00 UTC" in out
    assert "https://guidebot.example.com/r/abc123" in out


def test_simulate_birthday_and_cron(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sop", "simulate", "birthday", "--added-at", "2025-06-15T15:00"]) == 0
    out = capsys.readouterr().out
    assert "enrolled   2025-06-15 00:00:00 Sun (+08:00) = 2025-06-14 16:00:00 UTC" in out
    assert "due      2025-06-15 10:00:00 Sun (+08:00) = 2025-06-15 02:00:00 UTC" in out
    assert main(["sop", "simulate", "weekly_new_arrivals", "--added-at", "2025-03-07T20:55"]) == 0
    out = capsys.readouterr().out
    assert "enrolled   2025-03-10 10:00:00 Mon (+08:00) = 2025-03-10 02:00:00 UTC" in out
    assert "content  weekly-new-arrivals" in out


def test_simulate_a_behaviour_trigger(capsys: pytest.CaptureFixture[str]) -> None:
    # --added-at plays the last counted order; the reminder comes 30 days on, in the window.
    args = ["sop", "simulate", "repurchase_30d", "--added-at", "2025-03-07T22:30"]
    assert main([*args, "--customer", "wmc11"]) == 0
    out = capsys.readouterr().out
    assert (
        "trigger    repurchase_due: 30d after the last counted order (customers with exactly 1 "
        "counted order), once per order" in out
    )
    assert "enrolled   2025-04-06 22:30:00 Sun (+08:00) = 2025-04-06 14:30:00 UTC" in out
    assert "due      2025-04-07 10:00:00 Mon (+08:00) = 2025-04-07 02:00:00 UTC" in out
    assert "wmc11: 处理组 / treated" in out
    assert main([*args, "--customer", "wmc04"]) == 0
    assert "wmc04: 对照组 / held out" in capsys.readouterr().out


def test_simulate_defaults_to_now(capsys: pytest.CaptureFixture[str]) -> None:
    before = datetime.now(UTC)
    assert main(["sop", "simulate", "first_contact"]) == 0
    out = capsys.readouterr().out
    assert f"= {before:%Y-%m-%d}" in out or f"= {datetime.now(UTC):%Y-%m-%d}" in out


def test_simulate_refuses_broken_playbooks_and_bad_times(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["sop", "simulate", "tests/sop_language/cases/window_empty.yaml"]) == 1
    captured = capsys.readouterr()
    assert (
        "window_empty.yaml:5:22: send_window.hours: window '10:00-10:00' is empty" in captured.out
    )
    assert main(["sop", "simulate", "no_such_playbook"]) == 1
    assert "not found" in capsys.readouterr().err
    assert main(["sop", "simulate", "first_contact", "--added-at", "friday"]) == 2
    assert "--added-at: 'friday' is not an ISO 8601 time" in capsys.readouterr().err


def test_simulate_with_a_store_without_a_database(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GUIDEBOT_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'none.db'}")
    assert (
        main(
            ["sop", "simulate", "first_contact", "--store", "TYO", "--added-at", "2025-03-07T20:55"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"time zone  Asia/Shanghai, the playbook's: no database at {tmp_path / 'none.db'}" in out
    assert not (tmp_path / "none.db").exists()  # looking did not create one


def test_simulate_in_a_stores_time_zone(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'stores.db'}"
    asyncio.run(_seed_store(url))
    monkeypatch.setenv("GUIDEBOT_DATABASE_URL", url)
    args = ["sop", "simulate", "first_contact", "--store", "TYO", "--added-at", "2025-03-07T20:55"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "time zone  Asia/Tokyo, store TYO (东京银座店)'s own" in out
    # A naive --added-at is the store's local time: 20:55 in Tokyo = 11:55 UTC.
    assert "due      2025-03-07 20:55:00 Fri (+09:00) = 2025-03-07 11:55:00 UTC" in out
    assert "due      2025-03-08 20:55:00 Sat (+09:00) = 2025-03-08 11:55:00 UTC" in out
    assert "东京银座店的导购李娜" in out
    args[4] = "SH1"
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Asia/Shanghai, the playbook's: store SH1 (上海店) has no time zone of its own" in out
    args[4] = "NOPE"
    assert main(args) == 0
    assert (
        "Asia/Shanghai, the playbook's: store 'NOPE' is not in the database"
        in capsys.readouterr().out
    )


async def _seed_store(url: str) -> None:
    from guidebot.contacts.models import Department
    from guidebot.db.engine import create_engine

    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Department.__table__.create)
            now = datetime(2025, 1, 1, tzinfo=UTC)
            await conn.execute(
                Department.__table__.insert(),
                [
                    dict(
                        id=7,
                        name="东京银座店",
                        code="TYO",
                        timezone="Asia/Tokyo",
                        updated_at=now,
                        parent_id=None,
                        sort_order=0,
                        is_store=True,
                    ),
                    dict(
                        id=8,
                        name="上海店",
                        code="SH1",
                        timezone=None,
                        updated_at=now,
                        parent_id=None,
                        sort_order=0,
                        is_store=True,
                    ),
                ],
            )
    finally:
        await engine.dispose()
