"""Opens of tracked links, their unique visitors, and the browsers tied to a customer.

* An open is logged for every genuine request (`log_open`); its visitor is the customer the
  link names, else the browser's signed visitor id (guidebot.content.links), else nobody
  known. The first open of an item by a visitor is a unique open (`content_open_visitors`);
  one client's burst of new visitors is capped.
* A browser that had no visitor id is given one and sent back once (`?seen=<ref>` naming the
  open just logged, guidebot.web.links): when it comes back with the id, that open and its
  unique visit become the visitor's (`record_visitor`).
* A browser (a verified visitor id) that opens a link naming a customer is tied to that
  customer (`tie_visitor`, `content_visitor_customers`), whenever it happens: its opens of
  group-send and Moments links, which name nobody, can then count for the customer when an
  order is attributed (guidebot.metrics.community).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.directory import store_at
from guidebot.content.links import LinkClaims
from guidebot.content.models import ContentOpen, ContentOpenVisitor, ContentVisitorCustomer
from guidebot.db.engine import upsert_insert
from guidebot.events import ContentOpened, publish

log = logging.getLogger(__name__)

# A client (one address) adds at most this many unique visitors of one item in the window; its
# further new visitors' opens still count as opens.
VISITOR_BURST = 20
VISITOR_BURST_WINDOW = timedelta(minutes=10)
UNKNOWN_VISITOR = "u:"


def visitor_key(claims: LinkClaims, visitor: str | None) -> str:
    """Who opened: the customer the link names, else the browser's signed visitor id (its hash;
    one visitor whichever guide's link they open), else nobody known (UNKNOWN_VISITOR)."""
    if claims.customer:
        return f"c:{claims.customer}"
    if visitor:
        return browser_key(visitor)
    return UNKNOWN_VISITOR


def browser_key(visitor: str) -> str:
    """A browser's key in the opens and ties: a hash of its verified visitor id."""
    return "v:" + hashlib.sha256(visitor.encode()).hexdigest()[:32]


async def _first_visit(
    session: AsyncSession,
    claims: LinkClaims,
    key: str,
    *,
    now: datetime,
    store_id: int | None,
    client: str | None,
) -> bool:
    """Write the (item, visitor) row unless it exists or the client's burst is spent; True when
    written: a unique open."""
    if key == UNKNOWN_VISITOR:
        return False
    if not key.startswith("c:") and client is not None:
        recent = await session.scalar(
            select(func.count()).where(
                ContentOpenVisitor.item_id == claims.item_id,
                ContentOpenVisitor.client_tag == client,
                ContentOpenVisitor.first_opened_at > now - VISITOR_BURST_WINDOW,
            )
        )
        if recent >= VISITOR_BURST:
            log.info("tracked link: a client's new visitors of item %s are capped", claims.item_id)
            return False
    insert = upsert_insert(session.bind.dialect.name)
    written = await session.execute(
        insert(ContentOpenVisitor)
        .values(
            item_id=claims.item_id,
            visitor_key=key,
            guide_userid=claims.guide,
            external_userid=claims.customer,
            store_id=store_id,
            first_opened_at=now,
            client_tag=None if key.startswith("c:") else client,
            chat_id=claims.chat_id,
        )
        .on_conflict_do_nothing(index_elements=["item_id", "visitor_key"])
    )
    return written.rowcount == 1


async def log_open(
    session: AsyncSession,
    claims: LinkClaims,
    *,
    now: datetime,
    user_agent: str | None,
    visitor: str | None = None,
    client: str | None = None,
) -> tuple[int, bool]:
    """Log an open of a genuine link: (the open's id, True when it is this visitor's first
    open of the item, a unique open). `visitor` is a verified visitor id
    (links.verify_visitor), `client` the client's links.client_tag; without a customer or a
    visitor id the open has no visitor. A customer's open is announced (ContentOpened) for
    the `content.opened` goals, and ties the browser to them (`tie_visitor`)."""
    key = visitor_key(claims, visitor)
    store_id = await store_at(session, claims.guide, now)
    first = await _first_visit(session, claims, key, now=now, store_id=store_id, client=client)
    agent = hashlib.sha256(user_agent.encode()).hexdigest() if user_agent else None
    row = ContentOpen(
        item_id=claims.item_id,
        guide_userid=claims.guide,
        external_userid=claims.customer,
        store_id=store_id,
        task_id=claims.task_id,
        step=claims.step,
        mass_send_id=claims.mass_send_id,
        via=claims.via,
        link_nonce=claims.nonce,
        chat_id=claims.chat_id,
        issued_at=claims.issued_at,
        opened_at=now,
        user_agent_hash=agent,
        visitor_key=key,
        first=first,
    )
    session.add(row)
    await session.flush()
    if claims.customer is not None:
        if visitor is not None:
            await tie_visitor(session, visitor, claims.customer, now)
        await publish(
            session,
            ContentOpened(
                guide_userid=claims.guide,
                external_userid=claims.customer,
                item_id=claims.item_id,
                link_nonce=claims.nonce,
                task_id=claims.task_id,
                at=now,
                now=now,
            ),
        )
    return row.id, first


async def record_open(
    session: AsyncSession,
    claims: LinkClaims,
    *,
    now: datetime,
    user_agent: str | None,
    visitor: str | None = None,
    client: str | None = None,
) -> bool:
    """`log_open`, answering only whether it was a unique open."""
    _, first = await log_open(
        session, claims, now=now, user_agent=user_agent, visitor=visitor, client=client
    )
    return first


async def record_visitor(
    session: AsyncSession,
    claims: LinkClaims,
    *,
    now: datetime,
    visitor: str,
    client: str | None,
    open_id: int | None = None,
) -> bool:
    """A browser came back with the visitor id it was just given, from an open already logged
    without one (`open_id`, when the redirect named it): that open was this visitor's. True
    when it is their first of the item."""
    key = visitor_key(claims, visitor)
    store_id = await store_at(session, claims.guide, now)
    first = await _first_visit(session, claims, key, now=now, store_id=store_id, client=client)
    if open_id is not None:
        await session.execute(
            update(ContentOpen)
            .where(
                ContentOpen.id == open_id,
                ContentOpen.link_nonce == claims.nonce,
                ContentOpen.visitor_key == UNKNOWN_VISITOR,
            )
            .values(visitor_key=key, first=first)
            .execution_options(synchronize_session=False)
        )
    return first


async def tie_visitor(session: AsyncSession, visitor: str, customer: str, now: datetime) -> None:
    """This browser (a verified visitor id) opened a link naming this customer."""
    key = browser_key(visitor)
    insert = upsert_insert(session.bind.dialect.name)
    statement = insert(ContentVisitorCustomer).values(
        visitor_key=key, external_userid=customer, first_at=now, last_at=now
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["visitor_key", "external_userid"],
            set_={"last_at": statement.excluded.last_at},
            where=ContentVisitorCustomer.last_at < statement.excluded.last_at,
        )
    )


__all__ = [
    "UNKNOWN_VISITOR",
    "VISITOR_BURST",
    "VISITOR_BURST_WINDOW",
    "browser_key",
    "log_open",
    "record_open",
    "record_visitor",
    "tie_visitor",
    "visitor_key",
]
