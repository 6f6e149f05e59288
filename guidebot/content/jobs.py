"""The periodic jobs of content (JOBS, below; the runtime schedules them).

Each takes a session factory, the WeCom client and a clock, opens its own sessions, and never
holds a transaction across a WeCom call.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.clock import Clock
from guidebot.content import masssend, service
from guidebot.periodic import PeriodicJob
from guidebot.wecom.client import WeComClient

Sessions = async_sessionmaker[AsyncSession]


async def poll_mass_sends(
    sessions: Sessions, wecom: WeComClient, clock: Clock
) -> masssend.PollReport:
    """Follow mass-send results (get_groupmsg_send_result); reconcile unknown ones."""
    return await masssend.poll_mass_sends(sessions, wecom, clock)


async def refresh_media(sessions: Sessions, wecom: WeComClient, clock: Clock) -> int:
    """Re-upload media older than 2 days so no media_id in use reaches WeCom's 3-day limit."""
    return await service.refresh_media(sessions, wecom, clock.now())


# Mass-send results, WeCom media kept fresh.
JOBS = [
    PeriodicJob("mass-sends", poll_mass_sends, every_seconds=300),
    PeriodicJob("content-media", refresh_media, every_seconds=3600),
]
