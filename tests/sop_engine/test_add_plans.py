"""Every statement of an add reads by a key, never through the rows that are waiting.

At a livestream's rate the tables an add writes grow by the thousand a minute, and the day-1,
3 and 7 tasks of every new customer stay pending for days. A statement whose plan walks the
pending rows costs more with every add: the welcome then falls behind minute by minute (README,
Benchmarks: welcome). SQLite, which guidebot never asks to gather statistics, picks an index by
its shape and not by what it holds, so this test asks SQLite for the plan of every statement
of an add, from the callback's claim to the welcome's outcome, and looks for a search that
narrows by a status alone. PostgreSQL has statistics, but not always: a new database, a
restore, or a table a livestream fills faster than autovacuum looks again. Without them its
planner takes every equality to match one row in two hundred; the second test gives it a
waiting brand and statistics taken when its tables were empty, and runs each statement.

The end of a pair (the customer deletes the guide) names the pair: guide and customer. A guide
has thousands of tasks and forwards, a customer a handful; a statement that finds the pair's
rows through the guide's index reads every row of the guide's, on every delete.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import event, text

# A plan step that finds rows by their status and nothing narrower: it reads every row in that
# status (`SEARCH t USING INDEX ix (status=?)`; with a second column, a range on it).
BY_STATUS_ALONE = re.compile(
    r"SEARCH (\w+) USING (?:COVERING )?INDEX \w+ \(status=\?(?: AND \w+[<>]\?)*\)"
)
# The queues' own claims look for what is due: walking the due rows is what they are for. Their
# reaping walks the claimed rows, at most a claim's worth.
OWN_WALKS = (
    "ORDER BY sop_tasks.due_at",
    "ORDER BY inbox_events.id",
    "ORDER BY inbox_events.next_attempt_at",  # the fresh first (guidebot.intake.claims)
    "WHERE inbox_events.status = ? AND inbox_events.lease_until < ?",
    "WHERE sop_tasks.status = ? AND sop_tasks.lease_until < ?",
)


# A plan step that finds rows of a pair's table by the guide and nothing narrower, in a
# statement that also names the customer: it reads every row of the guide's to find the pair's.
BY_GUIDE_ALONE = re.compile(
    r"SEARCH (?:sop_tasks|sop_enrollments|relations|content_forwards|relation_events) "
    r"USING (?:COVERING )?INDEX \w+ \(guide_userid=\?(?: AND \w+[<>]\?)*\)"
)
CUSTOMERS = ["wmc7", "wmc8", "wmc9"]


async def _statements_of_three_adds(h) -> dict[str, tuple]:
    """Every reading statement of three adds at once and their welcomes, with its parameters.

    Together their welcomes go through the lane as in a burst (a statement's plan may change
    with the number of ids it names)."""
    for ext in CUSTOMERS:
        await h.control("customers", {"external_userid": ext, "name": f"顾客{ext[-1]}"})
        await h.act(
            "contact/add",
            {"userid": "g1", "external_userid": ext, "welcome_code": True},
            drain=False,
        )
    seen = await _statements_of_drain(h)
    assert sorted(w["external_userid"] for w in await h.welcomes()) == CUSTOMERS
    assert any("FROM sop_tasks" in s for s in seen), "the welcome's own statements were seen"
    return seen


async def _statements_of_three_ends(h) -> dict[str, tuple]:
    """Every reading statement of the three customers deleting the guide, after their adds."""
    await _statements_of_three_adds(h)
    h.clock.advance(3600)  # a while later: their day-1 steps still wait
    for ext in CUSTOMERS:
        await h.act(
            "contact/delete_by_customer", {"userid": "g1", "external_userid": ext}, drain=False
        )
    seen = await _statements_of_drain(h)
    assert any("UPDATE sop_tasks" in s for s in seen), "the pairs' waiting tasks were closed"
    assert any("FROM content_forwards" in s for s in seen), "the lost alerts' last forward"
    return seen


async def _statements_of_drain(h) -> dict[str, tuple]:
    seen: dict[str, tuple] = {}

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "WITH")):
            seen.setdefault(statement, parameters if not executemany else parameters[0])

    engine = h.sessions.kw["bind"]
    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        await h.drain()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    return seen


async def _walks_on_sqlite(h, seen: dict[str, tuple]) -> list[tuple[str, str]]:
    """The plan steps of `seen` that walk the waiting rows or, for the pair, the guide's."""
    engine = h.sessions.kw["bind"]
    walking = []
    async with engine.connect() as connection:
        for statement, parameters in seen.items():
            sql = " ".join(statement.split())
            if any(walk in sql for walk in OWN_WALKS):
                continue
            plan = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            names_customer = "external_userid = ?" in sql
            walking += [
                (row[3], sql)
                for row in plan
                if BY_STATUS_ALONE.search(row[3])
                or (names_customer and BY_GUIDE_ALONE.search(row[3]))
            ]
    return walking


