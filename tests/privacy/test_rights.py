"""A customer's rights: export everything held about them; erase them, counts kept."""

from __future__ import annotations

import json
from datetime import date, timedelta

from sqlalchemy import select, text

import guidebot.models  # every table in the metadata
from guidebot.audit.models import AuditEntry
from guidebot.contacts import word_index
from guidebot.contacts.jobs import nightly_reconcile, refetch_profiles
from guidebot.contacts.models import Customer, Relation
from guidebot.contacts.queries import search_customers
from guidebot.db.base import Base
from guidebot.metrics.report import Period
from guidebot.metrics.rollup import recompute_all
from guidebot.privacy.customers import CUSTOMER_COLUMNS, HOLDINGS
from guidebot.privacy.rights import customer_hash
from guidebot.sop.models import EnrollmentStatus, SopEnrollment, SopTask, TaskStatus
from guidebot.web.keys import WECOM
from tests import factories
from tests.integration.test_cli import env_for
from tests.integration.test_cli import guidebot_here as guidebot
from tests.metrics.conftest import at
from tests.privacy.conftest import DESCRIPTION, MOBILE, REMARK, busy_week, kpis
from tests.support import fts5_vocabularies

UNTIL_YESTERDAY = Period(date(2026, 3, 1), date(2026, 3, 19))
SECRETS = (REMARK, DESCRIPTION, MOBILE, "顾客01")  # wmc01's remark, description, mobile, name


def test_every_table_that_holds_a_customer_is_covered():
    """A new table with a column naming a customer must say how it is exported and erased."""
    covered = {holding.table for holding in HOLDINGS}
    holding = {
        table.name
        for table in Base.metadata.sorted_tables
        if any(
            column.name in CUSTOMER_COLUMNS or "external_userid" in column.name
            for column in table.columns
        )
    }
    assert holding - covered == set(), f"not covered by guidebot.privacy: {holding - covered}"


async def _dump(h) -> str:
    """Every row of every table, as text."""
    parts = []
    async with h.sessions() as session:
        for table in Base.metadata.sorted_tables:
            for row in await session.execute(select(table)):
                parts.append(repr(tuple(row)))
    return "\n".join(parts)


async def test_export_lists_every_record_of_the_customer(h):
    await busy_week(h)
    status, document = await h.api("GET", "/privacy/customers/wmc01")
    assert status == 200, document
    tables = document["tables"]
    for table in (
        "customers",
        "relations",
        "relation_events",
        "content_forwards",
        "content_opens",
        "content_open_visitors",
        "sop_enrollments",
        "sop_tasks",
        "orders",
        "inbox_events",
        "bot_replies",
    ):
        assert tables.get(table), table
    [relation] = tables["relations"]
    assert relation["remark"] == REMARK and relation["remark_mobiles"] == [MOBILE]
    assert all(r["external_userid"] == "wmc01" for r in tables["sop_tasks"])
    assert len(tables["content_forwards"]) == 2 and len(tables["content_opens"]) == 2
    # Other customers' rows are not in it.
    assert "wmc02" not in json.dumps(document)
    async with h.sessions() as session:  # who read it is recorded, not what they read
        [entry] = await session.scalars(
            select(AuditEntry).where(AuditEntry.action == "privacy.export")
        )
    assert entry.actor == "hq:admin token" and entry.after["rows"]["relations"] == 1
    assert "wmc01" not in json.dumps([entry.target, entry.after])
    status, answer = await h.api("GET", "/privacy/customers/nobody")
    assert status == 404 and "nobody" in answer["error"]["reason"]


