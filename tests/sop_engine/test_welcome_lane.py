"""Welcomes of adds that commit together go together (guidebot.sop.welcome_lane).

A burst of adds, as a livestream brings: each welcome is sent once, within its code's life, and
the welcomes share their batches (one write of the outcomes for many tasks) instead of
transactions of their own; the adds inserted them claimed, so the lane claims none itself.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import event

WELCOME = "externalcontact/send_welcome_msg"


async def test_a_burst_of_adds_is_welcomed_once_each_in_shared_batches(h):
    customers = [f"wmc{i}" for i in range(1, 25)]
    for ext in customers[3:]:  # wmc1..wmc3 are seeded by the harness
        await h.control("customers", {"external_userid": ext, "name": f"顾客{ext[3:]}"})
    guides = ("g1", "g2", "g3")
    for n, ext in enumerate(customers):
        await h.control(
            "contact/add",
            {"userid": guides[n % 3], "external_userid": ext, "welcome_code": True},
        )

    claims: list[int] = []
    outcomes: list[int] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        # On SQLite the claim names its rows by id (`UPDATE sop_tasks NOT INDEXED SET ...`).
        task_update = statement.startswith(
            ("UPDATE sop_tasks SET", "UPDATE sop_tasks NOT INDEXED SET")
        )
        if task_update and "SET status=" in statement and "RETURNING" in statement:
            claims.append(1)
        if task_update and "completed_by=" in statement:  # a batch's outcomes, written at once
            outcomes.append(1)

    engine = h.sessions.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        await h.drain()
    finally:
        event.remove(engine, "before_cursor_execute", count)

    calls = await h.calls(WELCOME)
    assert {(c.get("answer") or {}).get("errcode") for c in calls} == {0}
    codes = Counter(c["body"]["welcome_code"] for c in calls)
    assert len(codes) == len(customers) and set(codes.values()) == {1}
    welcomed = Counter(w["external_userid"] for w in await h.welcomes())
    assert welcomed == Counter(customers)
    assert {t.status for t in await h.tasks(step_id="welcome")} == {"sent"}
    # Shared: far fewer batches than welcomes (a transaction each before the lane), and no
    # claim of the lane's own: each add inserted its welcome claimed for it.
    assert 1 <= len(outcomes) < len(customers) // 2, len(outcomes)
    assert claims == []


async def test_a_welcome_sent_while_the_database_drops_is_still_marked_sent(h):
    """WeCom took the welcome, then the write of its outcome met a dropped connection (the
    database restarting): the outcome is written again once the database answers, so the task
    ends `sent`, not stuck in `sending` for ever, and the customer is welcomed once."""
    from sqlalchemy.exc import OperationalError

    dropped: list[str] = []

    def drop_the_first_outcome(conn, cursor, statement, parameters, context, executemany):
        # The outcome's write: the one statement that sets who completed the task.
        settling = (
            statement.startswith("UPDATE sop_tasks SET status=") and "completed_by" in statement
        )
        if settling and len(dropped) < 2:
            dropped.append(statement)
            raise OperationalError(statement, parameters, ConnectionResetError("server closed"))

    await h.control(
        "contact/add", {"userid": "g1", "external_userid": "wmc1", "welcome_code": True}
    )
    engine = h.sessions.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", drop_the_first_outcome)
    try:
        await h.drain()
    finally:
        event.remove(engine, "before_cursor_execute", drop_the_first_outcome)

    assert len(dropped) == 2  # two tries met the outage; the third got through
    assert [w["external_userid"] for w in await h.welcomes()] == ["wmc1"]
    [task] = await h.tasks(step_id="welcome")
    assert task.status == "sent"
    assert h.clock.slept[-2:] == [0.5, 1.0]  # it waited on the clock between the tries