async def test_no_statement_of_an_add_walks_the_waiting_rows(h):
    if h.sessions.kw["bind"].dialect.name != "sqlite":
        pytest.skip("SQLite's plans; PostgreSQL's are the next test's")
    walking = await _walks_on_sqlite(h, await _statements_of_three_adds(h))
    assert not walking, "\n\n".join(f"{step}\n  in {sql}" for step, sql in walking)


async def test_no_statement_of_a_pairs_end_walks_the_guides_rows(h):
    if h.sessions.kw["bind"].dialect.name != "sqlite":
        pytest.skip("SQLite's plans; PostgreSQL's are the next tests'")
    walking = await _walks_on_sqlite(h, await _statements_of_three_ends(h))
    assert not walking, "\n\n".join(f"{step}\n  in {sql}" for step, sql in walking)


# The tables an add reads by key, and what a brand has waiting in them.
HOT_TABLES = ("customers", "relations", "sop_enrollments", "sop_tasks", "transfers")
WAITING = 3000
# Loaded in the database: WAITING customers of g1, each in a run of the shipped playbook with
# its day-3 and day-7 steps still to come (PostgreSQL's numbering, as an add's own rows).
WAITING_BRAND = (
    "INSERT INTO customers (external_userid, name, created_at, updated_at) "
    "SELECT 'wmwait' || n, '等待' || n, now(), now() FROM generate_series(1, :n) n",
    "INSERT INTO relations (guide_userid, external_userid, status, created_at, confirmed, "
    "store_id, tags, remark_mobiles, last_event_at, updated_at) "
    "SELECT 'g1', 'wmwait' || n, 'active', now(), true, 11, '[]', '[]', now(), now() "
    "FROM generate_series(1, :n) n",
    "INSERT INTO sop_enrollments (playbook_id, playbook_version, scope, guide_userid, "
    'external_userid, store_id, timezone, "trigger", cycle, status, enrolled_at, settings, '
    "created_at, updated_at) SELECT 'waiting', 1, 'g1', 'g1', 'wmwait' || n, 11, "
    "'Asia/Shanghai', 'customer.added', '0', 'active', now(), '{}', now(), now() "
    "FROM generate_series(1, :n) n",
    "INSERT INTO sop_tasks (enrollment_id, step_id, playbook_id, playbook_version, "
    "guide_userid, external_userid, action, due_at, status, attempts, created_at, updated_at) "
    "SELECT e.id, s.step, 'waiting', 1, 'g1', e.external_userid, 'remind', "
    "now() + interval '3 days', 'pending', 0, now(), now() "
    "FROM sop_enrollments e CROSS JOIN (VALUES ('day3'), ('day7')) AS s(step) "
    "WHERE e.playbook_id = 'waiting'",
)


def _plan_nodes(node: dict):
    yield node
    for child in node.get("Plans", ()):
        yield from _plan_nodes(child)


@pytest.mark.parametrize(
    "statements_of", [_statements_of_three_adds, _statements_of_three_ends], ids=["add", "end"]
)
async def test_on_postgresql_no_statement_walks_the_waiting_rows(h, statements_of):
    """A livestream on a new database: 3,000 customers of g1 wait for their next steps, and the
    planner's statistics are those of the empty tables (autovacuum held off meanwhile). Three
    customers add g1, or add and then delete g1."""
    engine = h.sessions.kw["bind"]
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's plans; SQLite's are the previous tests'")
    tables = ", ".join(HOT_TABLES)
    async with engine.begin() as connection:
        for table in HOT_TABLES:
            await connection.exec_driver_sql(
                f"ALTER TABLE {table} SET (autovacuum_enabled = false)"
            )
        await connection.exec_driver_sql(f"ANALYZE {tables}")
        for statement in WAITING_BRAND:
            await connection.execute(text(statement), {"n": WAITING})
    try:
        seen = await statements_of(h)
        walking = []
        async with engine.connect() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            for statement, parameters in seen.items():
                transaction = raw.transaction()
                await transaction.start()
                try:  # run, and undone: EXPLAIN ANALYZE counts the rows each step read
                    (plan,) = await raw.fetchval(
                        f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", *parameters
                    )
                finally:
                    await transaction.rollback()
                for node in _plan_nodes(plan["Plan"]):
                    thrown = node.get("Rows Removed by Filter", 0) + node.get(
                        "Rows Removed by Index Recheck", 0
                    )
                    search_index = node.get("Index Name", "").endswith(("_trgm", "_grams"))
                    if thrown > WAITING // 10 or search_index:
                        where = node.get("Index Name") or node.get("Relation Name")
                        walking.append(
                            f"{node['Node Type']} on {where}: {thrown} rows read and "
                            f"thrown away\n  in {' '.join(statement.split())}"
                        )
        assert not walking, "\n\n".join(walking)
    finally:
        async with engine.begin() as connection:
            for table in HOT_TABLES:
                await connection.exec_driver_sql(f"ALTER TABLE {table} RESET (autovacuum_enabled)")
