"""Read-side queries the faces call (the API, the admin pages, the sidebar): customers, guides
and stores. Each guide's and store's active customers are read from the counts that triggers
keep in the transaction of each relation's change (`guide_customer_counts`, migration 0028),
so they cannot drift from the relations; everything else is counted from the rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, func, or_, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts import grams, word_index
from guidebot.contacts.directory import require_store
from guidebot.contacts.errors import Invalid, NotFound
from guidebot.contacts.models import (
    NO_STORE,
    Customer,
    Department,
    Guide,
    GuideCustomerCount,
    GuideStatus,
    Relation,
    RelationEvent,
    RelationStatus,
    StoreMembership,
)
from guidebot.contacts.tags import has_tag


@dataclass(frozen=True, slots=True)
class CustomerPage:
    customers: list[Customer]
    relations: dict[str, list[Relation]]
    total: int
    page: int
    per_page: int
    more: bool = False  # more than `total` match (a count that stopped: count_up_to)
    has_next: bool = False  # a later page has customers


@dataclass(frozen=True, slots=True)
class CustomerDetail:
    customer: Customer
    relations: list[Relation]
    timeline: list[RelationEvent]


@dataclass(frozen=True, slots=True)
class GuideView:
    guide: Guide
    stores: list[Department]  # current store memberships, main department first
    active_customers: int


@dataclass(frozen=True, slots=True)
class StoreView:
    store: Department
    region: Department | None
    guides: int  # active guides with a current membership
    active_customers: int  # active relations attributed to the store


async def _relations_of(session: AsyncSession, ids: list[str]) -> dict[str, list[Relation]]:
    found: dict[str, list[Relation]] = defaultdict(list)
    if ids:
        for relation in await session.scalars(
            select(Relation)
            .where(Relation.external_userid.in_(ids))
            .order_by(Relation.external_userid, Relation.id)
        ):
            found[relation.external_userid].append(relation)
    return found


# The count the lists show (HQ's customer page, the API's `total`) stops here: beyond it they say
# "more than 10,000". Counting every customer took seconds at two million and grew with the brand.
COUNT_UP_TO = 10_000

# A matching set this small is gathered and sorted; a bigger one is read newest first from
# ix_customers_newest, each customer looked up, until the page is full: soon, when so many match.
SORTED_UP_TO = 10_000


async def search_customers(
    session: AsyncSession,
    *,
    guide: str | None = None,
    store: str | None = None,
    stores: Collection[int] | None = None,
    status: str | None = None,
    channel: str | None = None,
    tag: str | None = None,
    words: str | None = None,
    related_only: bool = False,
    order: str = "newest",
    page: int = 1,
    per_page: int = 50,
    count_up_to: int | None = None,
) -> CustomerPage:
    """The one customer search (the API, the admin page, the sidebar, the bot): customers with
    at least one relation matching every given relation filter, and with `words` in their name,
    their external_userid (three characters or more), or the remark of such a relation (what a
    guide calls them); newest first, or by name (`order="name"`).

    `store` is a code or department id (an unknown one is Invalid); `stores` narrows to
    relations attributed to those department ids (a manager's); `tag` to relations with that
    corp tag, by id or by name (guidebot.contacts.tags). Without any relation filter
    every customer matches, unless `related_only` asks for customers with some relation.

    With `count_up_to`, `total` counts no further: more matches than that give `total ==
    count_up_to` and `more`, and cost no more than that many (HQ's list of every customer)."""
    conditions = await _relation_conditions(
        session, guide=guide, store=store, stores=stores, status=status, channel=channel, tag=tag
    )
    query = select(Customer)
    if words:
        query = query.where(await _with_words(session, words, conditions))
    related = bool(conditions) or related_only
    # Customers with a matching relation: SQLite's planner lists the relations' customers
    # once for IN and looks each customer up for EXISTS; the latter with no conditions (it
    # would list every relation) and when customers are read in the index's order.
    listed = Customer.external_userid.in_(select(Relation.external_userid).where(*conditions))
    looked_up = exists().where(Relation.external_userid == Customer.external_userid, *conditions)
    counted = query.with_only_columns(Customer.external_userid)
    if related:
        counted = counted.where(listed if conditions else looked_up)
    if count_up_to is not None:
        counted = counted.limit(count_up_to + 1)
    total = await session.scalar(select(func.count()).select_from(counted.subquery())) or 0
    more = count_up_to is not None and total > count_up_to
    if more:
        total = count_up_to or 0
    if order == "name":
        ordering: tuple[Any, ...] = (Customer.name, Customer.external_userid)
    elif total <= SORTED_UP_TO and not more:
        # Gathered, then sorted: an expression no index holds keeps the planner from walking
        # every customer newest first to find a few (those of a guide who has hardly any).
        newest = func.coalesce(Customer.created_at, Customer.created_at).desc()
        ordering = (newest, Customer.external_userid)
    else:
        ordering = (Customer.created_at.desc(), Customer.external_userid)
        listed = looked_up
    if related:
        query = query.where(listed if conditions else looked_up)
    rows: list[Customer] = []
    if total:
        paged = query.order_by(*ordering).offset((page - 1) * per_page).limit(per_page + 1)
        rows = list(await session.scalars(paged))
    customers = rows[:per_page]
    relations = await _relations_of(session, [c.external_userid for c in customers])
    return CustomerPage(
        customers, relations, total, page, per_page, more=more, has_next=len(rows) > per_page
    )


async def _relation_conditions(
    session: AsyncSession,
    *,
    guide: str | None,
    store: str | None,
    stores: Collection[int] | None,
    status: str | None,
    channel: str | None,
    tag: str | None,
) -> list[Any]:
    conditions: list[Any] = []
    if status is not None:
        if status not in RelationStatus.ALL:
            raise Invalid(f"status must be one of {', '.join(RelationStatus.ALL)}, got {status!r}")
        conditions.append(Relation.status == status)
    if guide is not None:
        if await session.get(Guide, guide) is None:
            raise Invalid(f"unknown guide {guide!r}")
        conditions.append(Relation.guide_userid == guide)
    if store is not None:
        found = await require_store(session, store)
        conditions.append(Relation.store_id == found.id)
    if stores is not None:
        conditions.append(Relation.store_id.in_(sorted(stores)))
    if channel is not None:
        conditions.append(Relation.channel == channel)
    if tag is not None:
        conditions.append(has_tag(session.bind.dialect.name, tag))
    return conditions


async def _with_words(session: AsyncSession, words: str, conditions: list[Any]) -> Any:
    """Customers with `words` in their name or id, or in the remark of a relation matching
    `conditions`; a word of one or two characters in their name or a remark only (a piece
    that short of WeCom's opaque ids is in a large share of them: migration 0032).

    Three characters or more: a union of one look per column, each from its own index
    (PostgreSQL's trigram indexes, migration 0026; SQLite's FTS5 indexes, which only narrow
    what LIKE then checks: guidebot.contacts.word_index). One or two: a union of the customers
    and the remarks found in the indexes of one- and two-character pieces (migration 0030,
    guidebot.contacts.grams), unless the word is so common that checking each customer read
    in place is the cheaper: reading then stops as soon as the page and the count have what
    they need (a union would first find every match)."""
    words = words.replace("%", "").replace("_", "")
    like = f"%{words}%"
    by_remark = [*conditions, Relation.remark.ilike(like)]
    if len(words) < word_index.INDEXED_FROM:
        found = await grams.lookup(session, words, conditions, count_up_to=COUNT_UP_TO)
        if found is not None:
            return found
        remarked = exists().where(Relation.external_userid == Customer.external_userid, *by_remark)
        return or_(Customer.name.ilike(like), remarked)
    # ILIKE as PostgreSQL's trigram index of ids holds it (migration 0031): lower() of both.
    by_id = func.lower(Customer.external_userid).like(func.lower(like))
    if await word_index.available(session):
        by_name = or_(Customer.name.ilike(like), by_id)
        found = union(
            select(Customer.external_userid).where(
                Customer.external_userid.in_(word_index.customers_with(words)), by_name
            ),
            select(Relation.external_userid).where(
                Relation.id.in_(word_index.remarks_with(words)), *by_remark
            ),
        )
    else:
        found = union(
            select(Customer.external_userid).where(Customer.name.ilike(like)),
            select(Customer.external_userid).where(by_id),
            select(Relation.external_userid).where(*by_remark),
        )
    return Customer.external_userid.in_(found)


async def get_customer(session: AsyncSession, external_userid: str) -> CustomerDetail:
    customer = await session.get(Customer, external_userid)
    if customer is None:
        raise NotFound(f"no customer {external_userid!r}")
    relations = (await _relations_of(session, [external_userid]))[external_userid]
    timeline = list(
        await session.scalars(
            select(RelationEvent)
            .where(RelationEvent.external_userid == external_userid)
            .order_by(RelationEvent.occurred_at, RelationEvent.id)
        )
    )
    return CustomerDetail(customer, relations, timeline)


async def _active_customers_by(
    session: AsyncSession, key: str, stores: Collection[int] | None = None
) -> dict[Any, int]:
    """Active relations per guide (`key="guide"`) or per store (None: attributed to none),
    read from the counts the triggers keep (`guide_customer_counts`): never a count of every
    relation."""
    column = GuideCustomerCount.guide_userid if key == "guide" else GuideCustomerCount.store_id
    query = select(column, func.sum(GuideCustomerCount.active))
    if stores is not None:
        query = query.where(GuideCustomerCount.store_id.in_(sorted(stores)))
    rows = await session.execute(query.group_by(column))
    return {(None if key == "store" and k == NO_STORE else k): int(n) for k, n in rows}


async def list_guides(
    session: AsyncSession,
    *,
    status: str | None = None,
    store: str | None = None,
    count_stores: Collection[int] | None = None,
) -> list[GuideView]:
    """Guides with their current stores and active customers; with `count_stores`, only the
    customers whose relation belongs to one of those stores (a manager's: not those a guide
    brought from a former store)."""
    if status is not None and status not in (GuideStatus.ACTIVE, GuideStatus.LEFT):
        raise Invalid(f"status must be active or left, got {status!r}")
    query = select(Guide).order_by(Guide.userid)
    if status is not None:
        query = query.where(Guide.status == status)
    if store is not None:
        found = await require_store(session, store)
        query = query.where(
            Guide.userid.in_(
                select(StoreMembership.guide_userid).where(
                    StoreMembership.store_id == found.id, StoreMembership.valid_to.is_(None)
                )
            )
        )
    guides = list(await session.scalars(query))
    current: dict[str, list[Department]] = defaultdict(list)
    rows = await session.execute(
        select(StoreMembership.guide_userid, Department)
        .join(Department, Department.id == StoreMembership.store_id)
        .where(StoreMembership.valid_to.is_(None), Department.is_store.is_(True))
        .order_by(StoreMembership.guide_userid, Department.id)
    )
    for userid, dept in rows:
        current[userid].append(dept)
    counts = await _active_customers_by(session, "guide", count_stores)
    views = []
    for guide in guides:
        stores = sorted(current[guide.userid], key=lambda d: d.id != guide.main_department)
        views.append(GuideView(guide, stores, counts.get(guide.userid, 0)))
    return views


async def list_stores(session: AsyncSession) -> list[StoreView]:
    departments = {d.id: d for d in await session.scalars(select(Department))}
    guide_counts = dict(
        (
            await session.execute(
                select(StoreMembership.store_id, func.count(func.distinct(Guide.userid)))
                .join(Guide, Guide.userid == StoreMembership.guide_userid)
                .where(StoreMembership.valid_to.is_(None), Guide.status == GuideStatus.ACTIVE)
                .group_by(StoreMembership.store_id)
            )
        ).all()
    )
    customers = await _active_customers_by(session, "store")
    stores = sorted(
        (d for d in departments.values() if d.is_store and d.deleted_at is None),
        key=lambda d: (d.sort_order, d.id),
    )
    return [
        StoreView(
            store,
            departments.get(store.parent_id) if store.parent_id else None,
            guide_counts.get(store.id, 0),
            customers.get(store.id, 0),
        )
        for store in stores
    ]


async def active_guides(session: AsyncSession, *, limit: int = 200) -> list[Guide]:
    return list(
        await session.scalars(
            select(Guide)
            .where(Guide.status == GuideStatus.ACTIVE)
            .order_by(Guide.userid)
            .limit(limit)
        )
    )


async def relation_between(session: AsyncSession, guide: str, customer: str) -> Relation | None:
    """The guide's relation with the customer, whatever its status."""
    return await session.scalar(
        select(Relation).where(Relation.guide_userid == guide, Relation.external_userid == customer)
    )


async def is_active_customer(session: AsyncSession, guide: str, customer: str) -> bool:
    relation = await session.scalar(
        select(Relation.id).where(
            Relation.guide_userid == guide,
            Relation.external_userid == customer,
            Relation.status == RelationStatus.ACTIVE,
        )
    )
    return relation is not None
