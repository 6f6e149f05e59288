"""An add's own transaction stays a handful of statements (the CPU a welcome waits behind).

At a livestream's rate every statement of the add's transaction is CPU the next welcome waits
for (README, Benchmarks: welcome). Counted, not timed: one add of a new pair with two
`customer.added` playbooks (four tasks: the welcome, a reminder, two guide tasks), from the
claim to the event's done-mark. Before the add path was built for it this was 23 statements:
the relation read three times, a savepoint and five statements per playbook, an UPDATE for what
the profile said. Then 14 for contacts and the SOP engine, and 3 for the customer's lifecycle
stage (guidebot.contacts.lifecycle, which hears RelationAdded too). Now 10 and 2: what the add
must know before it writes (the guide, a transfer waiting, the pair, the store at the time and
the store's code and zone for the SOP engine) is one select (guidebot.contacts.add_look), and
the stage row counts the orders told of before the add in its own insert. The 10: that look,
the customer, the relation, its log line, the enrollments' savepoint, their earlier runs, the
enrollments, their tasks, the savepoint's release, the done-mark. On SQLite a burst's events
share a transaction that runs again with savepoints if anything in it fails
(guidebot.intake.batches), so the enrollments take none there: 8. A change that adds one
should say why here.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import event, select

from guidebot.contacts.models import Relation, RelationEvent
from guidebot.metrics.models import LostAlert
from tests import factories
from tests.harness import contact_xml

ADD_AND_ENROLL_STATEMENTS = 10
LIFECYCLE_STATEMENTS = 2


async def _statements_of_the_event(h) -> list[str]:
    """The statements of the one event queued, from after its claim to its done-mark."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(" ".join(statement.split()))

    engine = h.sessions.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        await h.drain()
    finally:
        event.remove(engine, "before_cursor_execute", record)

    done = next(i for i, s in enumerate(seen) if "processed_at" in s and "inbox_events" in s)
    # The claim's statements are the worker's, not the add's: its last is the look for older
    # events when the fresh ones did not fill the batch (guidebot.intake.claims).
    claim = max(
        i
        for i, s in enumerate(seen[:done])
        if "attempts=(inbox_events.attempts" in s or s.startswith("SELECT inbox_events.id")
    )
    ran = [s for s in seen[claim + 1 : done + 1] if not s.startswith("BEGIN")]
    if ran[0].startswith("SAVEPOINT"):  # a careful batch: the event's savepoint, not a BEGIN
        ran = ran[1:]
    return ran


async def test_an_add_of_a_new_pair_is_a_handful_of_statements(h):
    await h.control("customers", {"external_userid": "wmc9", "name": "顾客9"})
    await h.act(
        "contact/add",
        {"userid": "g1", "external_userid": "wmc9", "welcome_code": True},
        drain=False,
    )
    add = await _statements_of_the_event(h)
    assert len(add) <= ADD_AND_ENROLL_STATEMENTS + LIFECYCLE_STATEMENTS, "\n".join(add)
    stage = [s for s in add if "customer_stage" in s or s.startswith("SELECT relations.store_id")]
    assert len(add) - len(stage) <= ADD_AND_ENROLL_STATEMENTS, "\n".join(add)
    # The relation is written once and never read (the look says it is not there yet; its
    # hearers take it from the event), the enrollments share one savepoint, and what the
    # profile said goes in with the insert.
    assert not [s for s in add if "FROM relations" in s and "AS relation_id" not in s]
    assert not [s for s in add if "FROM departments" in s and "AS relation_id" not in s]
    # The pending status is written into the look, not bound: SQLite would prepare a
    # statement again on every run whose parameter a partial index's WHERE is checked against.
    [look] = [s for s in add if "AS relation_id" in s]
    assert "transfers.status = 'pending'" in look
    assert sum(s.startswith("INSERT INTO relations") for s in add) == 1
    # No savepoint for the enrollments: the optimistic batch takes none, on either engine.
    assert not [s for s in add if s.startswith("SAVEPOINT")]
    assert not [s for s in add if s.startswith("UPDATE relations")]
    # ...and the add did what it always did: two enrollments, the welcome sent once.
    assert len(await h.enrollments(external_userid="wmc9")) == 2
    [welcome] = await h.tasks(external_userid="wmc9", step_id="welcome")
    assert welcome.status == "sent"
    assert [w["external_userid"] for w in await h.welcomes()] == ["wmc9"]


REENTERS = """
playbook: comeback
version: 1
trigger:
  event: customer.added
enroll:
  once_per: relation
  reenter_after: 300d
timezone: Asia/Shanghai
send_window:
  hours: "10:00-21:00"
  days: mon-sun
steps:
  - id: hello_again
    at: enroll + 1d
    action: guide_task
    template: follow_up_day3.j2
    expire_after: 1d
"""


