"""`guidebot privacy export|erase EXTERNAL_USERID`: a customer's rights from the command line.

Each command imports the database and the privacy code when it runs, as cli.py's commands do:
every `guidebot` command registers these, and most never open a database."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path

from guidebot.config import Settings


def add_commands(commands: argparse._SubParsersAction, command: Callable) -> None:
    """The `privacy` group; `command(group, name, help, run)` adds one action."""
    group = commands.add_parser("privacy", help="a customer's data: export, erase").add_subparsers(
        metavar="ACTION"
    )
    export = command(
        group, "export", "write every record guidebot holds about a customer as JSON", _export
    )
    export.add_argument("external_userid")
    export.add_argument("--output", "-o", help="a file to write (default: standard output)")
    erase = command(
        group,
        "erase",
        "erase a customer's personal data everywhere (counts stay; the erasure is audited)",
        _erase,
    )
    erase.add_argument("external_userid")
    erase.add_argument("--reason", required=True, help="why (kept in the audit trail)")


def _export(args: argparse.Namespace) -> int:
    from guidebot.audit.recorder import Actor
    from guidebot.clock import SystemClock
    from guidebot.db.migrate import open_database
    from guidebot.privacy.rights import PrivacyError, export_customer

    settings = Settings.from_env()

    async def run() -> dict:
        async with (
            open_database(settings.database_url) as sessions,
            sessions() as session,
            session.begin(),
        ):
            return await export_customer(
                session,
                args.external_userid,
                secret_key=settings.secret_key,
                now=SystemClock().now(),
                actor=Actor.command_line(),
            )

    try:
        document = asyncio.run(run())
    except PrivacyError as exc:
        print(f"guidebot: {exc.reason}", file=sys.stderr)
        return 1
    text = json.dumps(document, ensure_ascii=False, indent=2, default=str)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
        print(f"已导出 / exported to {args.output}")
    else:
        print(text)
    return 0


def _erase(args: argparse.Namespace) -> int:
    from guidebot.audit.recorder import Actor
    from guidebot.clock import SystemClock
    from guidebot.db.migrate import open_database
    from guidebot.privacy.rights import PrivacyError, erase_customer

    settings = Settings.from_env()

    async def run():
        async with (
            open_database(settings.database_url) as sessions,
            sessions() as session,
            session.begin(),
        ):
            return await erase_customer(
                session,
                args.external_userid,
                reason=args.reason,
                actor=Actor.command_line(),
                secret_key=settings.secret_key,
                now=SystemClock().now(),
            )

    try:
        done = asyncio.run(run())
    except PrivacyError as exc:
        print(f"guidebot: {exc.reason}", file=sys.stderr)
        return 1
    changed = ", ".join(f"{table} {n}" for table, n in sorted(done.rows.items())) or "nothing"
    print(f"已删除个人信息 / erased (audit #{done.audit_id}, customer {done.customer_hash[:16]}…)")
    print(f"changed rows: {changed}")
    return 0
