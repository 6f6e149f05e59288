"""The simulated corp: address book, customers, relations and every WeCom rule, in memory.

No aiohttp here. :class:`SimState` is one corp: ``core`` holds its records and what every rule
reads (time, call log, faults, rate limits, tokens, address book, who follows whom); each other
module adds the rules of one WeCom area on top of it (contacts and welcome codes, corp tags, mass
sends, transfers, app messages and media, statistics, customer groups, Moments). The records
themselves live in guidebot.wecom.simulator.records, the error answers in
guidebot.wecom.simulator.errors.
"""

from __future__ import annotations

from .contacts import ContactsState
from .groups import GroupsState
from .masssend import MassSendState
from .messages import MessagesState
from .moments import MomentsState
from .stats import StatsState
from .tags import CorpTagsState
from .transfers import TransfersState

__all__ = ["SimState"]


class SimState(
    ContactsState,
    CorpTagsState,
    MassSendState,
    TransfersState,
    MessagesState,
    StatsState,
    GroupsState,
    MomentsState,
):
    """One simulated corp. Several can live in one process; nothing is shared."""
