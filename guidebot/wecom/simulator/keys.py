"""Typed application keys shared by the simulator's API, control API and app factory."""

from __future__ import annotations

import asyncio

from aiohttp import web

from .delivery import CallbackDeliverer
from .state import SimState

SIMULATOR_STATE = web.AppKey("simulator_state", SimState)
DELIVERER = web.AppKey("simulator_deliverer", CallbackDeliverer)
# Set when the app shuts down, so API calls hung by a "timeout" fault end with it.
CLOSING = web.AppKey("simulator_closing", asyncio.Event)
