"""`guidebot demo`: guidebot and a simulated WeCom in one process, on SQLite, with live traffic.

Everything goes through the real paths: the org is seeded into the simulator and synced into
guidebot over WeCom's API; customers add guides by scanning store codes, and the simulator
delivers encrypted callbacks to guidebot's callback URL, exactly as WeCom would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.app import create_app
from guidebot.config import DEMO_DATABASE_URL, Settings, WeComIdentity, demo_database
from guidebot.contacts.directory_sync import sync_directory
from guidebot.contacts.models import RelationStatus, StoreMembership
from guidebot.contacts.service import record_added, record_deleted_by_guide, record_ended
from guidebot.contacts.wecom_profile import Profile
from guidebot.content import links, opens
from guidebot.content import service as content
from guidebot.content.demo import seed_demo_content, simulate_forwards_and_opens
from guidebot.content.models import ContentItem, ForwardVia
from guidebot.db.migrate import upgrade
from guidebot.db.one_hop import inline_statements
from guidebot.demo.arrivals import past_arrivals
from guidebot.demo.banner import preparing, print_banner
from guidebot.demo.community import community_week
from guidebot.demo.org import (  # noqa: F401  (the demo's corp, as tests and commands read it)
    CHANNELS,
    GIVEN,
    GUIDES,
    MONTH,
    REGIONS,
    STORES,
    SURNAMES,
    DemoControl,
    demo_identity,
    seed_org,
)
from guidebot.groups.demo import VipGroups, group_step, start_vip_groups
from guidebot.metrics.cohorts import refresh_cohorts
from guidebot.metrics.orders import attribution_window, parse_order, post_order
from guidebot.metrics.rollup import recompute_all
from guidebot.sop.demo import backfill_tasks, tasks_to_finish
from guidebot.sop.demo_groups import VIP_WEEKLY, vip_weekly_yaml
from guidebot.sop.demo_month import day_done, demo_playbook_dir, purchase_odds
from guidebot.sop.playbook import Playbook
from guidebot.web.accounts import save_account
from guidebot.web.keys import CLOCK, SESSIONS, SETTINGS, SOP, WECOM
from guidebot.web.startup import CONTACTS_STARTUP
from guidebot.wecom.simulator import SimulatorConfig, create_simulator_app

log = logging.getLogger(__name__)

DEFAULT_DATABASE_URL = DEMO_DATABASE_URL
DEMO_MOMENT_JOB_SECONDS = 1.0  # the simulated Moments creation jobs (5 s by default)


async def create_store_codes(
    server_url: str, admin_token: str, http: aiohttp.ClientSession, campaign: str
) -> list[dict]:
    """One 「联系我」 code per store and channel, through guidebot's own API."""
    ways = []
    headers = {"Authorization": f"Bearer {admin_token}"}
    for store_id in STORES:
        store_guides = [userid for userid, _, sid in GUIDES if sid == store_id]
        for channel in CHANNELS[:2]:
            body = {
                "store": str(store_id),
                "channel": channel,
                "campaign": campaign,
                "userids": store_guides,
            }
            async with http.post(
                f"{server_url}/api/v1/contact-ways", json=body, headers=headers
            ) as response:
                answer = await response.json()
                if response.status >= 400:
                    raise RuntimeError(f"creating a contact way failed: {answer}")
                ways.append({**answer, "userids": store_guides})
    return ways


