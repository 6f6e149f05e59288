"""Customer search of one or two characters from the indexes of one- and two-character pieces
(migrations 0030 and 0032, guidebot.contacts.grams), on both databases: the answers are a plain
scan's of names and remarks (a Hypothesis property over Chinese and ASCII names, ids and
remarks, case folding and LIKE's own characters included), ids are found from three characters
on, the planner reads the indexes, a word too common is scanned as before, and the migrations
fill the indexes from the rows already there and go down again."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import importlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, event, exists, false, insert, or_, select, text

from guidebot.contacts import grams, queries, word_index
from guidebot.contacts.models import Customer, Department, Guide, Relation
from guidebot.db.engine import create_engine, create_session_factory
from guidebot.db.migrate import GRAM_INDEXES, alembic_config, upgrade
from tests.conftest import migrated_to
from tests.fuzzing import examples
from tests.support import gram_entries

NOW = datetime(2026, 5, 1, 4, 0, tzinfo=UTC)
GUIDES = ("g1", "g2")
GRAMS_0030 = importlib.import_module("guidebot.db.migrations.versions.0030_search_grams")
GRAMS_0032 = importlib.import_module("guidebot.db.migrations.versions.0032_short_searches_by_name")

# Chinese, ASCII of both cases, LIKE's own characters, a backslash (PostgreSQL's LIKE escape),
# quotes, and letters whose case only PostgreSQL's lower() folds (É, Σ and a final ς, İ, ß,
# full-width Ａ).
ALPHABET = "陈张伟王老客户李aAbBzZ01 -\"'\\%_ÉéΣσςİiıßＡａ"
TEXT = st.text(alphabet=ALPHABET, max_size=6)


@st.composite
def scenes(draw) -> dict[str, Any]:
    """Customers (id, name), relations (guide, customer, remark), and words of one or two
    characters: drawn, or pieces of the texts (their case swapped now and then)."""
    count = draw(st.integers(min_value=1, max_value=8))
    customers = [
        (f"w{i}{draw(st.text(alphabet='aAbB0_%', max_size=3))}", draw(st.none() | TEXT))
        for i in range(count)
    ]
    relations = []
    for ext, _ in customers:
        for guide in draw(st.lists(st.sampled_from(GUIDES), unique=True, max_size=2)):
            relations.append((guide, ext, draw(st.none() | TEXT)))
    texts = [t for _, name in customers if name for t in (name,)]
    texts += [ext for ext, _ in customers] + [r for _, _, r in relations if r]
    pieces = sorted({t[i : i + n] for t in texts for n in (1, 2) for i in range(len(t) - n + 1)})
    piece = st.sampled_from(pieces) if pieces else st.nothing()
    swapped = piece.map(str.swapcase)
    words = draw(
        st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=2) | piece | swapped, max_size=8)
    )
    return {"customers": customers, "relations": relations, "words": words}


def collect(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """Hypothesis draws (it cannot drive an async test); the databases get every example."""
    drawn: list[Any] = []

    @settings(
        max_examples=count, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(strategy)
    def draw(example: Any) -> None:
        drawn.append(example)

    draw()
    return drawn


@functools.cache
def drawn_scenes() -> list[dict[str, Any]]:
    """The scenes, drawn once per process when a test first asks (not at import: every process
    that collects the suite imported this module, and the drawing took seconds)."""
    return collect(scenes(), examples(100))


@pytest.fixture
async def sessions(database_url):
    engine = create_engine(database_url)
    yield create_session_factory(engine)
    await engine.dispose()


async def _corp(sessions) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            insert(Department),
            [dict(id=11, name="张江店", parent_id=None, code="S11", updated_at=NOW)],
        )
        await session.execute(
            insert(Guide),
            [dict(userid=g, name=f"导购{g}", main_department=11, updated_at=NOW) for g in GUIDES],
        )


async def _scene(session, scene: dict[str, Any]) -> None:
    """The scene's rows in place of the last one's (the delete triggers at work too)."""
    await session.execute(delete(Relation))
    await session.execute(delete(Customer))
    await _add_scene(session, scene, NOW)


async def _add_scene(session, scene: dict[str, Any], at: datetime) -> None:
    """The scene's customers, added around `at`, and their active relations."""
    await session.execute(
        insert(Customer),
        [
            dict(
                external_userid=ext,
                name=name,
                created_at=at - timedelta(seconds=n % 3),  # ties on purpose
                updated_at=at,
            )
            for n, (ext, name) in enumerate(scene["customers"])
        ],
    )
    if scene["relations"]:
        await session.execute(
            insert(Relation),
            [
                dict(
                    guide_userid=g,
                    external_userid=ext,
                    status="active",
                    store_id=11,
                    remark=remark,
                    created_at=at,
                    last_event_at=at,
                    updated_at=at,
                )
                for g, ext, remark in scene["relations"]
            ],
        )