async def test_erasure_removes_the_person_and_keeps_every_figure(h):
    await busy_week(h)
    async with h.sessions() as session, session.begin():
        enrollment = factories.enrollment("g1", "wmc01", "later", h.clock.now())
        session.add(enrollment)
        await session.flush()
        session.add(
            factories.task(
                enrollment,
                "later",
                h.clock.now(),
                action="remind",
                due_at=h.clock.now() + timedelta(days=3),
                status=TaskStatus.PENDING,
                message=f"记得问候 {REMARK}",
            )
        )
    h.set_time(at(20, 12))
    await h.settle()
    before = await kpis(h, UNTIL_YESTERDAY)
    dump = await _dump(h)
    assert all(secret in dump for secret in SECRETS)

    status, answer = await h.api(
        "POST", "/privacy/customers/wmc01/erase", json={"reason": "客户本人要求删除 / asked"}
    )
    assert status == 200, answer
    dump = await _dump(h)
    assert [s for s in SECRETS if s in dump] == []
    assert "wmc02" in dump  # the others are untouched

    async with h.sessions() as session:
        enrollments = list(
            await session.scalars(
                select(SopEnrollment.status).where(SopEnrollment.external_userid == "wmc01")
            )
        )
        tasks = list(
            await session.scalars(select(SopTask).where(SopTask.external_userid == "wmc01"))
        )
        [entry] = await session.scalars(
            select(AuditEntry).where(AuditEntry.action == "privacy.erase")
        )
    assert EnrollmentStatus.ACTIVE not in enrollments
    assert not [t for t in tasks if t.status in TaskStatus.OPEN]
    assert all(t.message is None for t in tasks)
    later = [t for t in tasks if t.step_id == "later"]
    assert later[0].status == TaskStatus.SKIPPED and later[0].reason == "erased"
    # The erasure is recorded: who, when, why, the id's salted hash; nothing it erased.
    assert (entry.actor, entry.role, entry.action) == ("hq:admin token", "hq", "privacy.erase")
    assert entry.target == "customer:" + customer_hash(
        h.settings.secret_key, "wmc01", h.clock.now()
    )
    assert entry.after["reason"] == "客户本人要求删除 / asked" and entry.ip
    assert "wmc01" not in json.dumps([entry.target, entry.before, entry.after])
    assert answer["audit_id"] == entry.id and answer["rows"]["relations"] == 1

    await h.settle()
    # Every figure up to the erasure stays; today's profile completeness (a stock: who has
    # profile data now) is the one that changes, because that data is gone.
    assert await kpis(h, UNTIL_YESTERDAY) == before
    await recompute_all(h.sessions, h.settings.timezone, h.clock.now())
    assert await kpis(h, UNTIL_YESTERDAY) == before
    assert (await kpis(h))["total"]["profile_completeness"] == 0.0


async def _index_bytes(session) -> bytes:
    """SQLite: every block of the search indexes' segments, as stored."""
    blocks = await session.scalars(
        text(" UNION ALL ".join(f"SELECT block FROM {t}_data" for t in word_index.FTS_TABLES))
    )
    return b"".join(b for b in blocks if isinstance(b, bytes))


def _pieces(texts, width: int) -> set[str]:
    return {t.lower()[i : i + width] for t in texts if t for i in range(len(t) - width + 1)}


def _term(piece: str) -> str:
    """A piece as a term of the trigram indexes (itself) or of the indexes of one- and
    two-character pieces (its UTF-8 in hex, lower-cased by FTS5's ascii tokenizer)."""
    return piece if len(piece) == 3 else piece.encode().hex()


def _stored(piece: str) -> bytes:
    return _term(piece).encode()


async def _gram_terms(session) -> set[str]:
    """SQLite: every term the indexes of one- and two-character pieces list (FTS5 stores a
    term after the one before it as the bytes they do not share, so a two-character piece is
    seldom whole in the blocks: these are read through fts5vocab)."""
    terms: set[str] = set()
    await fts5_vocabularies(session, word_index.GRAM_TABLES, "row")
    for name in word_index.GRAM_TABLES:
        terms |= set(await session.scalars(text(f"SELECT term FROM temp.v_{name}")))
    return terms


async def test_erasure_takes_the_words_out_of_the_search_indexes(h):
    """Search no longer finds the erased customer by their name or remark, whatever the
    length of the words; and on SQLite none of their pieces (one, two and three characters)
    that no one else's text holds are left in the word indexes at all: FTS5 hides a removed
    row's words behind a delete marker and keeps them in older segments until they merge, so
    the erasure merges them (guidebot.contacts.word_index.forget)."""
    await busy_week(h)
    async with h.sessions() as session:
        sqlite = await word_index.available(session)
        names = select(Customer.name).where(Customer.external_userid != "wmc01")
        remarks = select(Relation.remark).where(Relation.external_userid != "wmc01")
        others = [*(await session.scalars(names)), *(await session.scalars(remarks))]
        ids = list(await session.scalars(select(Customer.external_userid)))  # kept: not erased
    theirs = set()
    for width in (1, 2, 3):
        theirs |= _pieces(("顾客01", REMARK), width) - _pieces([*others, *ids], width)
    assert {len(t) for t in theirs} == {1, 2, 3}
    short = sorted(t for t in theirs if len(t) < 3)  # 陈, 女士, -v, 老 ...
    async with h.sessions() as session:
        for words in ("顾客01", REMARK, *short):
            page = await search_customers(session, words=words, related_only=True)
            assert [c.external_userid for c in page.customers] == ["wmc01"], words
        if sqlite:
            stored = await _index_bytes(session)
            assert {len(t) for t in theirs if _stored(t) in stored} >= {1, 3}
            assert {_term(t) for t in short} <= await _gram_terms(session)
    if sqlite:
        # The triggers alone only hide them.
        async with h.sessions() as session, session.begin():
            await session.execute(
                text("UPDATE customers SET name = NULL WHERE external_userid = 'wmc01'")
            )
            await session.execute(
                text("UPDATE relations SET remark = NULL WHERE external_userid = 'wmc01'")
            )
            stored = await _index_bytes(session)
            hidden = {len(t) for t in theirs if _stored(t) in stored}
            await session.rollback()
        assert hidden >= {1, 3}

    status, _ = await h.api("POST", "/privacy/customers/wmc01/erase", json={"reason": "客户要求"})
    assert status == 200
    async with h.sessions() as session:
        for words in ("顾客01", REMARK, "客01", *short):
            page = await search_customers(session, words=words, related_only=True)
            assert page.total == 0, words
        if sqlite:
            stored = await _index_bytes(session)
            assert [t for t in theirs if _stored(t) in stored] == []
            assert {_term(t) for t in short} & await _gram_terms(session) == set()


