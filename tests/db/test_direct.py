"""The add path's statements on the driver (guidebot.db.direct) are SQLAlchemy's statements.

Each statement here runs both ways on the same rows, SQLAlchemy's `session.execute` and
`Direct.execute` (on SQLite inside `inline_statements()`), and the two must send the same SQL
with the same arguments (heard by the engine's `before_cursor_execute`, where the tests that count
an add's statements listen) and give the same rows, with the same names, and the same row counts,
on sqlite3 and on asyncpg alike. Where a statement may not run on the driver (outside a
transaction; on SQLite outside inline_statements() or before the transaction has its connection)
it is SQLAlchemy's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import bindparam, event, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError

from guidebot.contacts.add_look import _LOOK as LOOK
from guidebot.contacts.models import Customer, Department, Guide, Relation, StoreMembership
from guidebot.db.direct import Direct, savepoint
from guidebot.db.engine import create_engine, create_session_factory
from guidebot.db.one_hop import inline_statements
from guidebot.sop.models import SopEnrollment
from tests.fuzzing import examples

NOW = datetime(2026, 11, 20, 12, 0, 0, 123456, tzinfo=UTC)
CUSTOMERS = Customer.__table__


@pytest.fixture
async def sessions(database_url):
    engine = create_engine(database_url)
    sessions = create_session_factory(engine)
    async with sessions() as session, session.begin():
        await session.execute(
            insert(Department.__table__),
            [
                {
                    "id": 11,
                    "name": "张江店",
                    "code": "S11",
                    "timezone": "Asia/Shanghai",
                    "updated_at": NOW,
                },
                {"id": 12, "name": "徐汇店", "code": "S12", "timezone": None, "updated_at": NOW},
            ],
        )
        await session.execute(
            insert(Guide.__table__),
            [
                {"userid": "g1", "name": "王芳", "main_department": 11, "updated_at": NOW},
                {"userid": "g2", "name": "", "main_department": 12, "updated_at": NOW},
            ],
        )
        await session.execute(
            insert(StoreMembership.__table__),
            [
                {"guide_userid": "g1", "store_id": 11, "valid_from": NOW - timedelta(days=9)},
                {"guide_userid": "g2", "store_id": 12, "valid_from": NOW - timedelta(days=9)},
            ],
        )
    yield sessions
    await engine.dispose()


def heard(sessions) -> tuple[list[tuple[str, tuple, bool]], Callable[[], None]]:
    """What the engine's before_cursor_execute hears: (SQL, arguments, SQLAlchemy's own run)."""
    seen: list[tuple[str, tuple, bool]] = []

    def listen(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, tuple(parameters or ()), context is not None))

    engine = sessions.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", listen)
    return seen, lambda: event.remove(engine, "before_cursor_execute", listen)


async def each_way(sessions, run) -> list[tuple[Any, list[tuple[str, tuple, bool]]]]:
    """`run(session, on_driver)` by SQLAlchemy, then on the driver, each in its own rolled-back
    transaction so both start from the same rows: what each gave, and what it sent (the SQL,
    its arguments, and whether SQLAlchemy's own execution sent it)."""
    outcomes = []
    for on_driver in (False, True):
        seen, stop = heard(sessions)
        try:
            with inline_statements():
                async with sessions() as session, session.begin():
                    await session.connection()
                    got = await run(session, on_driver)
                    await session.rollback()
        finally:
            stop()
        outcomes.append((got, [sent for sent in seen if not sent[0].startswith("BEGIN")]))
    return outcomes


async def both_ways(sessions, statement, params, *, on_driver: bool = True) -> tuple:
    """(SQLAlchemy's rows, their names, rowcount, what it sent), then the driver's."""
    direct = Direct(statement)

    async def run(session, driver: bool):
        if driver:
            ran = await direct.execute(session, params)
            rows, count = ran.rows, ran.rowcount
        else:
            result = await session.execute(statement, params)
            rows, count = (result.all() if result.returns_rows else []), result.rowcount
        return [tuple(r) for r in rows], [r._fields for r in rows], count

    outcomes = []
    for n, (got, sent) in enumerate(await each_way(sessions, run)):
        assert [own for *_, own in sent] == [not (n and on_driver)], "which path ran it"
        outcomes.append((*got, [(sql, args) for sql, args, _ in sent]))
    return outcomes[0], outcomes[1]


SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)


