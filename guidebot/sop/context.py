"""What the SOP engine needs to run, wired once: sessions, the WeCom client, the clock, the
settings and the playbook registry, and who claims (`owner`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.clock import Clock
from guidebot.config import Settings
from guidebot.db.queue import claim_owner
from guidebot.sop.registry import PlaybookRegistry
from guidebot.sop.templates import message_environment
from guidebot.telemetry import Telemetry
from guidebot.wecom.client import WeComClient

Sessions = async_sessionmaker[AsyncSession]


@dataclass
class SopRuntime:
    """What the SOP engine runs with. guidebot.runtime builds the app's one from its
    resources (a benchmark or a test may build more, one per claimer)."""

    sessions: Sessions
    wecom: WeComClient
    clock: Clock
    settings: Settings
    registry: PlaybookRegistry  # the app's one registry (guidebot.runtime builds it)
    telemetry: Telemetry | None = None  # the app's /metrics (welcome latency)
    owner: str = field(default_factory=claim_owner)
    batch_size: int = 500
    max_batches: int = 50  # per tick: a backlog drains over several ticks, never all at once
    concurrency: int = 8  # WeCom calls in flight per tick
    _env: Any = None
    _tag_ids: dict[str, str] | None = None

    def claimer(self) -> SopRuntime:
        """This runtime under a claim identity of its own (the welcome fast path): its claims
        are then never taken for the tick's, which gives back its own stranded ones."""
        return replace(self, owner=claim_owner())

    @property
    def env(self):
        if self._env is None:
            # Compiled once per runtime; it still sees edits (auto_reload).
            self._env = message_environment(self.templates_dir)
        return self._env

    @property
    def templates_dir(self) -> Path:
        return Path(self.registry.templates_dir)

    @property
    def claim_lease(self) -> timedelta:
        """How long a claim holds before another claimer may take the row back."""
        return timedelta(seconds=self.settings.claim_lease_seconds)

    @property
    def is_postgres(self) -> bool:
        return self.sessions.kw["bind"].dialect.name == "postgresql"

    def task_url(self, task_id: int) -> str:
        return f"{self.settings.public_url}/sidebar?task={task_id}"