async def _scanned(session, words: str, guide: str | None) -> list[str]:
    """What reading every customer answers (the search before migration 0030), in the
    search's order: ILIKE on each column, the remarks of the relations the filter keeps; the
    id from three characters on (migration 0032)."""
    words = words.replace("%", "").replace("_", "")
    like = f"%{words}%"
    kept = [Relation.guide_userid == guide] if guide else []
    by_id = Customer.external_userid.ilike(like) if len(words) >= 3 else false()
    query = select(Customer.external_userid).where(
        or_(
            Customer.name.ilike(like),
            by_id,
            exists().where(
                Relation.external_userid == Customer.external_userid,
                Relation.remark.ilike(like),
                *kept,
            ),
        ),
        exists().where(Relation.external_userid == Customer.external_userid, *kept),
    )
    query = query.order_by(Customer.created_at.desc(), Customer.external_userid)
    return list(await session.scalars(query))


async def test_short_words_answer_what_a_scan_answers(sessions):
    await _corp(sessions)
    async with sessions() as session:
        assert await grams.available(session)
    for scene in drawn_scenes():
        async with sessions() as session, session.begin():
            await _scene(session, scene)
        async with sessions() as session:
            for words in scene["words"]:
                for guide in (None, "g1"):
                    page = await queries.search_customers(
                        session, words=words, guide=guide, related_only=True, per_page=100
                    )
                    got = [c.external_userid for c in page.customers]
                    expected = await _scanned(session, words, guide)
                    assert (got, page.total) == (expected, len(expected)), (words, guide, scene)
    async with sessions() as session:
        if session.bind.dialect.name == "sqlite":
            # The triggers kept the pieces of what is there now, and nothing else.
            kept = await gram_entries(session)
            await word_index.rebuild(session)
            assert kept == await gram_entries(session)
            await session.rollback()


async def _found(session, words: str) -> list[str]:
    page = await queries.search_customers(session, words=words, related_only=True)
    return [c.external_userid for c in page.customers]


async def test_a_short_word_finds_names_and_remarks_and_an_id_needs_three_characters(sessions):
    """A piece of one or two characters of WeCom's opaque ids is in a large share of them
    (migration 0032): 李 and Li find the customer named so and the one remarked so, not the ids
    that hold li; three characters of an id find it, in either case. On SQLite an unnamed
    customer has no entry in the index of pieces until named, and none again when unnamed."""
    await _corp(sessions)
    scene = {
        "customers": [("wmLiQ7", None), ("wmxA9", "李Li"), ("wmzB3", None), ("wmkLI", "陈")],
        "relations": [("g1", "wmLiQ7", None), ("g1", "wmxA9", None), ("g2", "wmzB3", "老李 li")],
    }
    scene["relations"].append(("g2", "wmkLI", None))
    async with sessions() as session, session.begin():
        await _scene(session, scene)
    async with sessions() as session:
        assert await grams.available(session)
        assert await _found(session, "li") == ["wmxA9", "wmzB3"]  # newest first
        assert await _found(session, "李") == ["wmxA9", "wmzB3"]
        assert await _found(session, "Q7") == []
        assert await _found(session, "wm") == []
        assert await _found(session, "LIq") == ["wmLiQ7"]
        assert await _found(session, "kli") == ["wmkLI"]
        if session.bind.dialect.name != "sqlite":
            return
        keys = {key for table, _, key in await gram_entries(session) if table == "customer"}
        assert keys == {"wmxA9", "wmkLI"}
    for name, named in (("Q 先生", True), ("", False), (None, False)):
        async with sessions() as session, session.begin():
            await session.execute(
                text("UPDATE customers SET name = :name WHERE external_userid = 'wmLiQ7'"),
                {"name": name},
            )
        async with sessions() as session:
            entries = await gram_entries(session)
            assert any(key == "wmLiQ7" for _, _, key in entries) is named, name
            assert await _found(session, "先生") == (["wmLiQ7"] if named else [])
            await word_index.rebuild(session)
            assert entries == await gram_entries(session)
            await session.rollback()