def insert_or_ignore(sessions, table):
    """INSERT that skips a row whose key is taken, in the engine's own words."""
    if sessions.kw["bind"].dialect.name == "sqlite":
        return insert(table).prefix_with("OR IGNORE")
    return pg_insert(table).on_conflict_do_nothing()


@BOTH
async def test_the_adds_look_reads_the_same_with_a_literal_limit_and_typed_instants(sessions):
    for guide, ext in (("g1", "wmc1"), ("g2", "wmc2"), ("nobody", "wmc3")):
        params = {"guide": guide, "ext": ext, "state": None, "at": NOW}
        by_sqlalchemy, direct = await both_ways(sessions, LOOK.statement, params)
        assert direct == by_sqlalchemy
        [row] = direct[0]
        if guide == "g1":
            assert row[0] == "王芳" and row[-3:] == ("S11", "Asia/Shanghai", "张江店")


@BOTH
async def test_an_upsert_writes_the_same_values_and_counts_the_same_rows(sessions):
    statement = (
        insert_or_ignore(sessions, CUSTOMERS)
        .values(
            external_userid=bindparam("ext"),
            name=bindparam("name"),
            created_at=bindparam("at"),
            updated_at=bindparam("at"),
        )
        .returning(CUSTOMERS.c.external_userid, CUSTOMERS.c.created_at)
    )
    by_sqlalchemy, direct = await both_ways(
        sessions, statement, {"ext": "w1", "name": "陈", "at": NOW}
    )
    assert direct == by_sqlalchemy
    assert direct[0] == [("w1", NOW)]  # the instant read back as SQLAlchemy reads it: aware UTC


@BOTH
async def test_an_update_counts_the_rows_it_changed(sessions):
    statement = (
        update(Guide.__table__)
        .where(Guide.__table__.c.main_department == bindparam("store"))
        .values(name=bindparam("new_name"))
    )
    for store in (11, 99):
        by_sqlalchemy, direct = await both_ways(
            sessions, statement, {"store": store, "new_name": "新"}
        )
        assert direct == by_sqlalchemy
        assert direct[2] == (1 if store == 11 else 0)


@BOTH
async def test_a_list_is_laid_out_per_run_and_an_empty_one_is_sqlalchemys(sessions):
    enrollments = SopEnrollment.__table__
    statement = select(enrollments.c.id, enrollments.c.playbook_id).where(
        enrollments.c.playbook_id.in_(bindparam("playbooks", expanding=True)),
        enrollments.c.external_userid == bindparam("ext"),
    )
    for playbooks in (["a"], ["a", "b", "c"]):
        by_sqlalchemy, direct = await both_ways(
            sessions, statement, {"playbooks": playbooks, "ext": "w"}
        )
        assert direct == by_sqlalchemy
        [(sql, args)] = direct[3]
        assert sorted(args) == sorted([*playbooks, "w"])
        assert sql.split(" IN (")[1].split(")")[0].count(",") == len(playbooks) - 1
    seen, stop = heard(sessions)
    try:
        with inline_statements():
            async with sessions() as session, session.begin():
                await session.connection()
                ran = await Direct(statement).execute(session, {"playbooks": [], "ext": "w"})
    finally:
        stop()
    assert ran.rows == []
    assert [own for sql, _, own in seen if not sql.startswith("BEGIN")] == [True]


@SQLITE
async def test_outside_inline_statements_or_a_transaction_sqlalchemy_runs_it(sessions):
    direct = Direct(select(Guide.__table__.c.name).where(Guide.__table__.c.userid == "g1"))
    seen, stop = heard(sessions)
    try:
        async with sessions() as session, session.begin():
            assert (await direct.execute(session, {})).scalar() == "王芳"
        with inline_statements():
            async with sessions() as session:
                assert (await direct.execute(session, {})).scalar() == "王芳"
            async with sessions() as session, session.begin():  # the first begins it
                assert (await direct.execute(session, {})).scalar() == "王芳"
                assert (await direct.execute(session, {})).scalar() == "王芳"
    finally:
        stop()
    ran_by_sqlalchemy = [own for sql, _, own in seen if "guides" in sql]
    assert ran_by_sqlalchemy == [True, True, False, False]


