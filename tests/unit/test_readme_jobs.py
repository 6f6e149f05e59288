"""README's periodic-jobs table names every job the server schedules, with its schedule."""

from __future__ import annotations

import re
from pathlib import Path

from guidebot.runtime import DECLARED_JOBS

README = Path(__file__).parents[2] / "README.md"


def _documented() -> dict[str, str]:
    rows = re.findall(r"^\| `([a-z-]+)` \| ([^|]+) \|", README.read_text(), re.MULTILINE)
    return {name: when.strip() for name, when in rows}


def test_every_periodic_job_is_in_the_readme_with_its_schedule():
    documented = _documented()
    for job in DECLARED_JOBS:
        assert job.id in documented, f"README's periodic-jobs table lacks {job.id}"
        when = documented[job.id]
        if job.every_seconds is not None:
            assert when == f"every {job.every_seconds:g} s", (job.id, when)
        else:
            minute, hour, *_ = job.cron.split()
            expected = "hourly" if hour == "*" else f"{int(hour):02d}:{int(minute):02d} daily"
            assert when == expected, (job.id, when)