async def test_a_playbook_that_cannot_enroll_fails_alone_and_the_welcome_goes(h, caplog):
    """An add's playbooks enroll together; when one of them cannot (here an earlier enrollment
    dated year 9999, a hand edit: no instant is 300 days after it), the others still enroll,
    each in its own savepoint, and the welcome is sent once. On SQLite the add's batch ran
    without savepoints first: the failure spoiled it, not the enrollments' fallback (which
    would have kept the failed attempt's writes), and it ran again with them."""
    h.write_playbook(REENTERS)
    h.reload()
    year_9999 = datetime(9999, 12, 31, tzinfo=UTC)
    await h.control("customers", {"external_userid": "wmc9", "name": "顾客9"})
    async with h.sessions() as session, session.begin():
        session.add(
            factories.enrollment(
                "g1",
                "wmc9",
                "comeback",
                h.clock.now(),
                status="completed",
                enrolled_at=year_9999,
                ended_at=year_9999,
            )
        )
    with caplog.at_level(logging.INFO, logger="guidebot.intake.worker"):
        await h.add("g1", "wmc9")
    spoiled = [r for r in caplog.records if "runs again, a savepoint each" in r.getMessage()]
    [record] = spoiled
    assert "SavepointSkipped" in record.getMessage()

    enrolled = await h.enrollments(external_userid="wmc9", status="active")
    assert sorted(e.playbook_id for e in enrolled) == ["first_contact", "follow_up_7d"]
    [welcome] = await h.tasks(external_userid="wmc9", step_id="welcome")
    assert welcome.status == "sent"
    assert [w["external_userid"] for w in await h.welcomes()] == ["wmc9"]
    assert not await h.tasks(external_userid="wmc9", step_id="hello_again")


# The end of a known pair (a customer deleting the guide): the relation's locked read and its
# update, its log line; the SOP engine's one look (the pair's active runs and waiting tasks),
# the runs' stop and their open tasks'; the lost alert's one look (the pair as it ended, the
# store then, the last forward, the last message) and the alert; the stage's look, update and
# log line; the done-mark. Before this count was kept: 20, with an insert-or-nothing of the
# guide and of the customer that a known pair's relation already vouches for; then 18 on
# PostgreSQL, whose events each had a transaction (and the lost alert a savepoint) before its
# batches were SQLite's; then 16, with the lost alert's four reads; then 13, with the SOP
# engine's two.
END_STATEMENTS = 12
# A first-seen pair's end (a deletion of a pair added before guidebot knew the guide): the
# pair's read, the guide's and the customer's insert-or-nothing, the relation, its log line
# (the guide's store at the time looked up in it), the SOP engine's look, the lost alert's
# look and the alert, the stage's look, the done-mark. Was 15 (the store asked twice on its
# own, the lost alert's four reads, the SOP engine's two), then 11.
FIRST_SEEN_END_STATEMENTS = 10


async def _alert(h, ext: str) -> LostAlert:
    async with h.sessions() as session:
        [alert] = (
            await session.scalars(select(LostAlert).where(LostAlert.external_userid == ext))
        ).all()
        return alert


async def test_the_end_of_a_pair_is_a_handful_of_statements(h):
    await h.control("customers", {"external_userid": "wmc9", "name": "顾客9"})
    added_at = h.clock.now()
    await h.add("g1", "wmc9")
    h.advance(3600)
    await h.act(
        "contact/delete_by_customer", {"userid": "g1", "external_userid": "wmc9"}, drain=False
    )
    end = await _statements_of_the_event(h)
    assert len(end) <= END_STATEMENTS, "\n".join(end)
    assert not [s for s in end if s.startswith(("INSERT INTO guides", "INSERT INTO customers"))]
    assert sum(s.startswith("UPDATE relations") for s in end) == 1
    # The store and what was sent last are asked inside the lost alert's look; the runs and
    # the waiting tasks in one look.
    assert not [s for s in end if s.startswith(("SELECT store_memberships", "SELECT content_"))]
    assert not [s for s in end if s.startswith("SELECT sop_tasks")]
    assert sum("FROM sop_enrollments" in s for s in end if s.startswith("SELECT")) == 1
    # ...and the end did what it always did: the runs stopped, the customer lost, alerted.
    assert {e.status for e in await h.enrollments(external_userid="wmc9")} == {"stopped"}
    async with h.sessions() as session:
        status = await session.scalar(
            select(Relation.status).where(
                Relation.guide_userid == "g1", Relation.external_userid == "wmc9"
            )
        )
    assert status == "lost"
    alert = await _alert(h, "wmc9")
    assert (alert.guide_userid, alert.store_id, alert.customer_name) == ("g1", 11, "顾客9")
    assert (alert.together_since, alert.lost_at) == (added_at, h.clock.now())
    [welcome] = await h.tasks(external_userid="wmc9", step_id="welcome")
    assert welcome.message and alert.last_sent_at == welcome.sent_at
    assert alert.last_sent == " ".join(welcome.message.split())[:24] + "…"


async def test_the_end_of_a_first_seen_pair_is_a_handful_of_statements(h):
    await h.deliver(contact_xml("del_follow_user", "g1", "wmc9", h.clock.now()))
    end = await _statements_of_the_event(h)
    assert len(end) <= FIRST_SEEN_END_STATEMENTS, "\n".join(end)
    assert not [s for s in end if s.startswith(("SELECT store_memberships", "SELECT content_"))]
    assert not [s for s in end if s.startswith("SELECT sop_tasks")]
    # ...and the end did what it always did: the pair recorded lost, its log line and its
    # alert at the guide's store then, nothing sent to it.
    async with h.sessions() as session:
        relation = await session.scalar(
            select(Relation).where(
                Relation.guide_userid == "g1", Relation.external_userid == "wmc9"
            )
        )
        [logged] = (
            await session.scalars(
                select(RelationEvent).where(RelationEvent.external_userid == "wmc9")
            )
        ).all()
    assert (relation.status, relation.store_id, relation.created_at) == ("lost", None, None)
    assert (logged.kind, logged.store_id, logged.previous_status) == ("lost", 11, "active")
    assert logged.occurred_at == relation.ended_at
    alert = await _alert(h, "wmc9")
    assert (alert.store_id, alert.lost_at, alert.together_since) == (11, relation.ended_at, None)
    assert (alert.last_sent, alert.last_sent_at) == (None, None)
