"""The playbooks the server runs: loaded from `sop/`, reloaded when a file changes.

A broken file never stops the server: it is kept, disabled, with its errors (the API shows them).
Every version seen in this process stays available through `get(id, version)`, so enrollments
keep running on the version they began with after HQ edits the file. Versions only move on: an
edit that keeps the version number of a different text seen before, or goes back to an older
number with a new text, is disabled with an error saying to bump `version`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from pathlib import Path

from guidebot.resources import project_dir
from guidebot.sop.loader import (
    PLAYBOOK_SUFFIXES,
    LoadedPlaybook,
    PlaybookError,
    file_times,
    load_directory,
)
from guidebot.sop.loader import templates_dir_for as templates_beside
from guidebot.sop.playbook import Playbook

log = logging.getLogger(__name__)

Snapshot = frozenset[tuple[str, int, int]]


class PlaybookRegistry:
    def __init__(self, sop_dir: Path, templates_dir: Path) -> None:
        self.sop_dir = Path(sop_dir)
        self.templates_dir = Path(templates_dir)
        self._loaded: list[LoadedPlaybook] = []
        self._current: dict[str, Playbook] = {}
        self._versions: dict[tuple[str, int], Playbook] = {}
        # Each id's last enabled version: what a broken file was (guidebot.sop.catch_up).
        self._last_good: dict[str, Playbook] = {}
        self._snapshot: Snapshot | None = None

    # ---- reading

    @property
    def loaded(self) -> list[LoadedPlaybook]:
        """Every file of the last reload, enabled or not, in file-name order."""
        return list(self._loaded)

    def enabled(self) -> list[Playbook]:
        """The playbooks that enroll new customers now (a paused one does not)."""
        return [
            lp.playbook
            for lp in self._loaded
            if lp.enabled and lp.playbook is not None and not lp.playbook.paused
        ]

    def stopped(self, playbook_id: str, version: int) -> str | None:
        """Why this version of the playbook no longer runs, when HQ stopped it: `paused` (the
        file says so), `retired` (the file is gone) or `replaced` (another version is loaded);
        None while it runs, or while its file is disabled by an error (an accident to fix,
        which guidebot.sop.catch_up makes good, not a decision to stop)."""
        item = next((lp for lp in self._loaded if lp.id == playbook_id), None)
        if item is None:
            return "retired"
        if not item.enabled or item.playbook is None:
            return None
        if item.playbook.paused:  # pausing is an edit: the paused text is a new version
            return "paused"
        return "replaced" if item.playbook.version != version else None

    def broken(self) -> list[Playbook]:
        """The last enabled version of each playbook whose file is now disabled by an error
        (a file removed is not broken). Their triggers' customers are recorded as missed, and
        caught up when the file is fixed (guidebot.sop.catch_up). A file broken since this
        process started has no such version: nothing is recorded for it."""
        return [
            self._last_good[item.id]
            for item in self._loaded
            if not item.enabled and item.id in self._last_good
        ]

    def get(self, playbook_id: str, version: int | None = None) -> Playbook | None:
        """A version seen in this process; without a version, the enabled one (None if the
        file is gone or broken: nobody new enrolls, running enrollments go on)."""
        if version is None:
            return self._current.get(playbook_id)
        return self._versions.get((playbook_id, version))

    def versions(self, playbook_id: str) -> list[int]:
        return sorted(v for (pid, v) in self._versions if pid == playbook_id)

    # ---- loading

    def reload(self) -> list[LoadedPlaybook]:
        """Re-read every file. Never raises; a broken file is kept disabled with its errors."""
        snapshot = self._take_snapshot()
        try:
            loaded = load_directory(self.sop_dir, self.templates_dir)
        except Exception as exc:  # load_directory does not raise; belt and braces for a server
            log.exception("reloading playbooks from %s failed", self.sop_dir)
            loaded = [
                LoadedPlaybook(
                    str(self.sop_dir),
                    None,
                    (PlaybookError(str(self.sop_dir), 1, 1, "(file)", f"reload failed: {exc!r}"),),
                    self.sop_dir.name,
                )
            ]
        self._apply(loaded)
        self._snapshot = snapshot
        return self.loaded

    def _apply(self, loaded: Iterable[LoadedPlaybook]) -> None:
        checked: list[LoadedPlaybook] = []
        current: dict[str, Playbook] = {}
        for item in loaded:
            item = self._check_version(item)
            checked.append(item)
            if item.enabled and item.playbook is not None:
                playbook = item.playbook
                current[playbook.id] = playbook
                key = (playbook.id, playbook.version)
                if key not in self._versions:
                    log.info(
                        "playbook %s v%d loaded from %s", playbook.id, playbook.version, item.file
                    )
                    for warning in item.warnings:
                        log.warning("playbook %s: %s", playbook.id, warning)
                self._versions[key] = playbook
                self._last_good[playbook.id] = playbook
        for item in checked:
            if not item.enabled:
                log.warning("playbook %s is disabled: %s", item.id, item.reason)
        self._loaded = checked
        self._current = current

    def _check_version(self, item: LoadedPlaybook) -> LoadedPlaybook:
        playbook = item.playbook
        if playbook is None or not item.enabled:
            return item
        seen = self._versions.get((playbook.id, playbook.version))
        if seen is not None and seen.digest != playbook.digest:
            return item.with_errors(
                self._version_error(
                    item,
                    f"the file changed but version {playbook.version} did not; bump 'version' "
                    f"(running enrollments stay on {playbook.version})",
                )
            )
        newest = max(self.versions(playbook.id), default=None)
        if seen is None and newest is not None and playbook.version < newest:
            return item.with_errors(
                self._version_error(
                    item,
                    f"version {playbook.version} is older than version {newest} loaded before; "
                    f"versions only go up: use {newest + 1}",
                )
            )
        return item

    def _version_error(self, item: LoadedPlaybook, message: str) -> PlaybookError:
        line, col = item.version_at
        return PlaybookError(item.file, line, col, "version", message)

    # ---- watching

    def changed(self) -> bool:
        """Whether any playbook or message template changed since the last reload."""
        return self._take_snapshot() != self._snapshot

    async def watch(self, interval: float) -> None:
        """Poll file times every `interval` seconds and reload on a change. Runs until
        cancelled; a failure is logged and the next round tries again."""
        if self._snapshot is None:
            await asyncio.to_thread(self.reload)
        while True:
            # Real time: file times are the disk's, and a fake clock moves when slept on.
            await asyncio.sleep(interval)
            try:
                if await asyncio.to_thread(self.changed):
                    log.info("playbook files changed; reloading %s", self.sop_dir)
                    snapshot = await asyncio.to_thread(self._take_snapshot)
                    loaded = await asyncio.to_thread(
                        load_directory, self.sop_dir, self.templates_dir
                    )
                    self._apply(loaded)
                    self._snapshot = snapshot
            except Exception:
                log.exception("watching playbooks in %s failed", self.sop_dir)

    def _take_snapshot(self) -> Snapshot:
        return file_times(self.sop_dir, PLAYBOOK_SUFFIXES) | file_times(self.templates_dir)


def templates_dir_for(sop_dir: str | Path) -> Path:
    """Where the sop directory's message templates are, as `guidebot sop check` finds them
    (templates/messages beside it, else in the current directory), falling back to the
    templates shipped at the package's repo root."""
    found = templates_beside(Path(sop_dir).resolve())
    if found.is_dir():
        return found.resolve()
    return project_dir("templates") / "messages"


def load_registry(sop_dir: str | Path) -> PlaybookRegistry:
    """The registry of the playbooks in `sop_dir` (GUIDEBOT_SOP_DIR), loaded."""
    sop_dir = Path(sop_dir).resolve()
    registry = PlaybookRegistry(sop_dir, templates_dir_for(sop_dir))
    registry.reload()
    return registry