# ---- at a size where the planner has a choice -------------------------------------------------


async def _many(sessions, count: int, name: str, remark: str) -> None:
    """`count` customers, each with a relation, named and remarked by the SQL expressions
    `name` and `remark` of their number n, written by the database itself."""
    async with sessions() as session, session.begin():
        postgres = session.bind.dialect.name == "postgresql"
        numbers = (
            f"generate_series(1, {count}) AS s(n)"
            if postgres
            else f"(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s "
            f"WHERE n < {count}) SELECT n FROM s)"
        )
        at = "now()" if postgres else "'2026-05-01 04:00:00.000000'"
        true = "true" if postgres else "1"
        await session.execute(
            text(
                "INSERT INTO customers (external_userid, name, created_at, updated_at) "
                f"SELECT 'wm' || n, {name}, {at}, {at} FROM {numbers}"
            )
        )
        await session.execute(
            text(
                "INSERT INTO relations (guide_userid, external_userid, status, confirmed, "
                "store_id, remark, tags, remark_mobiles, created_at, last_event_at, updated_at) "
                f"SELECT 'g' || (1 + n % 2), 'wm' || n, 'active', {true}, 11, {remark}, '[]', "
                f"'[]', {at}, {at}, {at} FROM {numbers}"
            )
        )
        if postgres:
            await _ready_for_plans(session)


async def _ready_for_plans(session) -> None:
    """Statistics as the planner would find them on a database kept by autovacuum."""
    # The GIN indexes' pending lists merged first: rows inserted go to a GIN index's pending
    # list until it passes gin_pending_list_limit or a VACUUM or autovacuum's ANALYZE merges
    # it (not ours: autovacuum is off here), and the planner costs an index scan by those
    # pages too. The list also still holds what earlier tests inserted into the emptied
    # database, so the plans depended on which tests ran before (seen with three and four
    # workers: the id's trigram index left out of the plans). Then every table, not only the
    # two filled here, for the same reason.
    await session.execute(
        text(
            "SELECT gin_clean_pending_list(i.indexrelid) FROM pg_index AS i "
            "JOIN pg_class AS c ON c.oid = i.indexrelid JOIN pg_am AS a ON a.oid = c.relam "
            "WHERE a.amname = 'gin' AND c.relnamespace = 'public'::regnamespace"
        )
    )
    await session.execute(text("ANALYZE"))


