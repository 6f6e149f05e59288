"""The `guidebot` command."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from collections.abc import Callable, Sequence

from guidebot.config import ConfigError, Settings
from guidebot.db.errors import DatabaseNotReady
from guidebot.logs import setup_logging

log = logging.getLogger("guidebot")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    # APScheduler logs every run of every job at INFO: one line each 5 s says nothing.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # Alembic names each plugin it sets up at INFO before every migration; the migrations
    # themselves ("Running upgrade 0028 -> 0029") stay in the log.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    try:
        setup_logging(os.environ)  # GUIDEBOT_LOG_FORMAT=text|json, secrets redacted
        return args.run(args) or 0
    except ConfigError as exc:
        print(f"guidebot: configuration error: {exc}", file=sys.stderr)
        return 2
    except DatabaseNotReady as exc:
        print(f"guidebot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guidebot", description=__doc__)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add_commands in (
        _server_commands,
        _sop_commands,
        _report_commands,
        _library_commands,
        _groups_commands,
        _upkeep_commands,
        _privacy_commands,
        _backup_commands,
    ):
        add_commands(commands)
    return parser


def _privacy_commands(commands: argparse._SubParsersAction) -> None:
    """privacy export, privacy erase (guidebot.privacy.commands)."""
    from guidebot.privacy.commands import add_commands

    add_commands(commands, _command)


def _group(commands: argparse._SubParsersAction, name: str, help_text: str):
    return commands.add_parser(name, help=help_text).add_subparsers(metavar="ACTION")


def _backup_commands(commands: argparse._SubParsersAction) -> None:
    """backup, restore (guidebot.commands.backup)."""
    from guidebot.commands.backup import add_commands

    add_commands(commands, _command)


def _server_commands(commands: argparse._SubParsersAction) -> None:
    """serve, demo, simulator, doctor, db upgrade."""
    serve = _command(commands, "serve", "run the server, workers and scheduler", _serve)
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--processes",
        type=int,
        default=1,
        help="servers sharing the port, each on a core of its own (PostgreSQL only)",
    )
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)

    demo = _command(commands, "demo", "everything on SQLite with a simulated WeCom", _demo)
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument(
        "--database-url",
        default=None,
        help="default: sqlite+aiosqlite:///guidebot-demo.db, recreated on each run "
        "(a GUIDEBOT_DATABASE_URL in the environment is not used)",
    )

    sim = _command(commands, "simulator", "run the simulated WeCom on its own", _simulator)
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, required=True)
    sim.add_argument("--callback-url", required=True, help="where to deliver callbacks")

    doctor = _command(
        commands,
        "doctor",
        "check every precondition of going live against the configured WeCom, with the admin "
        "console step that fixes each failure",
        _doctor,
    )
    doctor.add_argument("--format", choices=("text", "json"), default="text")

    db = _group(commands, "db", "database maintenance")
    _command(db, "upgrade", "apply the migrations to GUIDEBOT_DATABASE_URL", _db_upgrade)


def _sop_commands(commands: argparse._SubParsersAction) -> None:
    """sop check, sop simulate."""
    sop = _group(commands, "sop", "playbooks: check and dry-run")
    check = _command(
        sop, "check", "check playbooks: one file:line:col: path: message per error", _sop_check
    )
    check.add_argument(
        "paths", nargs="*", metavar="PATH", help="files or directories (default: GUIDEBOT_SOP_DIR)"
    )
    check.add_argument(
        "--lang",
        choices=("zh", "en"),
        help="the messages' language (default: en when LC_ALL, LC_MESSAGES or LANG says "
        "English, else zh); the codes are the same in both",
    )
    simulate = _command(
        sop, "simulate", "the timeline a new customer would get from a playbook", _sop_simulate
    )
    simulate.add_argument("playbook", metavar="PLAYBOOK", help="a playbook file or id")
    simulate.add_argument(
        "--added-at",
        metavar="ISO8601",
        help="when the customer is added (default: now; without an offset: local time)",
    )
    simulate.add_argument(
        "--store", metavar="CODE", help="use this store's time zone (from GUIDEBOT_DATABASE_URL)"
    )
    simulate.add_argument(
        "--customer", metavar="EXTERNAL_USERID", help="say whether this customer is held out"
    )
    simulate.add_argument(
        "--reads-at",
        metavar="HH:MM,...",
        help="local times the customer read at: best_time steps go to the hour learned",
    )


def _report_commands(commands: argparse._SubParsersAction) -> None:
    """report guides."""
    report = _group(commands, "report", "guide performance reports")
    guides = _command(
        report, "guides", "every guide's numbers over a period, from the rollups", _report_guides
    )
    guides.add_argument("--from", dest="from_", metavar="D", help="first day YYYY-MM-DD")
    guides.add_argument("--to", metavar="D", help="last day YYYY-MM-DD (default: yesterday)")
    guides.add_argument("--store", metavar="CODE", help="only this store (code or id)")
    guides.add_argument("--format", choices=("table", "csv", "json"), default="table")
    playbooks = _command(
        report, "playbooks", "each playbook's goal and its holdout's lift", _report_playbooks
    )
    playbooks.add_argument("--format", choices=("table", "csv", "json"), default="table")
    cohorts = _command(
        report, "cohorts", "customers by week or month of their add, from the rollup", _cohorts
    )
    cohorts.add_argument(
        "--metric", choices=("retention", "repurchase", "gmv"), default="retention"
    )
    cohorts.add_argument("--period", choices=("week", "month"), default="week")
    cohorts.add_argument(
        "--by", choices=("all", "store", "guide", "channel", "campaign", "playbook"), default="all"
    )
    cohorts.add_argument("--from", dest="from_", metavar="D", help="first add day YYYY-MM-DD")
    cohorts.add_argument("--to", metavar="D", help="last add day YYYY-MM-DD (default: today)")
    cohorts.add_argument("--format", choices=("table", "csv", "json"), default="table")


def _library_commands(commands: argparse._SubParsersAction) -> None:
    """contacts add-way, content import, accounts add."""
    contacts = _group(commands, "contacts", "customers and guides")
    way = _command(contacts, "add-way", "create a 「联系我」 code for a store", _add_way)
    way.add_argument("--store", required=True, help="store code (or department id)")
    way.add_argument("--channel", required=True, help="e.g. store_qr, poster, livestream")
    way.add_argument("--campaign", default=None)
    way.add_argument("--guide", action="append", required=True, help="a guide's userid; repeat")
    way.add_argument("--remark", default=None)

    content = _group(commands, "content", "the content library")
    load = _command(content, "import", "import content items from a YAML file", _content_import)
    load.add_argument("file")

    accounts = _group(commands, "accounts", "HQ and store-manager sign-in")
    account = _command(
        accounts,
        "add",
        "create an /admin account, or reset its password, role and stores; the password comes "
        "from GUIDEBOT_ACCOUNT_PASSWORD or is asked for",
        _accounts_add,
    )
    account.add_argument("username")
    account.add_argument("--role", choices=("hq", "manager"), required=True)
    account.add_argument("--store", action="append", default=[], help="a manager's store; repeat")


def _groups_commands(commands: argparse._SubParsersAction) -> None:
    """groups sync, groups join-way create|list, groups welcome set, groups label
    add|remove|list (guidebot.commands.groups)."""
    from guidebot.commands.groups import add_commands

    add_commands(commands, _command)


def _upkeep_commands(commands: argparse._SubParsersAction) -> None:
    """jobs parked, jobs retry, inbox replay."""
    jobs = _group(commands, "jobs", "the periodic jobs")
    parked = _command(
        jobs,
        "parked",
        "rows a periodic job could not handle and parked, with the reason",
        _jobs_parked,
    )
    parked.add_argument("--job", help="only this job's (e.g. metrics-rollup, sop-tick)")
    parked.add_argument("--format", choices=("table", "json"), default="table")
    retry = _command(
        jobs, "retry", "hand parked rows back to their jobs: the next run tries them", _jobs_retry
    )
    retry.add_argument("ids", nargs="*", type=int, metavar="ID", help="as `jobs parked` lists")
    retry.add_argument("--all", action="store_true", help="every parked row (of --job)")
    retry.add_argument("--job", help="only this job's")

    inbox = _group(commands, "inbox", "stored callbacks")
    replay = _command(inbox, "replay", "process waiting callbacks now", _inbox_replay)
    replay.add_argument("--failed", action="store_true", help="also retry events parked as failed")
    dismiss = _command(
        inbox, "dismiss", "settle failed callbacks unprocessed (audited)", _inbox_dismiss
    )
    dismiss.add_argument("ids", nargs="*", type=int, metavar="ID", help="failed events' ids")
    dismiss.add_argument("--all", action="store_true", help="every failed event")


def _command(
    commands: argparse._SubParsersAction, name: str, help_text: str, run: Callable
) -> argparse.ArgumentParser:
    command = commands.add_parser(name, help=help_text, description=help_text)
    command.set_defaults(run=run)
    return command


def _serve(args: argparse.Namespace) -> int:
    # Start-up (the imports, the app) makes a few hundred thousand objects that live as long
    # as the process, and the cycle collector would walk them all again each time they grew
    # by a quarter: a fifth of start-up's CPU. It is off until the server has started, when
    # they are frozen out of its sight and it is turned on (serve.freeze_startup_heap).
    gc.disable()
    from guidebot.db.migrate import prepare_database
    from guidebot.serve import ProcessesRefused, check_processes, serve_processes

    settings = Settings.from_env()
    try:
        check_processes(args.processes, settings.database_url)
    except ProcessesRefused as exc:
        print(f"guidebot serve: {exc}", file=sys.stderr)
        return 2
    prepare_database(settings.database_url)  # with --processes, checked once before they start
    if args.processes > 1:
        gc.enable()  # the parent only starts and watches the servers
        return serve_processes(args.processes, args.host, args.port)
    from aiohttp import web

    from guidebot.app import create_app
    from guidebot.serve import event_loop, freeze_startup_heap

    app = create_app(settings)
    app.on_startup.append(freeze_startup_heap)
    # No per-request access log: at thousands of callbacks a second it costs more than the work.
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        print=None,
        access_log=None,
        reuse_port=args.reuse_port or None,
        loop=event_loop(),
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from guidebot.demo import run_demo

    asyncio.run(run_demo(host=args.host, port=args.port, database_url=args.database_url))
    return 0


def _simulator(args: argparse.Namespace) -> int:
    gc.disable()  # while importing, as _serve does
    from guidebot.serve import event_loop
    from guidebot.wecom.simulator import SimulatorConfig, run_simulator

    gc.enable()
    config = SimulatorConfig.from_env(callback_url=args.callback_url)
    log.info(
        "simulated WeCom on http://%s:%s for corp %s", args.host, args.port, config.identity.corp_id
    )
    with asyncio.Runner(loop_factory=event_loop) as runner:
        runner.run(run_simulator(config, args.host, args.port))
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from guidebot.doctor import doctor_command

    return asyncio.run(doctor_command(Settings.from_env(), args.format, sys.stdout))


def _db_upgrade(args: argparse.Namespace) -> int:
    from guidebot.config import database_url_from_env
    from guidebot.db.migrate import upgrade_sync

    url = database_url_from_env()
    upgrade_sync(url)
    print(f"database at {_redact(url)} is up to date")
    return 0


def _sop_check(args: argparse.Namespace) -> int:
    from guidebot.sop.cli import check_command

    return check_command(args.paths, lang=args.lang)


def _sop_simulate(args: argparse.Namespace) -> int:
    from guidebot.sop.cli import simulate_command

    return simulate_command(
        args.playbook,
        added_at=args.added_at,
        store_code=args.store,
        customer=args.customer,
        reads_at=args.reads_at,
    )


def _report_guides(args: argparse.Namespace) -> int:
    from guidebot.metrics.report import report_guides_command

    return report_guides_command(
        raw_from=args.from_, raw_to=args.to, store=args.store, fmt=args.format
    )


def _report_playbooks(args: argparse.Namespace) -> int:
    from guidebot.sop.report import report_playbooks_command

    return report_playbooks_command(fmt=args.format)


def _cohorts(args: argparse.Namespace) -> int:
    from guidebot.metrics.cohort_report import report_cohorts_command

    return report_cohorts_command(
        metric=args.metric,
        period=args.period,
        by=args.by,
        raw_from=args.from_,
        raw_to=args.to,
        fmt=args.format,
    )


def _add_way(args: argparse.Namespace) -> int:
    from guidebot.contacts.errors import ContactsError
    from guidebot.contacts.jobs import add_contact_way
    from guidebot.runtime import open_runtime

    settings = Settings.from_env()

    async def run() -> dict:
        async with open_runtime(settings) as built:
            return await add_contact_way(
                built.sessions,
                built.wecom,
                built.clock,
                store=args.store,
                channel=args.channel,
                campaign=args.campaign,
                userids=args.guide,
                remark=args.remark,
            )

    try:
        way = asyncio.run(run())
    except ContactsError as exc:
        print(f"guidebot: {exc.reason}", file=sys.stderr)
        return 1
    for key, value in way.items():
        print(f"{key}: {value}")
    return 0


def _accounts_add(args: argparse.Namespace) -> int:
    import getpass

    from guidebot.config import database_url_from_env
    from guidebot.db.migrate import upgrade_sync
    from guidebot.web.accounts import AccountError, add_account

    password = os.environ.get("GUIDEBOT_ACCOUNT_PASSWORD") or getpass.getpass("password: ")
    url = database_url_from_env()
    upgrade_sync(url)
    try:
        account = asyncio.run(add_account(url, args.username, password, args.role, args.store))
    except AccountError as exc:
        print(f"guidebot: {exc}", file=sys.stderr)
        return 1
    stores = ", ".join(str(s) for s in sorted(account.store_ids)) or "all"
    print(f"account {account.username}: role {account.role}, stores {stores}")
    return 0


def _content_import(args: argparse.Namespace) -> int:
    from guidebot.config import DEFAULT_PUBLIC_URL, database_url_from_env
    from guidebot.content.errors import ContentError
    from guidebot.content.importer import import_content_file

    try:
        # A cover_url that is a path on guidebot ("/sidebar/static/...") becomes a full URL.
        base_url = os.environ.get("GUIDEBOT_PUBLIC_URL", "").strip() or DEFAULT_PUBLIC_URL
        report = asyncio.run(
            import_content_file(database_url_from_env(), args.file, base_url=base_url)
        )
    except ContentError as exc:
        print(f"guidebot: {exc.reason}", file=sys.stderr)
        return 1
    asyncio.run(_audit_command("content.import", args.file, {"summary": report.summary()}))
    print(report.summary())
    return 0


def _inbox_replay(args: argparse.Namespace) -> int:
    from guidebot.app import offline_worker
    from guidebot.audit.recorder import Actor, record_in
    from guidebot.intake.backlog import replay

    settings = Settings.from_env()

    async def run() -> tuple[int, int]:
        async with offline_worker(settings) as (worker, sessions, clock):
            reset = await replay(sessions, clock, failed=args.failed)
            await record_in(
                sessions,
                Actor.command_line(),
                "inbox.replay",
                target="inbox",
                after={"failed_too": args.failed, "made_due": reset},
                now=clock.now(),
            )
            return reset, await worker.drain()

    reset, processed = asyncio.run(run())
    print(f"{reset} events made due, {processed} processed")
    return 0


def _inbox_dismiss(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from guidebot.audit.recorder import Actor, record
    from guidebot.intake.backlog import dismiss

    if bool(args.ids) == args.all:
        print("guidebot inbox dismiss: 请给出 ID 或 --all / give IDs or --all", file=sys.stderr)
        return 2

    async def run(session) -> list[int]:
        now = datetime.now(UTC)
        done = await dismiss(session, now, ids=args.ids or None)
        if done:
            after = {"dismissed": done}
            record(
                session, Actor.command_line(), "inbox.dismiss", target="inbox", after=after, now=now
            )
        await session.commit()
        return done

    done = asyncio.run(_with_database(run))
    print(f"{len(done)} 条失败回调已放弃 / {len(done)} failed callback(s) dismissed")
    return 0


def _jobs_parked(args: argparse.Namespace) -> int:
    import json

    from guidebot.db.parking import parked_rows

    rows = asyncio.run(_with_database(lambda session: parked_rows(session, job=args.job)))
    if args.format == "json":
        document = [
            {
                "id": r.id,
                "job": r.job,
                "table": r.table_name,
                "row": r.row_key,
                "detail": r.detail,
                "reason": r.reason,
                "first_seen": r.first_seen.isoformat(),
                "last_seen": r.last_seen.isoformat(),
                "count": r.count,
            }
            for r in rows
        ]
        print(json.dumps(document, ensure_ascii=False, indent=2))
        return 0
    if not rows:
        print("没有搁置的行 / no parked rows")
        return 0
    print(
        f"搁置的行 {len(rows)} / {len(rows)} parked row(s); `guidebot jobs retry ID` hands one "
        "back to its job once the cause is fixed"
    )
    for r in rows:
        print(
            f"#{r.id} {r.job} {r.table_name} {r.row_key} x{r.count} "
            f"first {r.first_seen.isoformat()} last {r.last_seen.isoformat()}"
        )
        if r.detail:
            print(f"    {r.detail}")
        print(f"    {r.reason}")
    return 0


def _jobs_retry(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from guidebot.audit.recorder import Actor, record
    from guidebot.db.parking import retry

    if bool(args.ids) == args.all:
        print("guidebot jobs retry: 请给出 ID 或 --all / give IDs or --all", file=sys.stderr)
        return 2

    async def run(session) -> int:
        count = await retry(session, ids=args.ids or None, job=args.job)
        after = {"ids": args.ids, "job": args.job, "handed_back": count}
        record(
            session,
            Actor.command_line(),
            "jobs.retry",
            target="parked_rows",
            after=after,
            now=datetime.now(UTC),
        )
        await session.commit()
        return count

    count = asyncio.run(_with_database(run))
    print(f"{count} 行已交还 / {count} row(s) handed back; the next run of each job tries them")
    return 0


async def _audit_command(action: str, target: str, after: dict) -> None:
    """A change an offline command made (and committed), in the audit trail."""
    from datetime import UTC, datetime

    from guidebot.audit.recorder import Actor, record

    async def write(session) -> None:
        record(
            session, Actor.command_line(), action, target=target, after=after, now=datetime.now(UTC)
        )
        await session.commit()

    await _with_database(write)


async def _with_database(use: Callable):
    """One session on GUIDEBOT_DATABASE_URL (SQLite migrated in place, as `serve` does)."""
    from guidebot.config import database_url_from_env
    from guidebot.db.migrate import open_database

    async with open_database(database_url_from_env()) as sessions, sessions() as session:
        return await use(session)


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    sys.exit(main())
