"""The store list reads the rollups grouped by store: a fixed number of statements whatever the
number of stores (it ran two per store: 654 ms at 1,000 guides), each store's figures those of
its own scope."""

from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import event, insert

from guidebot.contacts.models import Department
from guidebot.metrics.report import Period, Scope, metrics, per_store
from guidebot.web.keys import ENGINE
from tests.metrics.conftest import at
from tests.web.conftest import admin_cookie

WEEK = {"from": "2026-03-09", "to": "2026-03-15", "metric": "new_customers"}


@contextmanager
def counted(h):
    """The statements the app's engine runs inside the block."""
    statements: list[str] = []
    engine = h.app[ENGINE].sync_engine

    def seen(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", seen)


async def _scene(h) -> None:
    """Adds in both stores, and g3 moving from store 11 to 12 midweek (its profile snapshots
    then belong to two stores)."""
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await h.add("g2", "wmc02")
    await h.add("g3", "wmc03")
    h.set_time(at(11, 11))
    await h.lose("g1", "wmc01")
    await h.move("g3", "张伟", 12)
    h.set_time(at(12, 12))
    await h.add("g3", "wmc04")
    await h.settle()


async def _more_stores(h, ids: range) -> None:
    async with h.sessions() as session, session.begin():
        await session.execute(
            insert(Department),
            [
                dict(id=i, name=f"新店{i}", parent_id=1, code=f"N{i}", updated_at=h.clock.now())
                for i in ids
            ],
        )


async def test_the_store_list_runs_as_many_statements_for_six_stores_as_for_two(h, sessions):
    await _scene(h)
    hq = admin_cookie(await sessions.account("boss", "hq", []))
    manager = admin_cookie(await sessions.account("m", "manager", ["11", "12"]))

    async def page(cookie) -> int:
        with counted(h) as statements:
            response = await h.client.get("/admin/stores", params=WEEK, headers=cookie)
            assert response.status == 200, await response.text()
        return len(statements)

    await page(hq)  # anything read once per process is read now
    two = {"hq": await page(hq), "manager": await page(manager)}
    await _more_stores(h, range(901, 905))
    manager = admin_cookie(await sessions.account("m2", "manager", ["11", "12", "901", "902"]))
    six = {"hq": await page(hq), "manager": await page(manager)}
    assert two == six
    assert six["hq"] < 10, six  # not one per store


async def test_each_stores_figures_are_those_of_its_own_scope(h):
    await _scene(h)
    await _more_stores(h, range(901, 903))  # no rows at all
    period = Period(at(9, 0).date(), at(15, 0).date())
    async with h.sessions() as session:
        grouped = await per_store(session, period)
        some = await per_store(session, period, [12, 901])
        alone = {s: (await metrics(session, Scope(store_id=s), period))[0] for s in (11, 12, 901)}
    assert alone[11]["new_customers"] == 2 and alone[12]["new_customers"] == 2
    assert grouped[11] == alone[11] and grouped[12] == alone[12]
    assert some == {12: alone[12]}
    assert 901 not in grouped  # the page shows a store without rows as blank
