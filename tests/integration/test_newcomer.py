"""A newcomer's first ten minutes: `make demo PORT=`, the URL the demo prints, the demo's own
database (never one left in GUIDEBOT_DATABASE_URL), `sop simulate --store` finding the demo's
stores afterwards, and covers served by guidebot itself."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import aiohttp
import pytest

from guidebot.cli import main
from guidebot.config import demo_database
from guidebot.demo import run_demo
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_make_demo_passes_port_and_the_readme_shows_it():
    dry = subprocess.run(
        ["make", "-n", "demo", "PORT=9123"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert dry.returncode == 0, dry.stderr
    assert ".venv/bin/guidebot demo --port 9123" in dry.stdout
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo PORT=9000" in readme
    assert ".venv/bin/guidebot demo --port 9000" in readme
    # Why tests skip, and what the browser tests need.
    assert (
        "GUIDEBOT_TEST_DATABASE_URL" in readme
        and "apt-get install chromium fonts-wqy-microhei" in readme
    )


def test_the_demo_leaves_a_database_named_in_the_environment_alone():
    left = "postgresql+asyncpg://ops:hunter2@db.example.com/production"
    url, note = demo_database(None, {"GUIDEBOT_DATABASE_URL": left})
    assert url == "sqlite+aiosqlite:///guidebot-demo.db"
    assert "guidebot-demo.db" in note and "--database-url" in note
    assert "db.example.com/production" in note and "hunter2" not in note
    assert demo_database(left, {"GUIDEBOT_DATABASE_URL": "x"}) == (left, None)  # said so
    assert demo_database(None, {}) == ("sqlite+aiosqlite:///guidebot-demo.db", None)


@pytest.fixture
def newcomer_folder(tmp_path, monkeypatch):
    """A folder like a fresh clone's (the playbooks and templates beside it), with a
    GUIDEBOT_DATABASE_URL left over from some other work."""
    (tmp_path / "sop").symlink_to(ROOT / "sop")
    (tmp_path / "templates").symlink_to(ROOT / "templates")
    monkeypatch.chdir(tmp_path)
    left = tmp_path / "other-work.db"
    monkeypatch.setenv("GUIDEBOT_DATABASE_URL", f"sqlite+aiosqlite:///{left}")
    return tmp_path, left


async def test_the_demo_prints_a_page_uses_its_own_database_and_serves_its_covers(
    newcomer_folder, capsys, monkeypatch
):
    folder, left = newcomer_folder
    stop, seen = asyncio.Event(), {}

    async def ready(urls: dict) -> None:
        seen.update(urls)

    demo = asyncio.create_task(
        run_demo(port=free_port(2), traffic=False, history_days=0, ready=ready, stop=stop)
    )
    try:
        for _ in range(600):
            if seen or demo.done():
                break
            await asyncio.sleep(0.05)
        assert seen, "the demo never became ready"
        printed = capsys.readouterr().out
        assert "GUIDEBOT_DATABASE_URL" in printed and "guidebot-demo.db" in printed
        opened = re.search(r"open / 打开: +(\S+)", printed).group(1)
        async with aiohttp.ClientSession() as http:
            async with http.get(opened) as response:  # a page (the sign-in), not a 404
                assert response.status == 200, opened
                assert "text/html" in response.content_type
            headers = {"Authorization": f"Bearer {seen['admin_token']}"}
            async with http.get(f"{seen['server']}/api/v1/content", headers=headers) as response:
                items = (await response.json())["items"]
            covers = {i["cover_url"] for i in items if i["cover_url"]}
            assert len(covers) >= 5
            for cover in covers:  # guidebot's own files: nothing outside is fetched
                assert cover.startswith(f"{seen['server']}/sidebar/static/cover-"), cover
                async with http.get(cover) as response:
                    assert response.status == 200 and response.content_type == "image/png"
                    assert (await response.read()).startswith(b"\x89PNG")
    finally:
        stop.set()
        await asyncio.wait_for(demo, 30)
    assert not left.exists()
    assert (folder / "guidebot-demo.db").exists()

    # Afterwards, in the same folder with nothing set, `sop simulate --store` finds the demo's
    # stores and says where it looked.
    monkeypatch.delenv("GUIDEBOT_DATABASE_URL")
    args = ["sop", "simulate", "first_contact", "--store", "10", "--added-at", "2026-03-06T20:55"]
    assert await asyncio.to_thread(main, args) == 0
    out = capsys.readouterr().out
    assert "store 10 (上海南京西路店)" in out
    assert "stores from the demo's database guidebot-demo.db" in out
    assert "上海南京西路店" in out.split("time zone", 1)[1]
