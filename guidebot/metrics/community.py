"""Orders through group-send and Moments links: their links name no customer, so only a browser
can carry the customer to them.

A browser that opens a link naming a customer is tied to that customer
(`content_visitor_customers`, guidebot.content.opens). The same browser's open of a link a
community step minted (`content_opens.via`: `group:<send>` for a group mass send, `moment:<send>`
for a Moments post) is then the customer's own touch, credited to the guide the link names
(the groups' owner, the guide who posted). `community_open` finds the latest such open inside
the attribution window before the order was paid, under two rules that keep it honest:

* the tie must be known by the time the order was paid (first_at ≤ paid_at): which browser was
  whose is read as of that instant, so attributing an order again gives the same answer,
  whatever was learnt later; the personal link may have been opened before or after the group
  or Moments link, as long as both were before the order;
* a browser tied to more than one customer by then (a family's tablet, a shop's counter
  phone) is shared: it ties nobody.

How this touch ranks against the others (a forward to the customer, their open of a personal
link, a forward into a group they were in) is guidebot.metrics.orders' `attribute_order`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import desc, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.content.models import ContentOpen, ContentVisitorCustomer
from guidebot.metrics.models import Attribution

GROUP_VIA, MOMENT_VIA = "group:", "moment:"


def rule_of(via: str) -> str:
    """The attribution an open of this community link gives: group or moments."""
    return Attribution.GROUP if via.startswith(GROUP_VIA) else Attribution.MOMENTS


async def tied_browsers(session: AsyncSession, customer: str, at: datetime) -> list[str]:
    """The browsers tied to this customer alone as of `at`."""
    tied = select(ContentVisitorCustomer.visitor_key).where(
        ContentVisitorCustomer.external_userid == customer,
        ContentVisitorCustomer.first_at <= at,
    )
    shared = (
        select(ContentVisitorCustomer.visitor_key)
        .where(
            ContentVisitorCustomer.visitor_key.in_(tied),
            ContentVisitorCustomer.first_at <= at,
        )
        .group_by(ContentVisitorCustomer.visitor_key)
        .having(func.count() > 1)
    )
    return list(
        await session.scalars(tied.where(ContentVisitorCustomer.visitor_key.not_in(shared)))
    )


async def community_open(
    session: AsyncSession, customer: str, since: datetime, paid_at: datetime
) -> Any:
    """(id, guide_userid, opened_at, via) of the latest open of a group-send or Moments link
    in a browser tied to the customer alone, in [since, paid_at]; None if there is none."""
    browsers = await tied_browsers(session, customer, paid_at)
    if not browsers:
        return None
    return (
        await session.execute(
            select(ContentOpen.id, ContentOpen.guide_userid, ContentOpen.opened_at, ContentOpen.via)
            .where(
                ContentOpen.visitor_key.in_(browsers),
                or_(ContentOpen.via.startswith(GROUP_VIA), ContentOpen.via.startswith(MOMENT_VIA)),
                ContentOpen.opened_at >= since,
                ContentOpen.opened_at <= paid_at,
            )
            .order_by(desc(ContentOpen.opened_at), desc(ContentOpen.id))
            .limit(1)
        )
    ).first()


__all__ = ["GROUP_VIA", "MOMENT_VIA", "community_open", "rule_of", "tied_browsers"]
