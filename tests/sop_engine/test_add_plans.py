"""Every statement of an add reads by a key, never through the rows that are waiting.

At a livestream's rate the tables an add writes grow by the thousand a minute, and the day-1,
3 and 7 tasks of every new customer stay pending for days. A statement whose plan walks the
pending rows costs more with every add: the welcome then falls behind minute by minute (README,
Benchmarks: welcome). SQLite, which guidebot never asks to gather statistics, picks an index by
its shape and not by what it holds, so this test asks SQLite for the plan of every statement
of an add, from the callback's claim to the welcome's outcome, and looks for a search that
narrows by a status alone.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import event

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
    "WHERE inbox_events.status = ? AND inbox_events.lease_until < ?",
    "WHERE sop_tasks.status = ? AND sop_tasks.lease_until < ?",
)


async def test_no_statement_of_an_add_walks_the_waiting_rows(h):
    if h.sessions.kw["bind"].dialect.name != "sqlite":
        pytest.skip("PostgreSQL plans by its statistics; the rule is about SQLite's")
    # Three adds at once: their welcomes go through the lane together, as in a burst (a
    # statement's plan may change with the number of ids it names).
    customers = ["wmc7", "wmc8", "wmc9"]
    for ext in customers:
        await h.control("customers", {"external_userid": ext, "name": f"顾客{ext[-1]}"})
        await h.act(
            "contact/add",
            {"userid": "g1", "external_userid": ext, "welcome_code": True},
            drain=False,
        )
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
    assert sorted(w["external_userid"] for w in await h.welcomes()) == customers
    assert any("FROM sop_tasks" in s for s in seen), "the welcome's own statements were seen"

    walking = []
    async with engine.connect() as connection:
        for statement, parameters in seen.items():
            if any(walk in " ".join(statement.split()) for walk in OWN_WALKS):
                continue
            plan = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            steps = [row[3] for row in plan]
            walking += [
                (step, " ".join(statement.split()))
                for step in steps
                if BY_STATUS_ALONE.search(step)
            ]
    assert not walking, "\n\n".join(f"{step}\n  in {sql}" for step, sql in walking)
