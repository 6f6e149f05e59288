"""The content and bot tests' harness: tests/harness.py with content's helpers.

The corp of tests/harness.py (stores 张江店 (g1, g3) and 徐汇店 (g2), customers wmc1-3).
Playbooks are off (an empty GUIDEBOT_SOP_DIR) so only what a test sets up happens; tasks are
rows from tests/factories.py.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from guidebot.clock import FakeClock
from guidebot.content.models import ContentForward, ContentOpen, ContentOpenVisitor
from guidebot.sop.models import SopEnrollment, SopTask
from tests import factories
from tests.contacts.conftest import ContactsHarness
from tests.harness import START
from tests.harness import start_harness as start_any_harness

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
    b"\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)


class ContentHarness(ContactsHarness):
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
            enrollment = enrollment or factories.enrollment(
                guide, ext, "follow_up_7d", now, settings={"name": "7 天回访"}
            )
            session.add(enrollment)
            await session.flush()
            task = factories.task(
                enrollment,
                step,
                now,
                action="guide_task",
                content=content,
                due_at=now + due_in,
                status=status,
            )
            session.add(task)
            await session.flush()
            return task.id

    async def get_task(self, task_id: int) -> SopTask:
        async with self.sessions() as session:
            return await session.get(SopTask, task_id)


async def start_harness(
    aiohttp_client, database_url: str, clock: FakeClock, tmp_path, **settings: Any
) -> ContentHarness:
    """The harness with no playbooks, and tracked links on http://guidebot.test."""
    sop_dir = tmp_path / "no-playbooks"
    sop_dir.mkdir(exist_ok=True)
    settings.setdefault("public_url", "http://guidebot.test")
    return await start_any_harness(
        aiohttp_client, database_url, clock, kind=ContentHarness, sop_dir=sop_dir, **settings
    )


__all__ = ["PNG", "START", "ContentHarness", "start_harness"]
