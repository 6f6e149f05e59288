"""Welcomes of adds that commit together go together (guidebot.sop.welcome_lane).

A burst of adds, as a livestream brings: each welcome is sent once, within its code's life, and
the welcomes share their claims (one `claimed` update for many tasks) instead of three
transactions each.
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

    def count_claims(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("UPDATE sop_tasks SET status=") and "RETURNING" in statement:
            claims.append(1)

    engine = h.sessions.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", count_claims)
    try:
        await h.drain()
    finally:
        event.remove(engine, "before_cursor_execute", count_claims)

    calls = await h.calls(WELCOME)
    assert {(c.get("answer") or {}).get("errcode") for c in calls} == {0}
    codes = Counter(c["body"]["welcome_code"] for c in calls)
    assert len(codes) == len(customers) and set(codes.values()) == {1}
    welcomed = Counter(w["external_userid"] for w in await h.welcomes())
    assert welcomed == Counter(customers)
    assert {t.status for t in await h.tasks(step_id="welcome")} == {"sent"}
    # Shared: far fewer claims than welcomes (one each before the lane).
    assert 1 <= len(claims) < len(customers) // 2, len(claims)
