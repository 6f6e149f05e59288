"""README's periodic-jobs table names every job the server schedules, with its schedule."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from guidebot.app import periodic_jobs
from guidebot.clock import FakeClock
from tests.support import make_settings

README = Path(__file__).parents[2] / "README.md"


class _App(dict):
    """Just enough of an Application for periodic_jobs to read its resources from."""


def _documented() -> dict[str, str]:
    rows = re.findall(r"^\| `([a-z-]+)` \| ([^|]+) \|", README.read_text(), re.MULTILINE)
    return {name: when.strip() for name, when in rows}


def test_every_periodic_job_is_in_the_readme_with_its_schedule(tmp_path):
    from guidebot.web import keys

    app = _App()
    app[keys.SESSIONS] = app[keys.WECOM] = app[keys.SOP] = None
    app[keys.CLOCK] = FakeClock(datetime(2026, 11, 22, tzinfo=UTC))
    app[keys.SETTINGS] = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    documented = _documented()
    for job in periodic_jobs(app):
        assert job.id in documented, f"README's periodic-jobs table lacks {job.id}"
        when = documented[job.id]
        if job.every_seconds is not None:
            assert when == f"every {job.every_seconds:g} s", (job.id, when)
        else:
            minute, hour, *_ = job.cron.split()
            expected = "hourly" if hour == "*" else f"{int(hour):02d}:{int(minute):02d} daily"
            assert when == expected, (job.id, when)
