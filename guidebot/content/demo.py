"""Content for `guidebot demo`: the seeded library and simulated guide and customer traffic.

    async with sessions() as session, session.begin():
        await seed_demo_content(session)
    ...
    await simulate_forwards_and_opens(sessions, settings, clock, http=http, base_url=url)

The traffic goes the way real traffic does: a forward is recorded as the sidebar records it
(a minted tracked link, the forward logged once by its reference), and an open is a real
`GET /r/{token}` against the running server when `http` and `base_url` are given.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.clock import Clock
from guidebot.config import Settings
from guidebot.contacts.models import Relation, RelationStatus
from guidebot.content import links, opens, service
from guidebot.content.importer import seed_demo_content
from guidebot.content.models import ForwardVia

log = logging.getLogger(__name__)

__all__ = ["TrafficReport", "seed_demo_content", "simulate_forwards_and_opens"]

# What WeChat's in-app browser says it is (the demo's opens look like customers' phones).
WECHAT_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47"
)


class HttpClient(Protocol):
    """What the demo's opens need of an HTTP client (an aiohttp.ClientSession): `get` as an
    async context manager. The content domain itself speaks no HTTP."""

    def get(self, url: str, **options: Any) -> Any: ...


@dataclass(slots=True)
class TrafficReport:
    forwards: int = 0
    opens: int = 0
    links: list[str] = field(default_factory=list)


async def simulate_forwards_and_opens(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: Clock,
    *,
    forwards: int = 5,
    open_rate: float = 0.6,
    http: HttpClient | None = None,
    base_url: str | None = None,
    rng: random.Random | None = None,
) -> TrafficReport:
    """Guides forward random live items to random active customers; some customers open them.

    Opens go through `base_url`'s `/r/{token}` when `http` and `base_url` are given (the demo
    server), else straight into the opens log.
    """
    rng = rng or random.Random()
    report = TrafficReport()
    now = clock.now()
    async with sessions() as session:
        relations = list(
            await session.execute(
                select(Relation.guide_userid, Relation.external_userid).where(
                    Relation.status == RelationStatus.ACTIVE
                )
            )
        )
    if not relations:
        return report
    for _ in range(forwards):
        guide, customer = rng.choice(relations)
        async with sessions() as session, session.begin():
            store = await service.guide_store(session, guide, now)
            items, _ = await service.search_items(
                session,
                live_at=now,
                store_code=store.code if store else None,
                restrict_store=True,
                limit=50,
            )
            if not items:
                continue
            item = rng.choice(items)
            token, claims = links.mint(
                settings.secret_key, item_id=item.id, guide=guide, customer=customer, now=now
            )
            await service.record_forward(
                session,
                ref=f"l:{claims.nonce}",
                item_id=item.id,
                guide=guide,
                customer=customer,
                via=ForwardVia.SIDEBAR,
                sent_at=now,
                now=now,
            )
        report.forwards += 1
        report.links.append(token)
        if rng.random() >= open_rate:
            continue
        if http is not None and base_url is not None:
            url = f"{base_url.rstrip('/')}/r/{token}"
            async with http.get(
                url, headers={"User-Agent": WECHAT_UA}, allow_redirects=False
            ) as response:
                if response.status in (200, 302):
                    report.opens += 1
                else:
                    log.warning("demo open of %s answered %s", url, response.status)
        else:
            async with sessions() as session, session.begin():
                await opens.record_open(session, claims, now=now, user_agent=WECHAT_UA)
            report.opens += 1
    return report