async def _statements(session, call) -> list[tuple[str, Any]]:
    """The statements `call` ran on the session's connection, with their parameters."""
    seen: list[tuple[str, Any]] = []
    engine = session.bind.sync_engine

    def listen(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", listen)
    try:
        await call()
    finally:
        event.remove(engine, "before_cursor_execute", listen)
    return seen


async def _searched(session, words: str) -> tuple[Any, list[tuple[str, Any]]]:
    """HQ's search for `words` (customers with a relation): its page, and the statements run."""
    found: list[Any] = []

    async def search() -> None:
        found.append(
            await queries.search_customers(
                session, words=words, related_only=True, count_up_to=queries.COUNT_UP_TO
            )
        )

    ran = await _statements(session, search)
    return found[0], ran


async def _plan(session, statement: str, parameters: Any) -> str:
    connection = await session.connection()
    if session.bind.dialect.name == "postgresql":
        rows = await connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
    else:
        rows = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
    return "\n".join(str(row) for row in rows.all())


async def test_a_rare_short_word_is_read_from_the_indexes(sessions):
    """20,000 customers, one in a thousand named 张伟 and one in a thousand remarked 老客: the
    search's count and page read the indexes of pieces (EXPLAIN; on PostgreSQL after ANALYZE,
    so the planner weighs a real choice), and answer what the scan answers."""
    await _corp(sessions)
    await _many(
        sessions,
        20_000,
        "CASE WHEN n % 1000 = 7 THEN '张伟' ELSE '客户' END || n",
        "CASE WHEN n % 1000 = 501 THEN '老客' ELSE '备注' END || n",
    )
    async with sessions() as session:
        assert await grams.available(session)  # known from here on
        for words in ("张", "张伟", "老客", "老"):
            expected = await _scanned(session, words, None)
            assert len(expected) == 20, words

            page, ran = await _searched(session, words)
            assert ([c.external_userid for c in page.customers], page.total) == (
                expected,
                len(expected),
            )
            # The count and the page (the count or estimate of the word's entries reads no
            # customer).
            postgres = session.bind.dialect.name == "postgresql"
            read = [
                (s, p)
                for s, p in ran
                if s.startswith("SELECT") and "FROM customers" in s and "grams" in s
            ]
            assert len(read) == 2, ran
            for statement, parameters in read:
                plan = await _plan(session, statement, parameters)
                if postgres:
                    assert "ix_customers_name_grams" in plan, (words, plan)
                    assert "ix_relations_remark_grams" in plan, (words, plan)
                else:
                    assert "customer_words_grams VIRTUAL TABLE" in plan, (words, plan)
                    assert "relation_remarks_grams VIRTUAL TABLE" in plan, (words, plan)


async def test_a_longer_word_is_read_from_each_columns_trigram_index_on_postgresql(sessions):
    """Three characters or more on PostgreSQL: the name's, the id's (over lower(), migration
    0031) and the remark's trigram indexes answer an arm each; the answer is the scan's. At
    this size a scan is the planner's cheaper choice, so it is told to avoid scans: an arm no
    index can answer is still scanned."""
    async with sessions() as session:
        if session.bind.dialect.name != "postgresql":
            pytest.skip("SQLite reads FTS5 for these (tests/contacts/test_reads_at_scale.py)")
    await _corp(sessions)
    # Ids, names and remarks as varied as a brand's: a piece of one is in few others. 2,000 of
    # them: with scans turned off below, the plans need no more (20,000 took ten seconds).
    async with sessions() as session, session.begin():
        numbers = "generate_series(1, 2000) AS s(n)"
        await session.execute(
            text(
                "INSERT INTO customers (external_userid, name, created_at, updated_at) "
                f"SELECT 'wm' || md5(n::text), '客户' || md5(n::text), now(), now() FROM {numbers}"
            )
        )
        await session.execute(
            text(
                "INSERT INTO relations (guide_userid, external_userid, status, confirmed, "
                "store_id, remark, tags, remark_mobiles, created_at, last_event_at, updated_at) "
                "SELECT 'g' || (1 + n % 2), 'wm' || md5(n::text), 'active', true, 11, "
                f"'备注' || md5(n::text), '[]', '[]', now(), now(), now() FROM {numbers}"
            )
        )
        await _ready_for_plans(session)
    digest = hashlib.md5(b"1234").hexdigest()
    async with sessions() as session:
        for words in (digest[3:11].upper(), "客户" + digest[:6], "备注" + digest[:6]):
            expected = await _scanned(session, words, None)
            assert expected, words
            page, ran = await _searched(session, words)
            assert [c.external_userid for c in page.customers] == expected, words
            connection = await session.connection()
            await connection.exec_driver_sql("SET enable_seqscan = off")
            plans = [
                await _plan(session, statement, parameters)
                for statement, parameters in ran
                if statement.startswith("SELECT") and "FROM customers" in statement
            ]
            await connection.exec_driver_sql("RESET enable_seqscan")
            for index in (
                "ix_customers_name_trgm",
                "ix_customers_userid_lower_trgm",
                "ix_relations_remark_trgm",
            ):
                assert any(index in plan for plan in plans), (words, index, plans)


async def test_a_word_most_customers_hold_is_scanned_as_before(sessions):
    """12,000 customers named 陈: more than the index could read as fast as the scan stops
    (guidebot.contacts.grams), so the search checks each customer read in place, stopping at
    the capped count, and reads no index of pieces; the answers are the scan's, which looks
    for a word that short in names and remarks, not ids (three customers, the newest, have it
    in their ids only)."""
    await _corp(sessions)
    await _many(sessions, 12_000, "'陈' || n", "NULL")
    in_ids_only = {
        "customers": [(f"wm陈{n}", "王") for n in range(3)],
        "relations": [("g1", f"wm陈{n}", None) for n in range(3)],
    }
    async with sessions() as session, session.begin():
        await _add_scene(session, in_ids_only, NOW + timedelta(days=3650))
    async with sessions() as session:
        assert await grams.available(session)  # known from here on
        expected = await _scanned(session, "陈", None)
        assert not [ext for ext in expected if ext.startswith("wm陈")]
        found: list[Any] = []

        async def search() -> None:
            found.append(
                await queries.search_customers(
                    session, words="陈", related_only=True, count_up_to=queries.COUNT_UP_TO
                )
            )

        ran = [s for s, _ in await _statements(session, search)]
        [page] = found
        assert (page.total, page.more) == (queries.COUNT_UP_TO, True)
        assert [c.external_userid for c in page.customers] == expected[: page.per_page]
        # The probe counted the index's entries; the count and the page read no index of pieces.
        [probe] = [n for n, s in enumerate(ran) if "grams" in s]
        read = [s for s in ran[probe + 1 :] if "FROM customers" in s]
        assert len(read) == 2 and not [s for s in read if "grams" in s], ran


# ---- the migration ----------------------------------------------------------------------------


@pytest.fixture
async def before_0030(request, tmp_path):
    """An empty database migrated to 0029: the rows are there before migration 0030 is."""
    return await migrated_to(request, tmp_path, "0029")


@contextlib.asynccontextmanager
async def _sessions_on(url: str) -> AsyncIterator[Any]:
    """Sessions of an engine of the migration test's own database, disposed of after."""
    engine = create_engine(url)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


async def _seed(url: str, scene: dict[str, Any]) -> None:
    async with _sessions_on(url) as sessions:
        await _corp(sessions)
        async with sessions() as session, session.begin():
            await _scene(session, scene)


async def _objects(url: str) -> set[str]:
    """The objects 0030 makes: PostgreSQL's function and indexes, SQLite's tables."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                found = await conn.execute(
                    text(
                        "SELECT relname FROM pg_class WHERE relname LIKE '%grams' UNION ALL "
                        "SELECT proname FROM pg_proc WHERE proname = 'search_grams'"
                    )
                )
            else:
                found = await conn.execute(
                    text("SELECT name FROM sqlite_master WHERE name LIKE '%grams'")
                )
            return set(found.scalars())
    finally:
        await engine.dispose()


@pytest.mark.parametrize("before_0030", ["sqlite", "postgresql"], indirect=True)
async def test_migration_0030_indexes_what_is_there_and_goes_down_again(before_0030):
    """Upgrading a brand's database: the pieces of the rows already there are indexed and
    searched with the scan's answers; the downgrade takes every object away and leaves 0028's
    word indexes kept by their triggers; and the upgrade runs again."""
    url = before_0030
    scene = {
        "customers": [("wmA1", "张伟"), ("wmA2", "Alice 陈"), ("wmA3", None)],
        "relations": [("g1", "wmA1", "老客户"), ("g2", "wmA3", "VIP 李")],
    }
    await _seed(url, scene)
    made = GRAM_INDEXES | {"search_grams"}
    if "sqlite" in url:
        made = {"customer_words_grams", "relation_remarks_grams"}
    for _ in range(2):  # up, down, and up again
        assert not await _objects(url) & made
        await upgrade(url)
        assert made <= await _objects(url)
        async with _sessions_on(url) as sessions, sessions() as session:
            assert await grams.available(session)
            for words in ("张", "伟", "al", "陈", "老客", "李", "a3", "无"):
                page = await queries.search_customers(session, words=words, related_only=True)
                got = [c.external_userid for c in page.customers]
                assert got == await _scanned(session, words, None), words
        await asyncio.to_thread(command.downgrade, alembic_config(url), "0029")
    assert not await _objects(url) & made
    # 0028's triggers are back: a new remark is found by its trigram index.
    async with _sessions_on(url) as sessions:
        async with sessions() as session, session.begin():
            await session.execute(
                text("UPDATE relations SET remark = '新的备注' WHERE external_userid = 'wmA1'")
            )
        async with sessions() as session:
            page = await queries.search_customers(session, words="新的备", related_only=True)
            assert [c.external_userid for c in page.customers] == ["wmA1"]


@pytest.fixture
async def before_0032(request, tmp_path):
    """An empty database migrated to 0031: the rows are there before migration 0032 is."""
    return await migrated_to(request, tmp_path, "0031")


def _hex(words: str) -> str:
    """A piece as the index of pieces holds it (FTS5's ascii tokenizer folds the hex)."""
    return words.lower().encode().hex()


@pytest.mark.parametrize("before_0032", ["sqlite"], indirect=True)
async def test_migration_0032_takes_the_ids_pieces_out_and_puts_them_back(before_0032):
    """SQLite (PostgreSQL's index: tests/pg/test_concurrent_indexes.py): upgrading leaves the
    pieces of the names already there, and none of their ids, nothing of an unnamed customer,
    as word_index.rebuild indexes them; downgrading puts 0030's triggers and pieces back."""
    url = before_0032
    scene = {
        "customers": [("wmA1", "张伟"), ("wmA3", None)],
        "relations": [("g1", "wmA1", "老客户"), ("g2", "wmA3", "VIP 李")],
    }
    await _seed(url, scene)
    async with _sessions_on(url) as sessions, sessions() as session:
        before = await gram_entries(session)
    id_pieces = {("customer", _hex(p), "wmA1") for p in ("w", "wm", "a1", "1")}
    assert id_pieces <= before and ("customer", _hex("a3"), "wmA3") in before
    await upgrade(url)
    async with _sessions_on(url) as sessions, sessions() as session:
        after = await gram_entries(session)
        names = {("customer", _hex(p), "wmA1") for p in ("张", "张伟", "伟")}
        remarks = {entry for entry in before if entry[0] == "remark"}
        assert after == names | remarks
        await word_index.rebuild(session)
        assert after == await gram_entries(session)
        await session.rollback()
        assert await _found(session, "张") == ["wmA1"] and await _found(session, "a1") == []
    await asyncio.to_thread(command.downgrade, alembic_config(url), "0031")
    async with _sessions_on(url) as sessions, sessions() as session:
        assert await gram_entries(session) == before


def test_the_triggers_index_what_the_rebuild_indexes():
    """The pieces' SQL of the migrations' triggers is word_index.rebuild's, and 0032's refill
    of the customers' pieces is the rebuild's (one spelling)."""
    assert GRAMS_0030.pieces("x") == word_index.pieces("x")
    assert GRAMS_0032.fill()[1] in word_index.REBUILD