async def live_traffic(
    control: DemoControl,
    ways: list[dict],
    stop: asyncio.Event,
    pace: float = 2.0,
    forwards: Callable[[], Awaitable[object]] | None = None,
    tasks: Callable[[], Awaitable[object]] | None = None,
    groups: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """Customers keep scanning store codes; now and then one leaves or a guide removes one;
    guides forward content and customers open the tracked links; guides finish due tasks;
    customers join and leave the stores' VIP groups."""
    rng = random.Random()
    added: list[tuple[str, str]] = []
    serial = 0
    while not stop.is_set():
        try:
            roll = rng.random()
            if forwards is not None and roll < 0.2 and len(added) >= 5:
                await forwards()
            elif tasks is not None and roll < 0.3:
                await tasks()
            elif groups is not None and roll < 0.4:
                await groups()
            elif roll < 0.75 or len(added) < 5:
                serial += 1
                way = rng.choice(ways)
                customer = f"wmdemo{serial:05d}"
                guide = rng.choice(way["userids"])
                name = rng.choice(SURNAMES) + rng.choice(GIVEN)
                await control.post(
                    "contact/add",
                    {
                        "userid": guide,
                        "external_userid": customer,
                        "name": name,
                        "config_id": way["config_id"],
                        "welcome_code": True,
                    },
                )
                added.append((guide, customer))
            elif roll < 0.92:
                guide, customer = added.pop(rng.randrange(len(added)))
                await control.post(
                    "contact/delete_by_customer", {"userid": guide, "external_userid": customer}
                )
            else:
                guide, customer = added.pop(rng.randrange(len(added)))
                await control.post(
                    "contact/delete_by_guide", {"userid": guide, "external_userid": customer}
                )
        except (aiohttp.ClientError, RuntimeError) as exc:
            log.warning("demo traffic step failed: %s", exc)
        # Real time: the demo's traffic is paced for a person watching it.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), pace * rng.uniform(0.5, 1.5))


# ---- a week of past activity (the dashboard has something to show at once) ----------------------


@dataclass
class WeekReport:
    now: datetime
    settings: Settings
    items: list[int]
    playbooks: list[Playbook] = field(default_factory=list)  # enrolled in as customers add
    tasks: int = 0  # past tasks settled (guidebot.sop.demo)
    added: int = 0
    lost: int = 0
    removed: int = 0
    forwards: int = 0
    opens: int = 0
    orders: int = 0
    rollup_rows: int = 0
    behaviour: int = 0  # enrolled by the behaviour scan as the days passed


async def backfill_week(
    server: web.Application,
    control: DemoControl,
    ways: list[dict],
    *,
    days: int = 7,
    rng: random.Random | None = None,
) -> WeekReport:
    """The last `days` days of activity, as if guidebot had been running all along.

    No fake clock: the simulated WeCom learns each relation without a callback (`deliver:
    false`), and guidebot records it through the contacts service with the past instant, as the
    nightly reconciliation would; forwards, opens and orders go through the content and orders
    services with past instants too. The guides' store memberships are dated back to before the
    week (they worked there already). At each day's end the behaviour scan and the stage
    counts run as of then (guidebot.sop.demo_month). Then every rollup is rebuilt from the logs,
    and the cohorts' too.
    """
    rng = rng or random.Random()
    settings, sessions, now = server[SETTINGS], server[SESSIONS], server[CLOCK].now()
    zone = ZoneInfo(settings.timezone)
    first = (now.astimezone(zone) - timedelta(days=days)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    async with sessions() as session, session.begin():
        await session.execute(
            update(StoreMembership)
            .where(StoreMembership.valid_to.is_(None))
            .values(valid_from=first - timedelta(days=1))
        )
        items = list(
            await session.scalars(select(ContentItem.id).where(ContentItem.deleted_at.is_(None)))
        )
    report = WeekReport(now, settings, items, server[SOP].registry.enabled())
    ways_by_guide = {userid: [w for w in ways if userid in w["userids"]] for userid, _, _ in GUIDES}
    for day, by_guide in past_arrivals(rng, first, days, now, ways_by_guide):
        for userid, arrived in by_guide:
            # One transaction per guide and day: the week is ready in a few seconds. Its
            # statements are short point statements: on the loop's thread, not a trip each to
            # SQLite's (about sixty a customer; the trips were half the month's time).
            async with sessions() as session, session.begin():
                with inline_statements():
                    for a in arrived:
                        await _past_customer(
                            session, control, a.rng, report, userid, a.external_userid, a.way, a.at
                        )
        end = min(day + timedelta(days=1), now)
        report.behaviour += await day_done(server[SOP], end.astimezone(zone).date(), end)
    report.rollup_rows = await recompute_all(sessions, settings.timezone, now)
    await refresh_cohorts(sessions, settings.timezone, now)
    return report


async def _past_customer(
    session: AsyncSession,
    control: DemoControl,
    rng: random.Random,
    report: WeekReport,
    userid: str,
    ext: str,
    way: dict,
    at: datetime,
) -> None:
    """The customer added the guide at `at`; some leave or are removed later, the rest may
    get a forward (then an open, then an order)."""
    now = report.now
    name = rng.choice(SURNAMES) + rng.choice(GIVEN)
    await control.post(
        "contact/add",
        {
            "userid": userid,
            "external_userid": ext,
            "name": name,
            "config_id": way["config_id"],
            "deliver": False,
        },
    )
    profile = Profile(
        {"external_userid": ext, "name": name, "type": 1},
        {"userid": userid, "createtime": int(at.timestamp()), "state": way["state"]},
    )
    await record_added(
        session,
        userid=userid,
        external_userid=ext,
        at=at,
        now=now,
        source="demo-week",
        state=way["state"],
        profile=profile,
    )
    report.added += 1
    roll, end = rng.random(), at + timedelta(hours=rng.uniform(2, 60))
    if roll < 0.1 and end < now:
        await control.post(
            "contact/delete_by_customer",
            {"userid": userid, "external_userid": ext, "deliver": False},
        )
        await record_ended(
            session,
            userid=userid,
            external_userid=ext,
            status=RelationStatus.LOST,
            at=end,
            now=now,
            source="demo-week",
            reason="del_follow_user",
        )
        report.lost += 1
    elif roll < 0.14 and end < now:
        await control.post(
            "contact/delete_by_guide", {"userid": userid, "external_userid": ext, "deliver": False}
        )
        await record_deleted_by_guide(
            session,
            userid=userid,
            external_userid=ext,
            by_transfer=False,
            at=end,
            now=now,
            source="demo-week",
        )
        report.removed += 1
    elif report.items and rng.random() < 0.6:
        # Enrolled first (as at the add), so an order after the forward meets their goals.
        report.tasks += await _past_tasks(session, rng, report, userid, ext, at)
        sent_at = at + timedelta(minutes=rng.uniform(5, 600))
        await _past_forward(session, rng, report, userid, ext, rng.choice(report.items), sent_at)
        return
    report.tasks += await _past_tasks(session, rng, report, userid, ext, at)


async def _past_tasks(session, rng, report: WeekReport, guide: str, ext: str, at: datetime) -> int:
    """The customer's playbooks as of the add, with what fell due since settled by the guide."""
    zone = report.settings.timezone
    return await backfill_tasks(
        session, report.playbooks, rng, guide=guide, customer=ext, at=at, now=report.now,
        default_timezone=zone,
    )  # fmt: skip


async def _past_forward(
    session: AsyncSession,
    rng: random.Random,
    report: WeekReport,
    guide: str,
    customer: str,
    item_id: int,
    sent_at: datetime,
) -> None:
    """A forward at `sent_at`, perhaps opened an hour or so later, perhaps bought a day later."""
    now, settings = report.now, report.settings
    if sent_at >= now:
        return
    _token, claims = links.mint(
        settings.secret_key, item_id=item_id, guide=guide, customer=customer, now=sent_at
    )
    await content.record_forward(
        session,
        ref=f"l:{claims.nonce}",
        item_id=item_id,
        guide=guide,
        customer=customer,
        via=ForwardVia.SIDEBAR,
        sent_at=sent_at,
        now=now,
    )
    report.forwards += 1
    opened = sent_at + timedelta(minutes=rng.uniform(3, 240))
    if rng.random() > 0.6 or opened >= now:
        return
    await opens.record_open(session, claims, now=opened, user_agent="demo-week")
    report.opens += 1
    paid = opened + timedelta(hours=rng.uniform(1, 30))
    if rng.random() > purchase_odds(report.playbooks, customer) or paid >= now:
        return
    order = parse_order(
        {
            "order_id": f"demo-{customer}-{item_id}",
            "external_userid": customer,
            "amount": f"{rng.randint(99, 1299)}.00",
            "paid_at": paid.isoformat(),
        }
    )
    await post_order(session, order, now=now, window=attribution_window(settings.attribution_days))
    report.orders += 1


async def create_demo_accounts(server: web.Application) -> dict[str, str]:
    """An HQ account and a manager of the first store, with fresh passwords (printed)."""
    first_store = str(next(iter(STORES)))
    passwords = {"hq": secrets.token_urlsafe(9), f"manager{first_store}": secrets.token_urlsafe(9)}
    async with server[SESSIONS]() as session, session.begin():
        await save_account(session, "hq", passwords["hq"], "hq", [], server[CLOCK].now())
        await save_account(
            session,
            f"manager{first_store}",
            passwords[f"manager{first_store}"],
            "manager",
            [first_store],
            server[CLOCK].now(),
        )
    return passwords


def _remove_demo_database() -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"guidebot-demo.db{suffix}").unlink(missing_ok=True)


async def _start(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def run_demo(
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    database_url: str | None = None,
    traffic: bool = True,
    history_days: int = MONTH,
    pace: float = 2.0,
    ready: Callable[[dict], Awaitable[None]] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until cancelled (Ctrl-C) or until `stop` is set; `ready` gets the URLs.
    `history_days` of past activity are seeded before it is ready (none with 0)."""
    database_url, note = demo_database(database_url)
    if note:
        print(note, flush=True)
    if database_url == DEFAULT_DATABASE_URL:
        # The demo's own file belongs to the previous run's simulated corp: start afresh.
        await asyncio.to_thread(_remove_demo_database)
    identity = demo_identity()
    server_url, sim_url = f"http://{host}:{port}", f"http://{host}:{port + 1}"
    playbooks = await asyncio.to_thread(_scratch_playbooks)
    settings = _demo_settings(identity, database_url, server_url, sim_url, playbooks)
    await upgrade(database_url)
    sim_runner = await _start(_simulator(identity, server_url), host, port + 1)
    server = create_app(settings)
    server_runner = await _start(server, host, port)
    stop = stop or asyncio.Event()
    traffic_task = None
    try:
        async with aiohttp.ClientSession() as http:
            control = DemoControl(http, sim_url)
            # The start-up sync lists a corp still being seeded: let it finish first, or its
            # stale list would mark the guides seeded after it left (as a fresh-clone run saw).
            await server[CONTACTS_STARTUP]
            print(preparing(history_days), flush=True)
            await seed_org(control)
            await _sync_directory(server)
            async with server[SESSIONS]() as session, session.begin():
                await seed_demo_content(session, base_url=server_url)
            # Each run is a new simulated corp; a fresh campaign keeps its codes' states unique.
            campaign = f"demo-{secrets.token_hex(2)}"
            ways = await create_store_codes(server_url, settings.admin_token, http, campaign)
            if history_days:  # the same past each run: dashboard, cohorts, lift, reminders
                await backfill_week(
                    server, control, ways, days=history_days, rng=random.Random(MONTH)
                )
            vip = await _vip_groups(server, control, campaign)
            # This week's VIP group message and Moments task, and what came of them.
            await community_week(
                server, control.post, http, settings.admin_token, vip, random.Random(MONTH)
            )
            accounts = await create_demo_accounts(server)
            urls = {
                "server": server_url,
                "simulator": sim_url,
                "admin_token": settings.admin_token,
                "openapi": f"{server_url}/api/v1/openapi.json",
                "open": f"{server_url}/admin",
                "admin": f"{server_url}/admin/login",
                "accounts": accounts,
            }
            print_banner(urls, settings)
            if ready:
                await ready(urls)
            if traffic:
                traffic_task = _start_traffic(
                    server, settings, control, ways, stop, pace, http, vip
                )
            try:
                await stop.wait()
            finally:
                stop.set()
                if traffic_task:  # finish the step in hand while the HTTP session is open
                    await traffic_task
    finally:
        stop.set()
        await server_runner.cleanup()
        await sim_runner.cleanup()
        await asyncio.to_thread(shutil.rmtree, playbooks.parent, True)


def _simulator(identity: WeComIdentity, server_url: str) -> web.Application:
    return create_simulator_app(
        SimulatorConfig(
            identity=identity,
            callback_url=f"{server_url}/wecom/callback",
            # The week's Moments posts wait for their creation jobs before the demo is ready.
            moment_job_seconds=DEMO_MOMENT_JOB_SECONDS,
        )
    )


def _scratch_playbooks() -> Path:
    """The shipped playbooks, the demo's coupon with its holdout and its weekly VIP group
    message and Moments task (two guides of each store), in a scratch folder."""
    posting = [[u for u, _, s in GUIDES if s == store][:2] for store in STORES]
    weekly = vip_weekly_yaml([userid for pair in posting for userid in pair])
    return demo_playbook_dir(Path("sop"), {VIP_WEEKLY: weekly})


async def _vip_groups(server: web.Application, control: DemoControl, campaign: str) -> VipGroups:
    """Each store's VIP group and join code (vip.chat_ids: group messages, Moments tasks)."""
    owners = {sid: next(u for u, _, s in GUIDES if s == sid) for sid in STORES}
    return await start_vip_groups(
        server[SESSIONS], server[WECOM], server[CLOCK], control.post, owners, campaign=campaign
    )


def _demo_settings(
    identity: WeComIdentity, database_url: str, server_url: str, sim_url: str, sop_dir: Path
) -> Settings:
    """The demo server's settings: the simulated corp, fresh admin and session secrets."""
    return Settings(
        corp_id=identity.corp_id,
        agent_id=identity.agent_id,
        secret=identity.secret,
        token=identity.token,
        aes_key=identity.aes_key,
        admin_token=secrets.token_urlsafe(18),
        secret_key=secrets.token_urlsafe(36),
        database_url=database_url,
        wecom_api_base=sim_url,
        public_url=server_url,
        sop_dir=str(sop_dir),
    )


def _start_traffic(
    server: web.Application,
    settings: Settings,
    control: DemoControl,
    ways: list[dict],
    stop: asyncio.Event,
    pace: float,
    http: aiohttp.ClientSession,
    vip: VipGroups,
) -> asyncio.Task[None]:
    """Live customers adding guides, and guides forwarding content that customers open."""

    async def forwards() -> object:
        return await simulate_forwards_and_opens(
            server[SESSIONS],
            settings,
            server[CLOCK],
            forwards=2,
            http=http,
            base_url=settings.public_url,
        )

    rng = random.Random()

    async def tasks() -> None:
        # A guide tells the bot, through the simulated WeCom, as they would from their phone.
        async with server[SESSIONS]() as session:
            said = await tasks_to_finish(session, server[CLOCK].now(), rng)
        for userid, text in said:
            await control.post("messages", {"userid": userid, "text": text})

    async def groups() -> None:
        await group_step(server[SESSIONS], control.post, vip, rng)

    return asyncio.create_task(live_traffic(control, ways, stop, pace, forwards, tasks, groups))


async def _sync_directory(server: web.Application) -> None:
    async with server[SESSIONS]() as session, session.begin():
        await sync_directory(session, server[WECOM], server[CLOCK].now())