async def test_an_erased_customer_comes_back_only_with_what_wecom_sends_anew(h):
    await busy_week(h)
    status, _ = await h.api("POST", "/privacy/customers/wmc01/erase", json={"reason": "客户要求"})
    assert status == 200
    # Guidebot does not ask WeCom for the erased profile by itself.
    h.advance(timedelta(days=2))
    assert (await refetch_profiles(h.sessions, h.app[WECOM], h.clock)).filled == []
    async with h.sessions() as session:
        assert (await session.get(Customer, "wmc01")).name is None
    # Later the guide writes a new remark in WeCom: the callback arrives, guidebot reads WeCom.
    h.advance(timedelta(hours=1))
    await h.edit(
        "g1", "wmc01", remark="新备注", description="新描述", remark_mobiles=["13900000000"]
    )
    async with h.sessions() as session:
        relation = await session.scalar(select(Relation).where(Relation.external_userid == "wmc01"))
        customer = await session.get(Customer, "wmc01")
    assert (relation.remark, relation.description) == ("新备注", "新描述")
    assert relation.remark_mobiles == ["13900000000"]
    assert customer.name == "顾客01"  # WeCom sent the name anew with the profile
    dump = await _dump(h)
    assert [s for s in (REMARK, DESCRIPTION, MOBILE) if s in dump] == []
    # A nightly reconciliation brings back nothing old either.
    await nightly_reconcile(h.sessions, h.app[WECOM], h.clock)
    dump = await _dump(h)
    assert [s for s in (REMARK, DESCRIPTION, MOBILE) if s in dump] == []


async def test_erasure_needs_a_reason_and_a_known_customer(h):
    await busy_week(h)
    status, answer = await h.api("POST", "/privacy/customers/wmc01/erase", json={"reason": " "})
    assert status == 422 and "原因" in answer["error"]["reason"]
    status, answer = await h.api("POST", "/privacy/customers/nobody/erase", json={"reason": "x"})
    assert status == 404
    status, answer = await h.api("POST", "/privacy/customers/wmc01/erase", json={})
    assert status == 400
    async with h.sessions() as session:
        erasures = select(AuditEntry).where(AuditEntry.action == "privacy.erase")
        assert list(await session.scalars(erasures)) == []
        relation = await session.scalar(select(Relation).where(Relation.external_userid == "wmc01"))
    assert relation.remark == REMARK  # nothing changed


async def test_the_command_line_exports_and_erases(h, database_url, tmp_path):
    await busy_week(h)
    env = env_for(database_url)
    out = tmp_path / "wmc01.json"
    done = guidebot("privacy", "export", "wmc01", "-o", str(out), env=env)
    assert done.returncode == 0, done.stderr
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["tables"]["relations"][0]["remark"] == REMARK
    done = guidebot("privacy", "erase", "wmc01", env=env)
    assert done.returncode != 0 and "--reason" in done.stderr
    done = guidebot("privacy", "erase", "wmc01", "--reason", "客户要求", env=env)
    assert done.returncode == 0, done.stderr
    assert "erased" in done.stdout
    async with h.sessions() as session:
        [entry] = await session.scalars(
            select(AuditEntry).where(AuditEntry.action == "privacy.erase")
        )
        relation = await session.scalar(select(Relation).where(Relation.external_userid == "wmc01"))
    assert entry.role == "cli" and entry.actor.startswith("cli:") and entry.ip is None
    assert relation.remark is None
    done = guidebot("privacy", "export", "nobody", env=env)
    assert done.returncode == 1 and "nobody" in done.stderr
