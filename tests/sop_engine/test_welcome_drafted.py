"""A welcome drafted with its add (guidebot.sop.welcome_lane): the add's transaction inserts
the welcome claimed for the lane with what its text needs, and the lane sends it after one
guarded update instead of a claim, a read of five tables and a second update.

The text must be the one prepare would have rendered from the rows, and the guard must keep
prepare's send-time checks: a row a stop closed, one past its expiry, one another claimer
holds is never sent from a draft.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, select

from guidebot.contacts.models import Customer, Department, Guide, Relation
from guidebot.events import PairNames, StoreRef
from guidebot.sop.actions import action_for
from guidebot.sop.messages import message_for
from guidebot.sop.models import SopEnrollment, SopTask
from guidebot.sop.templates import render_message
from guidebot.sop.welcome_lane import WelcomeLane, draft_welcome
from tests import factories
from tests.harness import deploy_dir

WELCOME = "externalcontact/send_welcome_msg"

EVERY_VARIABLE = """
playbook: every_variable
name: 欢迎新客
version: 1
trigger:
  event: customer.added
enroll:
  once_per: relation
timezone: Asia/Shanghai
send_window:
  hours: "00:00-24:00"
  days: mon-sun
steps:
  - id: hello
    name: 首次问候
    at: enroll
    action: welcome
    template: every_variable.j2
    expire_after: 20s
"""

TEMPLATE = (
    "{{ customer.name }}|{{ customer.remark }}|{{ customer.external_userid }}|"
    "{{ guide.name }}|{{ guide.userid }}|{{ store.name }}|{{ store.code }}|"
    "{{ playbook.id }}|{{ playbook.name }}|{{ playbook.version }}|"
    "{{ step.id }}|{{ step.name }}|{{ step.action }}|{{ links.task }}|{{ content.url }}"
)


@pytest.fixture
def sop_dir(tmp_path):
    sop = deploy_dir(tmp_path / "deploy")
    (sop.parent / "templates" / "messages" / "every_variable.j2").write_text(TEMPLATE, "utf-8")
    return sop


@pytest.fixture
def playbooks() -> list[str]:
    return [EVERY_VARIABLE]


async def _render_from_rows(h, task_id: int) -> str:
    """The welcome's text as prepare renders it: every row read back from the database."""
    async with h.sessions() as session:
        task = await session.get(SopTask, task_id)
        enrollment = await session.get(SopEnrollment, task.enrollment_id)
        relation = await session.scalar(
            select(Relation).where(
                Relation.guide_userid == task.guide_userid,
                Relation.external_userid == task.external_userid,
            )
        )
        customer = await session.get(Customer, task.external_userid)
        guide = await session.get(Guide, task.guide_userid)
        store = await session.get(Department, relation.store_id)
    action = action_for(task.action)
    text, render = message_for(
        h.runtime, action, task, enrollment, customer, guide, store, relation, None, h.clock.now()
    )
    assert text is None and render is not None
    return render_message(h.runtime.env, *render)


async def _add_counting_claims(h, guide: str, ext: str) -> int:
    claims: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("UPDATE sop_tasks") and "RETURNING" in statement:
            claims.append(statement)

    engine = h.sessions.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        await h.add(guide, ext)
        await h.drain()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(claims)


async def test_a_drafted_welcome_reads_as_prepare_renders_it_from_the_rows(h):
    await h.control("customers", {"external_userid": "wmc8", "name": "孙小姐"})
    # WeCom names the customer: drafted with the add, no claim of the lane's own.
    assert await _add_counting_claims(h, "g1", "wmc8") == 0
    # A second guide's add whose profile read fails: the customer's row holds the name the
    # first add wrote, which this add does not know, so it drafts nothing; the lane claims
    # the welcome and prepares it from the rows, as before.
    await h.control("faults", {"api": "externalcontact/get", "errcode": 45009})
    assert await _add_counting_claims(h, "g2", "wmc8") == 1

    sent = {w["userid"]: w["text"]["content"] for w in await h.welcomes()}
    assert set(sent) == {"g1", "g2"}
    for guide in ("g1", "g2"):
        task = await h.task(guide, "wmc8", "hello")
        assert task.status == "sent"
        assert task.message == sent[guide]
        assert task.message == await _render_from_rows(h, task.id)
    drafted = sent["g1"].split("|")
    assert drafted[:6] == ["孙小姐", "孙小姐", "wmc8", "王芳", "g1", "张江店"]
    assert drafted[7:13] == ["every_variable", "欢迎新客", "1", "hello", "首次问候", "welcome"]
    assert drafted[13].endswith(f"/sidebar?task={(await h.task('g1', 'wmc8', 'hello')).id}")
    assert sent["g2"].startswith("孙小姐|孙小姐|wmc8|李娜|g2|徐汇店|")


async def _claimed_welcome(h, lane_owner: str, ext: str, **fields):
    now = h.clock.now()
    async with h.sessions() as session, session.begin():
        enrollment = factories.enrollment("g1", ext, "set_by_hand", now)
        session.add(enrollment)
        await session.flush()
        values = dict(
            welcome_code=f"code-never-issued-{ext}",
            template="every_variable.j2",
            expires_at=now + timedelta(seconds=20),
            lease_owner=lane_owner,
            lease_until=now + timedelta(minutes=2),
            claimed_by=lane_owner,
            attempts=1,
            content=None,
            tag=None,
        )
        values.update(fields)
        task = factories.task(enrollment, "welcome", now, action="welcome", due_at=now, **values)
        session.add(task)
        await session.flush()
        row = {c.key: getattr(task, c.key) for c in SopTask.__table__.c}
    return row


async def test_a_draft_never_sends_a_row_a_stop_closed_or_another_claimer_holds(h):
    """Rows carry a code WeCom never issued: a row the guard let through would be called."""
    for ext in ("wmc1", "wmc2", "wmc3"):  # the pairs, connected (no code: nothing welcomed)
        await h.add("g1", ext, welcome_code=False)
    lane = WelcomeLane(h.runtime)
    owner = lane.claim(h.clock.now()).owner
    names = PairNames("陈女士", "王芳")
    store = StoreRef(11, "11", "Asia/Shanghai", "张江店")
    closed = await _claimed_welcome(h, owner, "wmc1", status="skipped")
    theirs = await _claimed_welcome(h, "another:claimer", "wmc2", status="claimed")
    late = await _claimed_welcome(
        h, owner, "wmc3", status="claimed", expires_at=h.clock.now() - timedelta(seconds=1)
    )
    for row in (closed, theirs, late):
        # The factory's enrollments have empty settings, as prepare will read them.
        await lane.send(draft_welcome(h.runtime, row, {}, None, names, store))

    assert await h.calls(WELCOME) == []
    assert (await h.task("g1", "wmc1", "welcome")).status == "skipped"
    held = await h.task("g1", "wmc2", "welcome")
    assert (held.status, held.lease_owner) == ("claimed", "another:claimer")
    # Past its expiry: settled by prepare's checks, as the tick would, never sent late.
    expired = await h.task("g1", "wmc3", "welcome")
    assert expired.status == "expired" and expired.message is None
