"""Taking a backup and restoring one, on either engine."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import make_url

from guidebot.backup.models import RESTORED, TAKEN, BackupMark
from guidebot.db.migrate import open_database
from guidebot.sop.context import SopRuntime
from guidebot.sop.restored import RestoreReport, reconcile_restored


class BackupError(RuntimeError):
    """A backup or restore that could not be done; the message says why (bilingual)."""


def _sqlite_file(database_url: str) -> str:
    return make_url(database_url).database or ""


def _libpq(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _mark(database_url: str, name: str, at: datetime) -> None:
    async with (
        open_database(database_url, prepare=False, pool_size=1) as sessions,
        sessions() as session,
        session.begin(),
    ):
        row = await session.get(BackupMark, name)
        if row is None:
            session.add(BackupMark(name=name, at=at))
        else:
            row.at = at


async def taken_at(database_url: str) -> datetime | None:
    async with (
        open_database(database_url, prepare=False, pool_size=1) as sessions,
        sessions() as session,
    ):
        return await session.scalar(select(BackupMark.at).where(BackupMark.name == TAKEN))


def _sqlite_copy(source: str, target: str) -> None:
    """SQLite's online backup: a consistent copy while others read and write the source."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst, pages=1024)
    src.close()
    dst.close()


async def _run(*command: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await process.communicate()
    if process.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise BackupError(f"{command[0]} 失败 / failed ({process.returncode}): {tail[0]}")


async def take_backup(database_url: str, path: str | Path, now: datetime) -> None:
    """Write a backup of the database to `path` (a new file), marked with `now`."""
    target = Path(path)
    if await asyncio.to_thread(target.exists):
        raise BackupError(f"{target} 已存在 / already exists: give a new file")
    await _mark(database_url, TAKEN, now)  # committed before the copy: the copy carries it
    if database_url.startswith("sqlite"):
        await asyncio.to_thread(_sqlite_copy, _sqlite_file(database_url), str(target))
    else:
        await _run("pg_dump", "--format=custom", f"--file={target}", _libpq(database_url))


async def restore_backup(database_url: str, path: str | Path) -> datetime:
    """Replace the database's contents with the backup's (the server stopped). The instant
    the backup was taken."""
    source = Path(path)
    if not await asyncio.to_thread(source.is_file):
        raise BackupError(f"{source} 不存在 / no such file")
    if database_url.startswith("sqlite"):
        target = _sqlite_file(database_url)
        await asyncio.to_thread(_sqlite_copy, str(source), target)
    else:
        await _run(
            "pg_restore",
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            f"--dbname={_libpq(database_url)}",
            str(source),
        )
    taken = await taken_at(database_url)
    if taken is None:
        raise BackupError("这不是 guidebot backup 的备份 / not a backup `guidebot backup` took")
    return taken


async def after_restore(sop: SopRuntime, taken: datetime, now: datetime) -> RestoreReport:
    """Settle what the backup shows open but WeCom shows sent since (before anything runs)."""
    report = await reconcile_restored(sop, taken, now)
    async with sop.sessions() as session, session.begin():
        row = await session.get(BackupMark, RESTORED)
        if row is None:
            session.add(BackupMark(name=RESTORED, at=now))
        else:
            row.at = now
    return report
