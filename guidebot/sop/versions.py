"""Saving a playbook from the studio: checked, a new version, the file, the history, the reload.

`save_playbook` refuses text the checker (guidebot.sop.loader, as `guidebot sop check`) finds
errors in. Otherwise it gives the text the next version number (past every version this
playbook had: in the file, in this process's registry, in `sop_playbook_versions`), records
it there with who saved it, when, and its unified diff from the text before, writes the file
into the playbook directory atomically (a temporary file beside it, then a rename: a reader
sees the old text or the new, never half), and reloads the registry, so the next enrollment
runs the new version while running enrollments keep theirs. The text the file held before
the studio first saved it is kept as a version too (no `saved_by`).

Two saves racing for one version number meet at the table's unique key: one wins, the other
is a `SaveConflict`. Other instances sharing the directory see the new file through their
registry's watch (guidebot.sop.registry) and reload within seconds.

The caller owns the transaction and commits after `save_playbook` returns; the file is written
last before that, so a refused or conflicting save leaves file and table as they were.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.sop.loader import LoadedPlaybook
from guidebot.sop.models import SopPlaybookVersion
from guidebot.sop.registry import PlaybookRegistry
from guidebot.sop.studio import check_off_loop

_NUMBER = re.compile(r"[0-9]+")


class SaveRefused(Exception):
    """The checker found errors (`loaded.errors`); nothing was saved."""

    def __init__(self, loaded: LoadedPlaybook) -> None:
        super().__init__(f"{len(loaded.errors)} error(s)")
        self.loaded = loaded


class SaveConflict(Exception):
    """Someone saved this playbook meanwhile; nothing was saved."""


@dataclass(frozen=True)
class Saved:
    playbook_id: str
    version: int
    unchanged: bool  # the text was already the file's: no new version
    loaded: LoadedPlaybook  # the text as checked (its warnings)


def current_file(registry: PlaybookRegistry, playbook_id: str) -> LoadedPlaybook | None:
    """The file the registry loaded for this id (enabled or not), if any."""
    return next((item for item in registry.loaded if item.id == playbook_id), None)


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").removeprefix("\ufeff")
    except (OSError, UnicodeDecodeError):
        return None


async def save_playbook(
    session: AsyncSession,
    registry: PlaybookRegistry,
    playbook_id: str,
    text: str,
    *,
    saved_by: str,
    now: datetime,
    base_version: int | None = None,
) -> Saved:
    """Check, number, record, write and reload (see the module docstring)."""
    checked = await check_off_loop(text, playbook_id, registry.templates_dir)
    if not checked.enabled or checked.playbook is None:
        raise SaveRefused(checked)
    current = current_file(registry, playbook_id)
    path = Path(current.file) if current is not None else registry.sop_dir / f"{playbook_id}.yaml"
    if path.parent.resolve() != registry.sop_dir.resolve():
        raise SaveConflict(f"playbook {playbook_id!r} is not in the playbook directory")
    on_disk = await asyncio.to_thread(read_text, path)
    file_version = current.version if current is not None else None
    if base_version is not None and file_version is not None and base_version != file_version:
        raise SaveConflict(
            f"版本 {file_version} 已在您编辑时保存，请重新打开后再改 / version {file_version} was "
            f"saved while you edited version {base_version}; open it again and redo the change"
        )
    if on_disk is not None and on_disk == text:
        return Saved(playbook_id, checked.playbook.version, True, checked)
    stored = {
        row.version: row
        for row in await session.scalars(
            select(SopPlaybookVersion).where(SopPlaybookVersion.playbook_id == playbook_id)
        )
    }
    newest = max([*stored, *registry.versions(playbook_id), file_version or 0])
    version = max(newest + 1, checked.playbook.version)
    if version != checked.playbook.version:
        text = with_version(text, checked.version_at, version)
    before = on_disk
    if on_disk is not None and file_version is not None and file_version not in stored:
        last = stored[max(stored)] if stored else None
        session.add(_row(playbook_id, file_version, on_disk, last, None, now))
    elif before is None and stored:
        before = stored[max(stored)].text
    previous = (file_version, before) if before is not None else None
    session.add(_row(playbook_id, version, text, previous, saved_by, now))
    try:
        await session.flush()
    except IntegrityError:
        raise SaveConflict(
            f"另一位同事刚保存了版本 {version}，请重新打开 / someone saved version {version} "
            "meanwhile; open the playbook again"
        ) from None
    await asyncio.to_thread(write_atomically, path, text)
    await asyncio.to_thread(registry.reload)
    return Saved(playbook_id, version, False, checked)


def with_version(text: str, at: tuple[int, int], version: int) -> str:
    """The text with the number at (line, col) (the `version` value) replaced."""
    lines = text.split("\n")
    line, col = at
    row = lines[line - 1]
    found = _NUMBER.match(row, col - 1)
    if found is None:  # the checker placed it; a quoted number is an error before this
        raise ValueError(f"no version number at {line}:{col}")
    lines[line - 1] = row[: found.start()] + str(version) + row[found.end() :]
    return "\n".join(lines)


def _row(
    playbook_id: str,
    version: int,
    text: str,
    previous: SopPlaybookVersion | tuple[int | None, str] | None,
    saved_by: str | None,
    now: datetime,
) -> SopPlaybookVersion:
    if isinstance(previous, SopPlaybookVersion):
        previous = (previous.version, previous.text)
    diff = "" if previous is None else unified_diff(previous[1], text, previous[0], version)
    return SopPlaybookVersion(
        playbook_id=playbook_id,
        version=version,
        text=text,
        digest=_digest(text),
        diff=diff,
        saved_by=saved_by,
        saved_at=now,
    )


def unified_diff(before: str, after: str, old: int | None, new: int) -> str:
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"v{old}" if old is not None else "before",
            tofile=f"v{new}",
        )
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def write_atomically(path: Path, text: str) -> None:
    """Write beside the file under a name the loader ignores, flush it to disk, rename it
    over the file, and flush the directory: readers see the old text or the new one."""
    folder = path.parent
    try:
        mode = path.stat().st_mode & 0o777  # the file keeps its permissions
    except OSError:
        mode = 0o644
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    try:
        directory = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(directory)
    except OSError:
        pass
    finally:
        os.close(directory)


async def history(session: AsyncSession, playbook_id: str) -> list[SopPlaybookVersion]:
    """Every recorded version, newest first."""
    return list(
        await session.scalars(
            select(SopPlaybookVersion)
            .where(SopPlaybookVersion.playbook_id == playbook_id)
            .order_by(SopPlaybookVersion.version.desc())
        )
    )
