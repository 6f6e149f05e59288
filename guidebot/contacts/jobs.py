"""The contacts package's periodic jobs and command-line actions.

Each takes a session factory, the WeCom client and a clock, opens its own session and
commits; the scheduler (JOBS, below) or the CLI calls them: directory sync nightly,
reconciliation nightly after it, transfer results every 10 minutes (WeCom completes an
accepted transfer ~24 h after the request), missing profiles every profiles.EVERY_SECONDS
(adds recorded without one), WeCom's contact statistics of each guide daily at 06:30
(guidebot.contacts.behavior), customers gone quiet marked dormant and the day's counts per
lifecycle stage snapshot hourly (guidebot.contacts.lifecycle).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.clock import Clock
from guidebot.config import Settings
from guidebot.contacts import profiles
from guidebot.contacts.behavior import BehaviorReport, sync_behavior
from guidebot.contacts.directory_sync import DirectoryReport, sync_directory
from guidebot.contacts.lifecycle import mark_dormant, snapshot_stages
from guidebot.contacts.reconcile import ReconcileReport, reconcile
from guidebot.contacts.transfers import PollReport, poll_transfer_results
from guidebot.contacts.ways import create_contact_way
from guidebot.periodic import PeriodicJob
from guidebot.wecom.client import WeComClient

Sessions = async_sessionmaker[AsyncSession]

PROFILES_EVERY_SECONDS = profiles.EVERY_SECONDS
BEHAVIOR_CRON = "30 6 * * *"


async def nightly_directory_sync(
    sessions: Sessions, wecom: WeComClient, clock: Clock
) -> DirectoryReport:
    async with sessions() as session:
        report = await sync_directory(session, wecom, clock.now())
        await session.commit()
    return report


async def nightly_reconcile(
    sessions: Sessions, wecom: WeComClient, clock: Clock
) -> ReconcileReport:
    async with sessions() as session:
        return await reconcile(session, wecom, clock.now())


async def poll_transfers(sessions: Sessions, wecom: WeComClient, clock: Clock) -> PollReport:
    async with sessions() as session:
        return await poll_transfer_results(session, wecom, clock.now())


async def refetch_profiles(
    sessions: Sessions, wecom: WeComClient, clock: Clock
) -> profiles.ProfileReport:
    """Profiles of customers recorded without one (an add whose WeCom read failed)."""
    return await profiles.refetch_profiles(sessions, wecom, clock.now())


async def behavior_sync(sessions: Sessions, wecom: WeComClient, clock: Clock) -> BehaviorReport:
    """WeCom's contact statistics of every active guide up to yesterday (China days)."""
    return await sync_behavior(sessions, wecom, clock.now())


async def add_contact_way(
    sessions: Sessions,
    wecom: WeComClient,
    clock: Clock,
    *,
    store: str,
    channel: str,
    campaign: str | None,
    userids: Sequence[str],
    remark: str | None = None,
) -> dict[str, Any]:
    """`guidebot contacts add-way`: create a 「联系我」 way; what to print about it.

    Raises guidebot.contacts.errors.ContactsError (its `reason` is one printable line).
    """
    async with sessions() as session:
        way = await create_contact_way(
            session,
            wecom,
            clock.now(),
            store=store,
            channel=channel,
            campaign=campaign,
            userids=userids,
            remark=remark,
        )
    return {
        "config_id": way.config_id,
        "state": way.state,
        "store_id": way.store_id,
        "channel": way.channel,
        "campaign": way.campaign,
        "userids": way.userids,
        "qr_code": way.qr_code,
    }


# The periodic jobs, in GUIDEBOT_TIMEZONE; the runtime hands each the resources it names.
async def lifecycle_stages(sessions: Sessions, clock: Clock, settings: Settings) -> int:
    """Customers gone quiet become dormant; today's counts per stage are snapshot."""
    now = clock.now()
    moved = await mark_dormant(sessions, now, settings.dormant_days)
    async with sessions() as session, session.begin():
        await snapshot_stages(session, now.astimezone(settings.tz).date())
    return moved


JOBS = [
    PeriodicJob("directory-sync", nightly_directory_sync, cron="30 2 * * *"),
    PeriodicJob("reconcile-contacts", nightly_reconcile, cron="0 3 * * *"),
    PeriodicJob("poll-transfers", poll_transfers, every_seconds=600),
    # Adds recorded without a profile (the welcome could not wait for WeCom): fill them in,
    # after a burst of adds rather than during it (their WeCom calls can wait; welcomes cannot).
    PeriodicJob(
        "refetch-profiles", refetch_profiles, every_seconds=PROFILES_EVERY_SECONDS, gives_way=True
    ),
    # WeCom's figures of a day are complete the next morning (China time).
    PeriodicJob("behavior-sync", behavior_sync, cron=BEHAVIOR_CRON),
    # No open, reply or order for GUIDEBOT_DORMANT_DAYS: dormant; the day's counts per stage.
    PeriodicJob("lifecycle-stages", lifecycle_stages, cron="15 * * * *"),
]