@BOTH
async def test_a_drivers_error_is_sqlalchemys_and_rolls_back_with_the_transaction(sessions):
    direct = Direct(
        insert(CUSTOMERS).values(
            external_userid=bindparam("ext"), created_at=bindparam("at"), updated_at=bindparam("at")
        )
    )
    with inline_statements(), pytest.raises(IntegrityError):
        async with sessions() as session, session.begin():
            await direct.execute(session, {"ext": "w9", "at": NOW})
            await direct.execute(session, {"ext": "w9", "at": NOW})
    async with sessions() as session:
        assert (await session.execute(select(CUSTOMERS.c.external_userid))).all() == []


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_on_postgresql_it_runs_on_asyncpg_in_any_transaction_and_begins_it(sessions):
    """asyncpg runs on the loop either way: inside any transaction (no inline_statements()
    needed) the statement is the driver's, the first one of a transaction too (it begins it, as
    SQLAlchemy's cursor would); outside one it is SQLAlchemy's."""
    direct = Direct(select(Guide.__table__.c.name).where(Guide.__table__.c.userid == "g1"))
    seen, stop = heard(sessions)
    try:
        async with sessions() as session:
            assert (await direct.execute(session, {})).scalar() == "王芳"
        async with sessions() as session, session.begin():
            assert (await direct.execute(session, {})).scalar() == "王芳"
            assert (await direct.execute(session, {})).scalar() == "王芳"
            assert await session.scalar(select(func.txid_current_if_assigned())) is None
            await session.execute(update(Guide.__table__).values(name="王芳"))
            mine = await session.scalar(select(func.txid_current_if_assigned()))
            # one transaction, SQLAlchemy's and the driver's alike
            written = await Direct(select(func.txid_current_if_assigned())).execute(session, {})
            assert written.scalar() == mine is not None
    finally:
        stop()
    ran_by_sqlalchemy = [own for sql, _, own in seen if "guides.name" in sql]
    assert ran_by_sqlalchemy == [True, False, False]


@BOTH
async def test_a_statement_inside_a_savepoint_rolls_back_with_it(sessions):
    """SQLAlchemy emits a savepoint at the first statement after begin_nested(): a statement
    on the driver must make it do so, or a failed event's writes would stay in its batch."""
    direct = Direct(
        insert(CUSTOMERS).values(
            external_userid=bindparam("ext"), created_at=bindparam("at"), updated_at=bindparam("at")
        )
    )
    with inline_statements():
        async with sessions() as session, session.begin():
            await direct.execute(session, {"ext": "kept", "at": NOW})
            with pytest.raises(RuntimeError):
                async with session.begin_nested():
                    await direct.execute(session, {"ext": "undone", "at": NOW})
                    raise RuntimeError("the event failed")
            async with session.begin_nested():
                await direct.execute(session, {"ext": "also kept", "at": NOW})
    async with sessions() as session:
        kept = await session.scalars(
            select(CUSTOMERS.c.external_userid).order_by("external_userid")
        )
        assert list(kept) == ["also kept", "kept"]


