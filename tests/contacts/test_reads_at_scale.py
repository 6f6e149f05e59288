"""The reads that grew with a brand (issue 19), each checked against answers computed here from
the rows, on both databases: customer search (SQLite's word indexes only narrow; PostgreSQL's
trigram indexes), the customer list's count that stops at a limit and its two ways of reading
newest first, and each guide's active customers kept by triggers."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, text, update

from guidebot.contacts import counts, queries, word_index
from guidebot.contacts.models import (
    Customer,
    Department,
    Guide,
    GuideCustomerCount,
    Relation,
)
from guidebot.db.engine import create_engine, create_session_factory
from guidebot.db.migrate import upgrade
from tests.conftest import migrated_to
from tests.support import fts5_vocabularies, gram_entries

WORD_OBJECTS = importlib.import_module(
    "guidebot.db.migrations.versions.0028_reads_at_scale"
).WORD_OBJECTS

NOW = datetime(2026, 5, 1, 4, 0, tzinfo=UTC)
GUIDES = ("g1", "g2", "g3")

# (external_userid, name, seconds before NOW it was first seen): ties on purpose.
CUSTOMERS = [
    ("wmA1", "张伟", 10),
    ("wmA2", "张伟明", 10),
    ("wmA3", "王张伟", 20),
    ("wmB1", "欧阳娜娜", 30),
    ("wmB2", "Alice Chen", 30),
    ("wmB3", "ALICE", 30),
    ("wmB4", "bob", 40),
    ("wmC1", None, 50),
    ("wmC2", '李"引号"', 60),
    ("wmC3", "陈_百分%号", 70),
    ("wm_x9", "VIP陈姐", 80),
    ("wmXYZ", "赵女士", 90),
    ("wmLONE", "没有导购的人", 95),  # no relation: never in a related-only list
]
# (guide, external_userid, status, store, remark)
RELATIONS = [
    ("g1", "wmA1", "active", 11, "老朋友 13812345678"),
    ("g2", "wmA1", "active", 12, None),
    ("g1", "wmA2", "lost", 11, "VIP 138-1234-5678"),
    ("g2", "wmA3", "active", 12, "张伟的太太"),
    ("g3", "wmB1", "active", None, "Nana 娜娜"),
    ("g1", "wmB2", "active", 11, "ALICE VIP"),
    ("g1", "wmB3", "transferred", 11, ""),
    ("g3", "wmB4", "active", 11, "Bob 鲍勃"),
    ("g2", "wmC1", "active", 12, "无名氏 139 0000 1111"),
    ("g1", "wmC2", "active", 11, '备注"引号"'),
    ("g2", "wmC3", "removed", 12, "_百分%号_"),
    ("g3", "wm_x9", "active", 12, "陈姐"),
    ("g2", "wmXYZ", "active", 11, "xyz老客户"),
]
NEW_RELATIONS = [
    ("g1", "wmD1", "active", 11, "新来的 13812345678"),
    ("g2", "wmD2", "active", 12, None),
]
WORDS = [
    "张", "张伟", "张伟明", "伟明", "王张", "欧阳娜娜", "娜娜", "alice", "ALI", "Al", "ice c",
    "ice C", "1234", "138", "5678", "139 0000", "wm", "wma", "WMB", "xyz", "XYZ老", '"引号"',
    "引号", '"', "_百分", "百分%号", "%", "老朋友", "朋友", "nobody", "VIP", "vip陈", "陈",
    "太太", "Bob 鲍", " ", "女士",
]  # fmt: skip
FILTERS: list[dict[str, Any]] = [
    {"related_only": True},
    {"guide": "g1"},
    {"guide": "g2", "status": "active"},
    {"stores": [12]},
    {},
]


def _fold(value: str) -> str:
    """SQLite's LIKE and lower(): ASCII letters only (the test's words differ in no other)."""
    return "".join(c.lower() if c.isascii() else c for c in value)


def _expected(rows: dict[str, Any], words: str | None, wanted: dict[str, Any]) -> list[str]:
    """The search's answer computed from the rows: newest first, then by external_userid; an
    id holds a word from three characters on (migration 0032)."""
    matching = [
        r
        for r in rows["relations"]
        if (wanted.get("guide") in (None, r[0]))
        and (wanted.get("status") in (None, r[2]))
        and (wanted.get("stores") is None or r[3] in wanted["stores"])
    ]
    filtered = wanted.get("related_only") or any(k in wanted for k in ("guide", "status", "stores"))
    found = []
    for ext, name, seen in rows["customers"]:
        if filtered and not any(r[1] == ext for r in matching):
            continue
        if words is not None:
            w = _fold(words.replace("%", "").replace("_", ""))
            texts = [ext] if len(w) >= 3 else []
            texts += [name] if name is not None else []
            texts += [r[4] for r in matching if r[1] == ext and r[4] is not None]
            if not any(w in _fold(t) for t in texts):
                continue
        found.append((seen, ext))
    return [ext for _, ext in sorted(found)]


async def _load(sessions, customers=CUSTOMERS, relations=RELATIONS) -> dict[str, Any]:
    async with sessions() as session, session.begin():
        await session.execute(
            insert(Department),
            [
                dict(id=1, name="总部", parent_id=None, is_store=False, code="HQ", updated_at=NOW),
                dict(id=11, name="张江店", parent_id=1, code="S11", updated_at=NOW),
                dict(id=12, name="徐汇店", parent_id=1, code="S12", updated_at=NOW),
            ],
        )
        await session.execute(
            insert(Guide),
            [dict(userid=g, name=f"导购{g}", main_department=11, updated_at=NOW) for g in GUIDES],
        )
        await _add(session, customers, relations)
    return {"customers": list(customers), "relations": list(relations)}


async def _add(session, customers, relations) -> None:
    if customers:
        await session.execute(
            insert(Customer),
            [
                dict(
                    external_userid=ext,
                    name=name,
                    created_at=NOW - timedelta(seconds=seen),
                    updated_at=NOW,
                )
                for ext, name, seen in customers
            ],
        )
    if relations:
        await session.execute(
            insert(Relation),
            [
                dict(
                    guide_userid=g,
                    external_userid=ext,
                    status=status,
                    store_id=store,
                    remark=remark,
                    created_at=NOW,
                    last_event_at=NOW,
                    updated_at=NOW,
                )
                for g, ext, status, store, remark in relations
            ],
        )


@pytest.fixture
async def sessions(database_url):
    engine = create_engine(database_url)
    yield create_session_factory(engine)
    await engine.dispose()


async def _check_search(sessions, rows, words_too: tuple[str, ...] = ()) -> None:
    async with sessions() as session:
        for wanted in FILTERS:
            for words in [None, *WORDS, *words_too]:
                page = await queries.search_customers(session, words=words, per_page=100, **wanted)
                expected = _expected(rows, words, wanted)
                got = [c.external_userid for c in page.customers]
                assert (got, page.total) == (expected, len(expected)), (words, wanted)


async def test_search_answers_what_reading_every_row_answers(sessions):
    """Names, ids and remarks, one to six characters, Chinese, mixed case, mobile fragments,
    quotes and LIKE's own characters; relation filters; then after renames, remark changes,
    deletes and new rows, which the word indexes must follow."""
    rows = await _load(sessions)
    await _check_search(sessions, rows)

    async with sessions() as session, session.begin():
        await session.execute(
            update(Customer).where(Customer.external_userid == "wmA2").values(name="周杰")
        )
        await session.execute(
            update(Customer).where(Customer.external_userid == "wmC1").values(name="新名字Zed")
        )
        await session.execute(
            update(Relation)
            .where(Relation.guide_userid == "g1", Relation.external_userid == "wmA1")
            .values(remark="换了备注 13700000000")
        )
        await session.execute(
            update(Relation).where(Relation.external_userid == "wmB4").values(remark=None)
        )
        await session.execute(delete(Relation).where(Relation.external_userid == "wmXYZ"))
        await session.execute(delete(Customer).where(Customer.external_userid == "wmXYZ"))
        await _add(
            session,
            [("wmD1", "张伟", 5), ("wmD2", "阿ALICE", 5)],
            [
                ("g1", "wmD1", "active", 11, "新来的 13812345678"),
                ("g2", "wmD2", "active", 12, None),
            ],
        )
    rows["customers"] = [
        (ext, {"wmA2": "周杰", "wmC1": "新名字Zed"}.get(ext, name), seen)
        for ext, name, seen in rows["customers"]
        if ext != "wmXYZ"
    ] + [("wmD1", "张伟", 5), ("wmD2", "阿ALICE", 5)]
    remarks = {("g1", "wmA1"): "换了备注 13700000000", ("g3", "wmB4"): None}
    rows["relations"] = [
        (g, ext, status, store, remarks.get((g, ext), remark))
        for g, ext, status, store, remark in rows["relations"]
        if ext != "wmXYZ"
    ] + NEW_RELATIONS
    # Words only the changed rows have (three characters or more: looked up in the indexes).
    await _check_search(sessions, rows, ("新名字", "字ZE", "zed", "13700000", "新来的", "阿ALI"))
    async with sessions() as session:
        for gone in ("伟明", "老朋友", "Bob 鲍", "xyz"):
            assert (await queries.search_customers(session, words=gone)).total == 0, gone
        if await word_index.available(session):
            # The indexes hold exactly what indexing today's rows afresh gives.
            kept = await _index_entries(session)
            await word_index.rebuild(session)
            assert kept == await _index_entries(session)
            await session.rollback()


async def _index_entries(session) -> set[tuple]:
    """SQLite: every (term, row, column, offset) in the word indexes (every (piece, row) in
    those of pieces), by external_userid or relation id (customer_words' keys change when
    rebuilt)."""
    entries: set[tuple] = set()
    await fts5_vocabularies(session, word_index.FTS_TABLES, "instance")
    for term, key, col, offset in await session.execute(
        text(
            "SELECT term, w.external_userid, col, offset FROM temp.v_customer_words_fts v "
            "JOIN customer_words w ON w.id = v.doc"
        )
    ):
        entries.add(("customer", term, key, col, offset))
    for term, doc, col, offset in await session.execute(
        text("SELECT term, doc, col, offset FROM temp.v_relation_remarks_fts")
    ):
        entries.add(("remark", term, doc, col, offset))
    # The pieces of one and two characters (migration 0030): no columns, no positions.
    entries |= {(f"{kind} pieces", term, key) for kind, term, key in await gram_entries(session)}
    return entries


async def test_the_list_counts_up_to_a_limit_and_reads_the_same_pages_either_way(sessions):
    """A count that stops says so (`more`); pages read newest first from the index (more than
    the limit) are the pages a sort of every match gives, ties included."""
    rows = await _load(sessions)
    cases: list[tuple[dict[str, Any], str | None]] = [
        ({"related_only": True}, None),
        ({"guide": "g1"}, None),
        ({"stores": [11, 12]}, None),
        ({"related_only": True}, "i"),
        ({"related_only": True}, "wmB"),
    ]
    async with sessions() as session:
        for wanted, words in cases:
            expected = _expected(rows, words, wanted)
            assert len(expected) > 3, wanted
            for limit in (None, 3, len(expected), 100):
                got: list[str] = []
                for number in range(1, 8):
                    page = await queries.search_customers(
                        session, words=words, page=number, per_page=2, count_up_to=limit, **wanted
                    )
                    more = limit is not None and len(expected) > limit
                    total = limit if more else len(expected)
                    assert (page.total, page.more) == (total, more), (wanted, limit)
                    assert page.has_next == (number * 2 < len(expected)), (wanted, number)
                    got += [c.external_userid for c in page.customers]
                assert got == expected, (wanted, words, limit)
        # A guide with no customers at all: nothing to read, whatever the limit.
        session.add(Guide(userid="g9", name="新人", updated_at=NOW))
        await session.flush()
        page = await queries.search_customers(session, guide="g9", count_up_to=10)
        assert (page.customers, page.total, page.more, page.has_next) == ([], 0, False, False)


async def _counts(sessions) -> tuple[dict, dict, dict]:
    """(the kept counts, the relations counted here, what the guide and store lists say)."""
    async with sessions() as session:
        kept = {
            (c.guide_userid, c.store_id): c.active
            for c in await session.scalars(select(GuideCustomerCount))
            if c.active
        }
        truth: dict[tuple[str, int], int] = {}
        for r in await session.scalars(select(Relation).where(Relation.status == "active")):
            key = (r.guide_userid, r.store_id or 0)
            truth[key] = truth.get(key, 0) + 1
        lists = {
            "guides": {
                v.guide.userid: v.active_customers for v in await queries.list_guides(session)
            },
            "store 12": {
                v.guide.userid: v.active_customers
                for v in await queries.list_guides(session, count_stores={12})
            },
            "stores": {v.store.id: v.active_customers for v in await queries.list_stores(session)},
        }
    return kept, truth, lists


def _lists_from(truth: dict[tuple[str, int], int]) -> dict[str, dict]:
    guides = {g: sum(n for (gg, _), n in truth.items() if gg == g) for g in GUIDES}
    in_12 = {g: truth.get((g, 12), 0) for g in GUIDES}
    stores = {s: sum(n for (_, ss), n in truth.items() if ss == s) for s in (11, 12)}
    return {"guides": guides, "store 12": in_12, "stores": stores}


async def test_each_guides_active_customers_are_kept_as_relations_change(sessions):
    await _load(sessions)

    async def agree() -> None:
        kept, truth, lists = await _counts(sessions)
        assert kept == truth
        assert lists == _lists_from(truth)

    await agree()
    async with sessions() as session, session.begin():
        # A loss, a return, a transfer (the guide changes), a store move, a store dropped,
        # a change that touches neither, and a delete.
        relation = Relation.external_userid
        await session.execute(update(Relation).where(relation == "wmB2").values(status="lost"))
        await session.execute(update(Relation).where(relation == "wmA2").values(status="active"))
        await session.execute(
            update(Relation).where(relation == "wmB4").values(guide_userid="g2", store_id=12)
        )
        await session.execute(update(Relation).where(relation == "wmC2").values(store_id=12))
        await session.execute(update(Relation).where(relation == "wm_x9").values(store_id=None))
        await session.execute(update(Relation).where(relation == "wmA3").values(remark="新备注"))
        await session.execute(delete(Relation).where(relation == "wmC1"))
    await agree()
    async with sessions() as session, session.begin():
        before = (await _counts(sessions))[0]
        await counts.recount(session)
    assert (await _counts(sessions))[0] == before


@pytest.fixture
async def before_0028(request, tmp_path):
    """An empty database migrated to 0027: the rows are there before migration 0028 is."""
    return await migrated_to(request, tmp_path, "0027")


@pytest.mark.parametrize("before_0028", ["sqlite", "postgresql"], indirect=True)
async def test_migration_0028_counts_and_indexes_what_is_already_there(before_0028):
    """Upgrading a brand's database: the counts and SQLite's word indexes start from the rows
    already there, and the search and lists answer as they did."""
    engine = create_engine(before_0028)
    sessions = create_session_factory(engine)
    try:
        rows = await _load(sessions)
        await engine.dispose()
        await upgrade(before_0028)
        engine = create_engine(before_0028)
        sessions = create_session_factory(engine)
        kept, truth, _ = await _counts(sessions)
        assert kept == truth and truth
        await _check_search(sessions, rows)
    finally:
        await engine.dispose()


async def test_open_and_overdue_tasks_are_counted_from_the_open_tasks_index(sessions):
    """Every guide's open and overdue guide-facing tasks (the guide list) equal a count of the
    rows here; and the database can answer from ix_sop_tasks_guide_open, whose predicate the
    query must write in the same words (else neither planner may use a partial index)."""
    from guidebot.sop.models import Action, TaskStatus
    from guidebot.sop.queries import OVERDUE_AFTER, guide_task_counts
    from tests import factories

    await _load(sessions)
    statuses = [*TaskStatus.ACTIONABLE, TaskStatus.SENDING, TaskStatus.DONE, TaskStatus.SKIPPED]
    dues = [NOW - timedelta(days=3), NOW - OVERDUE_AFTER, NOW, NOW + timedelta(hours=1)]
    made = []
    async with sessions() as session, session.begin():
        for n, (guide, ext, _, store, _) in enumerate(RELATIONS):
            enrollment = factories.enrollment(guide, ext, "pb", NOW, store_id=store or 11)
            session.add(enrollment)
            await session.flush()
            for i, action in enumerate((Action.REMIND, Action.GUIDE_TASK, Action.WELCOME)):
                status = statuses[(n + i) % len(statuses)]
                due = dues[(n * 3 + i) % len(dues)]
                session.add(
                    factories.task(
                        enrollment, f"s{i}", NOW, action=action, due_at=due, status=status
                    )
                )
                made.append((guide, ext, store or 11, action, status, due))
    active = {(g, ext) for g, ext, status, _, _ in RELATIONS if status == "active"}

    def expected(stores) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for guide, ext, store, action, status, due in made:
            if (
                action in Action.GUIDE_FACING
                and status in TaskStatus.ACTIONABLE
                and due <= NOW
                and (guide, ext) in active
                and (stores is None or store in stores)
            ):
                counts = out.setdefault(guide, {"open": 0, "overdue": 0})
                counts["open"] += 1
                counts["overdue"] += due < NOW - OVERDUE_AFTER
        return out

    statements: list[tuple[str, Any]] = []
    async with sessions() as session:
        for stores in (None, {12}, {11, 12}):
            assert await guide_task_counts(session, NOW, stores) == expected(stores), stores
        assert expected(None), "the scene has open tasks"
        listen = session.bind.sync_engine
        from sqlalchemy import event

        def seen(conn, cursor, statement, parameters, context, executemany) -> None:
            statements.append((statement, parameters))

        event.listen(listen, "before_cursor_execute", seen)
        try:
            await guide_task_counts(session, NOW)
        finally:
            event.remove(listen, "before_cursor_execute", seen)
        [(statement, parameters)] = [s for s in statements if "sop_tasks" in s[0]]
        if session.bind.dialect.name == "postgresql":
            # Whether the planner *can* use it: with the table's other indexes gone (in this
            # transaction only, rolled back) and no sequential scan, its costs cannot pick
            # another index that happens to look as cheap on a few hundred rows.
            await session.execute(text("SET LOCAL enable_seqscan = off"))
            others = await session.scalars(
                text(
                    "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
                    "JOIN pg_class t ON t.oid = x.indrelid WHERE t.relname = 'sop_tasks' "
                    "AND i.relname != 'ix_sop_tasks_guide_open' "  # a constraint's stays
                    "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)"
                )
            )
            for name in others.all():
                await session.execute(text(f'DROP INDEX "{name}"'))
            plan = await session.connection()
            rows = await plan.exec_driver_sql(f"EXPLAIN {statement}", parameters)
        else:
            rows = await (await session.connection()).exec_driver_sql(
                f"EXPLAIN QUERY PLAN {statement}", parameters
            )
        assert "ix_sop_tasks_guide_open" in " ".join(str(r) for r in rows.all())


async def test_search_on_a_sqlite_without_the_word_indexes_scans_to_the_same_answers(
    migrated_sqlite_url,
):
    """Migration 0028 skips the word indexes where SQLite has no trigram tokenizer (older than
    3.34), and 0030 its indexes of pieces with them: search then reads every row, as before,
    with the same answers."""
    engine = create_engine(migrated_sqlite_url)
    async with engine.begin() as conn:
        for kind, name in WORD_OBJECTS:
            await conn.exec_driver_sql(f"DROP {kind} {name}")
        for name in word_index.GRAM_TABLES:
            await conn.exec_driver_sql(f"DROP TABLE {name}")
    sessions = create_session_factory(engine)
    try:
        async with sessions() as session:
            assert not await word_index.available(session)
        await _check_search(sessions, await _load(sessions))
    finally:
        await engine.dispose()
