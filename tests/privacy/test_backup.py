"""Backup and restore: a restored older backup never messages a customer twice."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from guidebot.app import create_app
from guidebot.backup.copy import BackupError, after_restore, restore_backup, take_backup
from guidebot.clock import FakeClock
from guidebot.sop.models import TaskStatus
from guidebot.sop.tick import tick
from guidebot.web.keys import SETTINGS, SOP
from tests import factories
from tests.harness import deploy_dir
from tests.integration.test_cli import env_for
from tests.integration.test_cli import guidebot_here as guidebot
from tests.sop_engine.conftest import FRIDAY_2055, make_harness

PLAYBOOK = """
playbook: follow_up
version: 1
trigger:
  event: customer.added
enroll:
  once_per: relation
timezone: Asia/Shanghai
send_window:
  hours: "08:00-22:30"
  days: mon-sun
max_messages_per_day: 3
steps:
  - id: welcome
    at: enroll
    action: welcome
    template: welcome.j2
    expire_after: 20s
  - id: hour1
    at: enroll + 1h
    action: guide_task
    template: follow_up_day3.j2
    expire_after: 1d
"""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(FRIDAY_2055)


@pytest.fixture
def sop_dir(tmp_path) -> Path:
    return deploy_dir(tmp_path / "deploy")


@pytest.fixture
def playbooks() -> list[str]:
    return [PLAYBOOK]


@pytest.fixture
async def h(aiohttp_client, database_url, clock, sop_dir, playbooks):
    return await make_harness(aiohttp_client, database_url, clock, sop_dir, playbooks)


async def _sent_to(h, api: str, customer: str) -> int:
    calls = await h.calls(api)
    return sum(
        1
        for c in calls
        if customer in (c["body"].get("external_userid") or [])
        or c["body"].get("welcome_code") == f"code-{customer}"
    )


async def test_a_restored_backup_sends_nothing_twice(h, aiohttp_client, database_url, tmp_path):
    await h.add("g1", "wmc1")
    await h.drain()
    [welcome] = await h.tasks(external_userid="wmc1", step_id="welcome")
    assert welcome.status == TaskStatus.SENT
    # A welcome still waiting when the backup is taken (its code lives 20 s).
    now = h.clock.now()
    async with h.sessions() as session, session.begin():
        enrollment = factories.enrollment("g2", "wmc2", "follow_up", now, store_id=12)
        session.add(enrollment)
        await session.flush()
        session.add(
            factories.task(
                enrollment,
                "welcome",
                now,
                action="welcome",
                due_at=now,
                status=TaskStatus.PENDING,
                welcome_code="code-wmc2",
                expires_at=now + timedelta(seconds=20),
            )
        )
    backup = tmp_path / "backup.db"
    await take_backup(database_url, backup, now)
    with pytest.raises(BackupError):
        await take_backup(database_url, backup, now)  # never over an existing file

    # After the backup, the hour's guide task reaches WeCom and the welcome goes out.
    await tick(h.runtime, h.clock.now())
    h.advance(timedelta(hours=1, minutes=1))
    await tick(h.runtime, h.clock.now())
    [task] = await h.tasks(external_userid="wmc1", step_id="hour1")
    assert task.status == TaskStatus.SENT
    sent_before = {
        "task": await _sent_to(h, "externalcontact/add_msg_template", "wmc1"),
        "welcome": await _sent_to(h, "externalcontact/send_welcome_msg", "wmc2"),
    }
    assert sent_before["task"] == 1

    # The disk is lost: the backup is restored; the backup shows the task pending.
    h.advance(timedelta(minutes=30))
    taken = await restore_backup(database_url, backup)
    assert taken == now
    [task] = await h.tasks(external_userid="wmc1", step_id="hour1")
    assert task.status == TaskStatus.PENDING
    report = await after_restore(h.runtime, taken, h.clock.now())
    assert (report.found_sent, report.welcomes_expired) == (1, 1)
    [task] = await h.tasks(external_userid="wmc1", step_id="hour1")
    assert task.status == TaskStatus.SENT and task.wecom_msgid
    [welcome] = await h.tasks(external_userid="wmc2", step_id="welcome")
    assert welcome.status == TaskStatus.EXPIRED and welcome.welcome_code is None

    # The server starts again and runs its ticks: nothing reaches a customer twice.
    again = await aiohttp_client(create_app(h.app[SETTINGS], clock=h.clock, run_workers=False))
    for _ in range(3):
        await tick(again.server.app[SOP], h.clock.now())
        h.advance(timedelta(minutes=10))
    assert await _sent_to(h, "externalcontact/add_msg_template", "wmc1") == sent_before["task"]
    assert await _sent_to(h, "externalcontact/send_welcome_msg", "wmc2") == sent_before["welcome"]


async def test_restore_refuses_what_is_no_backup(database_url, tmp_path):
    with pytest.raises(BackupError):
        await restore_backup(database_url, tmp_path / "missing.db")


def test_the_commands_back_up_and_restore(database_url, tmp_path):
    env = env_for(database_url)
    path = tmp_path / "guidebot.backup"
    done = guidebot("backup", str(path), env=env)
    assert done.returncode == 0, done.stderr
    assert path.stat().st_size > 0
    done = guidebot("backup", str(path), env=env)
    assert done.returncode == 1 and "already exists" in done.stderr
    done = guidebot("restore", str(path), env=env)
    assert done.returncode == 0, done.stderr
    assert "restored the backup of" in done.stdout
    done = guidebot("restore", str(tmp_path / "nothing"), env=env)
    assert done.returncode == 1 and "no such file" in done.stderr