@BOTH
async def test_several_rows_go_in_as_one_statement_as_sqlalchemys_executemany(sessions):
    """An executemany of an INSERT ... RETURNING is one statement of several VALUES rows in
    SQLAlchemy ("insertmanyvalues"); insert_rows writes the same statement."""
    statement = insert_or_ignore(sessions, CUSTOMERS).returning(
        CUSTOMERS.c.external_userid, CUSTOMERS.c.name, CUSTOMERS.c.created_at
    )
    rows = [
        {"external_userid": f"w{n}", "name": f"顾客{n}", "created_at": NOW, "updated_at": NOW}
        for n in range(3)
    ]

    async def run(session, on_driver: bool):
        if on_driver:
            return sorted(tuple(r) for r in await Direct(statement).insert_rows(session, rows))
        return sorted(tuple(r) for r in (await session.execute(statement, rows)).all())

    (by_sqlalchemy, sqlalchemy_sent), (direct, direct_sent) = await each_way(sessions, run)
    assert direct == by_sqlalchemy == [(f"w{n}", f"顾客{n}", NOW) for n in range(3)]
    [(sql, args, own)] = direct_sent
    assert [(sql, args)] == [(s, a) for s, a, _ in sqlalchemy_sent] and not own
    if sessions.kw["bind"].dialect.name == "sqlite":
        assert sql.count("(?, ?, ?, ?)") == 3
    else:  # each row's parameters numbered on from the one before's
        assert "$12::" in sql and "$13" not in sql and len(args) == 12


RELATIONS = Relation.__table__
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_INSTANTS = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.timezones()
)
_RELATION_ROWS = st.lists(
    st.fixed_dictionaries(
        {
            "guide_userid": st.sampled_from(["g1", "g2"]),
            "status": st.sampled_from(["active", "lost", "removed"]),
            "created_at": st.none() | _INSTANTS,
            "confirmed": st.booleans(),
            "state": st.none() | _TEXT,
            "store_id": st.none() | st.sampled_from([11, 12]),
            "add_way": st.none() | st.integers(-(2**31), 2**31 - 1),
            "remark": st.none() | _TEXT,
            "tags": st.lists(st.fixed_dictionaries({"id": _TEXT, "name": _TEXT}), max_size=3),
            "remark_mobiles": st.lists(_TEXT, max_size=3),
            "last_event_at": _INSTANTS,
            "updated_at": _INSTANTS,
        }
    ),
    min_size=1,
    max_size=4,
)


