"""The content and bot tests' harness: guidebot and the simulated WeCom over real HTTP.

Builds on the contacts harness (tests/contacts/conftest.py: the corp with stores 张江店 (g1, g3)
and 徐汇店 (g2), customers wmc1-3) and adds content helpers. Playbooks are off (an empty
GUIDEBOT_SOP_DIR) so only what a test sets up happens; tasks are inserted as rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from guidebot.app import create_app
from guidebot.clock import FakeClock
from guidebot.content.models import ContentForward, ContentOpen, ContentOpenVisitor
from guidebot.sop.models import SopEnrollment, SopTask
from guidebot.web.keys import SETTINGS
from guidebot.web.startup import CONTACTS_STARTUP
from guidebot.wecom.simulator import SimulatorConfig, create_simulator_app
from tests.contacts.conftest import START, Harness, seed_corp
from tests.support import TEST_IDENTITY, make_settings

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
    b"\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)


def new_enrollment(
    guide: str,
    ext: str,
    playbook: str,
    now: datetime,
    *,
    settings: dict[str, Any],
    goal: str | None = None,
) -> SopEnrollment:
    """An active enrollment of the pair in store 11 (张江店), as the engine makes it."""
    return SopEnrollment(
        playbook_id=playbook,
        playbook_version=1,
        scope=guide,
        guide_userid=guide,
        external_userid=ext,
        store_id=11,
        timezone="Asia/Shanghai",
        trigger="customer.added",
        cycle="0",
        status="active",
        enrolled_at=now,
        settings=settings,
        goal_event=goal,
        goal_deadline=now + timedelta(days=3) if goal else None,
        created_at=now,
        updated_at=now,
    )


class ContentHarness(Harness):
    @property
    def settings(self):
        return self.app[SETTINGS]

    async def item(self, **fields: Any) -> dict:
        status, body = await self.api("POST", "/content", json=fields)
        assert status == 201, body
        return body

    async def forwards(self) -> list[ContentForward]:
        async with self.sessions() as session:
            return list(await session.scalars(select(ContentForward).order_by(ContentForward.id)))

    async def opens(self) -> list[ContentOpen]:
        async with self.sessions() as session:
            return list(await session.scalars(select(ContentOpen).order_by(ContentOpen.id)))

    async def visitors(self) -> list[ContentOpenVisitor]:
        async with self.sessions() as session:
            return list(
                await session.scalars(select(ContentOpenVisitor).order_by(ContentOpenVisitor.id))
            )

    async def task(
        self,
        guide: str,
        ext: str,
        *,
        due_in: timedelta = timedelta(hours=1),
        step: str = "day3",
        content: str | None = None,
        status: str = "sent",
    ) -> int:
        """A guide task row as the SOP engine leaves it once the mass-send task exists."""
        now = self.clock.now()
        async with self.sessions() as session, session.begin():
            enrollment = await session.scalar(
                select(SopEnrollment).where(
                    SopEnrollment.playbook_id == "follow_up_7d",
                    SopEnrollment.scope == guide,
                    SopEnrollment.external_userid == ext,
                    SopEnrollment.status == "active",
                )
            )
            enrollment = enrollment or new_enrollment(
                guide, ext, "follow_up_7d", now, settings={"name": "7 天回访"}
            )
            session.add(enrollment)
            await session.flush()
            task = SopTask(
                enrollment_id=enrollment.id,
                step_id=step,
                playbook_id="follow_up_7d",
                playbook_version=1,
                guide_userid=guide,
                external_userid=ext,
                action="guide_task",
                content=content,
                due_at=now + due_in,
                status=status,
                created_at=now,
                updated_at=now,
            )
            session.add(task)
            await session.flush()
            return task.id

    async def get_task(self, task_id: int) -> SopTask:
        async with self.sessions() as session:
            return await session.get(SopTask, task_id)

    async def app_messages(self, userid: str) -> list[dict]:
        response = await self.sim.get("/_sim/app_messages", params={"userid": userid})
        return (await response.json())["messages"]


async def start_harness(
    aiohttp_client, database_url: str, clock: FakeClock, tmp_path, **settings: Any
) -> ContentHarness:
    sim = await aiohttp_client(
        create_simulator_app(SimulatorConfig(identity=TEST_IDENTITY, clock=clock.time))
    )
    await seed_corp(sim)
    sop_dir = tmp_path / "no-playbooks"
    sop_dir.mkdir(exist_ok=True)
    options = dict(
        wecom_api_base=str(sim.make_url("/")).rstrip("/"),
        sop_dir=str(sop_dir),
        public_url="http://guidebot.test",
    )
    options.update(settings)
    server_kwargs = options.pop("server_kwargs", None) or {}
    app = create_app(make_settings(database_url, **options), clock=clock, run_workers=False)
    client = await aiohttp_client(app, server_kwargs=server_kwargs)
    response = await sim.post(
        "/_sim/config", json={"callback_url": str(client.make_url("/wecom/callback"))}
    )
    assert response.status == 200
    await client.server.app[CONTACTS_STARTUP]
    return ContentHarness(sim, client, clock)


def token_of(url: str) -> str:
    return url.rsplit("/r/", 1)[1]


__all__ = ["START", "ContentHarness", "datetime", "start_harness", "token_of"]
