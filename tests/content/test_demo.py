"""The demo's content hooks: the seeded library, simulated forwards and opens, the CLI import."""

from __future__ import annotations

import random

from guidebot.content.demo import seed_demo_content, simulate_forwards_and_opens
from guidebot.content.importer import DEMO_CONTENT, import_content_file
from guidebot.web.keys import CLOCK, SESSIONS, SETTINGS


async def test_traffic_goes_through_the_real_links(h):
    for guide, ext in (("g1", "wmc1"), ("g1", "wmc2"), ("g2", "wmc3")):
        await h.add(guide, ext)
    async with h.sessions() as session, session.begin():
        await seed_demo_content(session, now=h.clock.now())
    app = h.app
    report = await simulate_forwards_and_opens(
        app[SESSIONS],
        app[SETTINGS],
        app[CLOCK],
        forwards=12,
        open_rate=0.5,
        http=h.client.session,
        base_url=str(h.client.make_url("/")),
        rng=random.Random(7),
    )
    assert report.forwards == 12 and 0 < report.opens < 12
    forwards, opens = await h.forwards(), await h.opens()
    assert len(forwards) == 12 and len(opens) == report.opens
    assert {(f.guide_userid, f.external_userid) for f in forwards} <= {
        ("g1", "wmc1"),
        ("g1", "wmc2"),
        ("g2", "wmc3"),
    }
    assert all(o.user_agent_hash for o in opens)


async def test_without_a_server_opens_go_straight_to_the_log(h):
    await h.add("g1", "wmc1")
    async with h.sessions() as session, session.begin():
        await seed_demo_content(session, now=h.clock.now())
    app = h.app
    report = await simulate_forwards_and_opens(
        app[SESSIONS], app[SETTINGS], app[CLOCK], forwards=3, open_rate=1.0
    )
    assert (report.forwards, report.opens) == (3, 3)
    assert len(await h.opens()) == 3


async def test_no_customers_no_traffic(h):
    app = h.app
    report = await simulate_forwards_and_opens(app[SESSIONS], app[SETTINGS], app[CLOCK])
    assert (report.forwards, report.opens) == (0, 0)


async def test_the_command_line_hook_imports_and_commits(sqlite_url):
    first = await import_content_file(sqlite_url, DEMO_CONTENT)
    again = await import_content_file(sqlite_url, DEMO_CONTENT)
    assert first.created and again.unchanged == first.created
    assert (
        again.summary()
        == f"0 created, 0 updated, {len(first.created)} unchanged, 0 skipped (deleted)"
    )
