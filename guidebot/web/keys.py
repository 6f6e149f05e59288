"""Typed application keys: the resources every handler may ask the Application for."""

from __future__ import annotations

from aiohttp import ClientSession, web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from guidebot.clock import Clock
from guidebot.config import Settings
from guidebot.intake.inbox import InboxWriter
from guidebot.intake.worker import InboxWorker
from guidebot.runtime import Runtime
from guidebot.sop.context import SopRuntime
from guidebot.telemetry import Telemetry
from guidebot.web.throttle import AttemptLimit, LoginThrottle, SignInGate
from guidebot.wecom.client import WeComClient
from guidebot.wecom.crypto import CallbackCrypto

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Clock)
TELEMETRY = web.AppKey("telemetry", Telemetry)
CRYPTO = web.AppKey("crypto", CallbackCrypto)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
HTTP = web.AppKey("http", ClientSession)
WECOM = web.AppKey("wecom", WeComClient)
INBOX = web.AppKey("inbox", InboxWriter)
INBOX_WORKER = web.AppKey("inbox_worker", InboxWorker)
SOP = web.AppKey("sop", SopRuntime)
RUNTIME = web.AppKey("runtime", Runtime)  # every resource above it, built once (guidebot.runtime)
LOGIN_THROTTLE = web.AppKey("login_throttle", LoginThrottle)
OAUTH_LIMIT = web.AppKey("oauth_limit", AttemptLimit)  # WeCom OAuth exchanges per address
SIGN_IN_GATE = web.AppKey("sign_in_gate", SignInGate)
