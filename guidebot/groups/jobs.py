"""The groups package's periodic jobs and command-line actions: the customer groups synced from
WeCom nightly (after the address book, so owners are known) and at start-up
(guidebot.web.startup); `guidebot groups join-way create|list`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.clock import Clock
from guidebot.groups.joinways import create_join_way, list_join_ways
from guidebot.groups.statistic import GroupStatsReport, sync_group_stats
from guidebot.groups.sync import GroupSyncReport, sync_groups
from guidebot.periodic import PeriodicJob
from guidebot.wecom.client import WeComClient

Sessions = async_sessionmaker[AsyncSession]


async def nightly_group_sync(
    sessions: Sessions, wecom: WeComClient, clock: Clock
) -> GroupSyncReport:
    return await sync_groups(sessions, wecom, clock.now())


async def group_stats_sync(
    sessions: Sessions, wecom: WeComClient, clock: Clock
) -> GroupStatsReport:
    """WeCom's group chat statistics of every group owner up to yesterday (China days)."""
    return await sync_group_stats(sessions, wecom, clock.now())


def render_join_way(way) -> dict[str, Any]:
    return {
        "config_id": way.config_id,
        "state": way.state,
        "store_id": way.store_id,
        "channel": way.channel,
        "campaign": way.campaign,
        "chat_ids": list(way.chat_ids),
        "qr_code": way.qr_code,
    }


async def add_join_way(
    sessions: Sessions,
    wecom: WeComClient,
    clock: Clock,
    *,
    store: str,
    channel: str,
    campaign: str | None,
    chat_ids: Sequence[str],
    scene: int = 2,
    remark: str | None = None,
) -> dict[str, Any]:
    """`guidebot groups join-way create`: what to print about the new code.

    Raises guidebot.contacts.errors.ContactsError (its `reason` is one printable line)."""
    async with sessions() as session:
        way = await create_join_way(
            session,
            wecom,
            clock.now(),
            store=store,
            channel=channel,
            campaign=campaign,
            chat_ids=chat_ids,
            scene=scene,
            remark=remark,
        )
        return render_join_way(way)


async def join_ways(sessions: Sessions, *, store: str | None = None) -> list[dict[str, Any]]:
    """`guidebot groups join-way list`."""
    async with sessions() as session:
        return [render_join_way(w) for w in await list_join_ways(session, store=store)]


# In GUIDEBOT_TIMEZONE; the runtime hands each job the resources it names.
# WeCom's figures for a day are read the next morning (after behavior-sync's 06:30).
JOBS = [
    PeriodicJob("group-sync", nightly_group_sync, cron="45 2 * * *"),
    PeriodicJob("group-stats-sync", group_stats_sync, cron="40 6 * * *"),
]
