"""`guidebot backup PATH` and `guidebot restore PATH` (guidebot.backup): a copy of the database
taken while serving, and putting one back with what was sent since settled first."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

from guidebot.config import Settings


def add_commands(commands: argparse._SubParsersAction, command: Callable) -> None:
    """`command(group, name, help, run)` adds one command."""
    backup = command(commands, "backup", "copy the database to a new file while serving", _backup)
    backup.add_argument("path", help="the backup file to write (must not exist)")
    restore = command(
        commands,
        "restore",
        "replace the database with a backup (server stopped), then settle what was sent since",
        _restore,
    )
    restore.add_argument("path", help="a file `guidebot backup` wrote")


def _backup(args: argparse.Namespace) -> int:
    from guidebot.backup.copy import BackupError, take_backup
    from guidebot.clock import SystemClock
    from guidebot.config import database_url_from_env

    try:
        asyncio.run(take_backup(database_url_from_env(), args.path, SystemClock().now()))
    except BackupError as exc:
        print(f"guidebot: {exc}", file=sys.stderr)
        return 1
    print(f"已备份 / backed up to {args.path}")
    return 0


def _restore(args: argparse.Namespace) -> int:
    from guidebot.backup.copy import BackupError, after_restore, restore_backup
    from guidebot.runtime import open_runtime

    settings = Settings.from_env()

    async def run():
        taken = await restore_backup(settings.database_url, args.path)
        async with open_runtime(settings) as built:
            return taken, await after_restore(built.sop, taken, built.clock.now())

    try:
        taken, report = asyncio.run(run())
    except BackupError as exc:
        print(f"guidebot: {exc}", file=sys.stderr)
        return 1
    print(
        f"已恢复 / restored the backup of {taken.isoformat()}: {report.found_sent} task(s) "
        f"WeCom shows sent since, {report.welcomes_expired} welcome(s) expired, "
        f"{report.due_again} due as before"
    )
    return 0