def without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {key: without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    return value


@BOTH
async def test_any_values_are_bound_and_read_back_as_sqlalchemy_does(sessions):
    """Text of any script, JSON, booleans, integers at their bounds and instants in any zone
    (stored as UTC, read back aware): the driver's run sends what SQLAlchemy's sends and reads
    what it reads, through an INSERT of several rows and a SELECT of them. (PostgreSQL's text
    holds no NUL character: it is taken out there, for both ways alike.)"""
    drawn: list[list[dict]] = []
    sqlite = sessions.kw["bind"].dialect.name == "sqlite"

    @settings(
        max_examples=examples(300),
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(_RELATION_ROWS)
    def draw(rows: list[dict]) -> None:
        drawn.append(rows)

    draw()
    async with sessions() as session, session.begin():
        await session.execute(
            insert(CUSTOMERS),
            [{"external_userid": f"w{n}", "created_at": NOW, "updated_at": NOW} for n in range(4)],
        )
    # (not the id: PostgreSQL's sequence goes on past a rolled-back run)
    columns = [column for column in RELATIONS.c if column.name != "id"]
    write = RELATIONS.insert().returning(*columns)
    read = select(*columns).order_by(RELATIONS.c.external_userid)
    for rows in drawn:
        rows = [row | {"external_userid": f"w{n}"} for n, row in enumerate(rows)]
        rows = rows if sqlite else without_nul(rows)

        async def run(session, on_driver: bool, rows=rows):
            if on_driver:
                written = await Direct(write).insert_rows(session, rows)
                found = await Direct(read).execute(session, {})
            else:
                written = await session.execute(write, rows)
                found = await session.execute(read)
            return sorted(map(tuple, written), key=repr), [tuple(r) for r in found]

        outcomes = [
            (got, [(sql, args) for sql, args, _ in sent])
            for got, sent in await each_way(sessions, run)
        ]
        assert outcomes[1] == outcomes[0]


@BOTH
async def test_what_cannot_be_planned_is_sqlalchemys_and_said_once(sessions, caplog):
    """An ORM statement's rows are the ORM's to load: SQLAlchemy runs it, as it runs anything
    the driver's plan cannot hold, and the log says so once."""
    direct = Direct(select(Guide.name).where(Guide.userid == "g1"))
    seen, stop = heard(sessions)
    try:
        with inline_statements(), caplog.at_level("WARNING", logger="guidebot.db.direct"):
            async with sessions() as session, session.begin():
                await session.connection()
                for _ in range(2):
                    assert (await direct.execute(session, {})).scalar() == "王芳"
    finally:
        stop()
    assert [own for sql, _, own in seen if "guides" in sql] == [True, True]
    [said] = [r.getMessage() for r in caplog.records if r.name == "guidebot.db.direct"]
    assert "SQLAlchemy runs SELECT guides.name" in said and "Core statements only" in said


@BOTH
async def test_a_run_flushes_what_the_session_holds_pending_as_sqlalchemys_does(sessions):
    """session.execute autoflushes before a Core statement too: a pending object is in the
    database when the statement runs. A run on the driver does the same."""
    ask = select(Guide.__table__.c.name).where(Guide.__table__.c.userid == "g3")
    seen = []
    for inline in (False, True):
        with inline_statements() if inline else contextlib.nullcontext():
            async with sessions() as session, session.begin():
                await session.connection()
                session.add(Guide(userid="g3", name="张伟", main_department=11, updated_at=NOW))
                seen.append((await Direct(ask).execute(session, {})).scalar())
                await session.rollback()
    assert seen == ["张伟", "张伟"]


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
async def test_a_savepoint_takes_back_its_blocks_writes_and_nothing_before_it(sessions):
    """db.direct's savepoint, on the driver where a Direct runs there: a block that raises
    loses its own writes, not those before it (a change the session held pending is flushed
    first) or after it, and the error goes on."""
    write = Direct(
        insert(CUSTOMERS).values(
            external_userid=bindparam("ext"), created_at=bindparam("at"), updated_at=bindparam("at")
        )
    )
    seen, stop = heard(sessions)
    try:
        with inline_statements():
            async with sessions() as session, session.begin():
                await write.execute(session, {"ext": "before", "at": NOW})
                session.add(Guide(userid="g3", name="张伟", main_department=11, updated_at=NOW))
                with pytest.raises(RuntimeError, match="the block failed"):
                    async with savepoint(session):
                        await write.execute(session, {"ext": "undone", "at": NOW})
                        raise RuntimeError("the block failed")
                async with savepoint(session):
                    await write.execute(session, {"ext": "kept", "at": NOW})
                    async with savepoint(session):  # nested in it
                        await write.execute(session, {"ext": "nested", "at": NOW})
    finally:
        stop()
    async with sessions() as session:
        kept = await session.scalars(
            select(CUSTOMERS.c.external_userid).order_by("external_userid")
        )
        assert list(kept) == ["before", "kept", "nested"]
        assert await session.scalar(select(Guide.__table__.c.name).where(Guide.userid == "g3"))
    marks = [sql.split()[0] for sql, _, own in seen if "SAVEPOINT" in sql]
    owners = {own for sql, _, own in seen if "SAVEPOINT" in sql}
    # On the driver (a rollback to it, then its release), heard by the engine's listeners all
    # the same, on both engines.
    assert marks == [
        "SAVEPOINT",
        "ROLLBACK",
        "RELEASE",
        "SAVEPOINT",
        "SAVEPOINT",
        "RELEASE",
        "RELEASE",
    ]
    assert owners == {False}


@SQLITE
async def test_outside_inline_statements_a_savepoint_is_sqlalchemys(sessions):
    write = Direct(
        insert(CUSTOMERS).values(
            external_userid=bindparam("ext"), created_at=bindparam("at"), updated_at=bindparam("at")
        )
    )
    seen, stop = heard(sessions)
    try:
        async with sessions() as session, session.begin():
            with pytest.raises(RuntimeError):
                async with savepoint(session):
                    await write.execute(session, {"ext": "undone", "at": NOW})
                    raise RuntimeError("the block failed")
            await write.execute(session, {"ext": "kept", "at": NOW})
    finally:
        stop()
    async with sessions() as session:
        assert list(await session.scalars(select(CUSTOMERS.c.external_userid))) == ["kept"]
    assert [own for sql, _, own in seen if "SAVEPOINT" in sql] == [True, True]
