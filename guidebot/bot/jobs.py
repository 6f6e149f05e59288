"""The bot's periodic job (JOBS, below; the runtime schedules it): queued answers sent within
WeCom's limit."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.bot.replies import flush_replies
from guidebot.clock import Clock
from guidebot.config import Settings
from guidebot.periodic import PeriodicJob
from guidebot.wecom.client import WeComClient

Sessions = async_sessionmaker[AsyncSession]


async def flush_bot_replies(
    sessions: Sessions, wecom: WeComClient, clock: Clock, settings: Settings
):
    """Send the bot's queued answers within WeCom's 30-a-minute limit per member."""
    return await flush_replies(sessions, wecom, clock, settings)


JOBS = [PeriodicJob("bot-replies", flush_bot_replies, every_seconds=10)]
