"""Load playbook files: every problem as `file:line:col: path: message`, never an exception.

A file that cannot be read, parsed or checked still yields a `LoadedPlaybook`, disabled, with
its errors sorted by position; the server shows it and keeps running (as Home Assistant does
with a broken automation). The same function backs `guidebot sop check`, the server's registry
and the API, so all three agree on what is wrong.

Message templates are looked up in `templates_dir` (the server and the CLI use
`templates_dir_for(sop_dir)`: `templates/messages` beside the playbook directory, else in the
current directory).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import jinja2

from guidebot.sop.checks import build
from guidebot.sop.playbook import Playbook
from guidebot.sop.templates import message_environment
from guidebot.sop.yaml_nodes import FILE, Issue, compose

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 256 * 1024
PLAYBOOK_SUFFIXES = (".yaml", ".yml")
CHECKED_CACHE_SIZE = 256  # files whose check is remembered; a brand has a few dozen playbooks


@dataclass(frozen=True)
class PlaybookError:
    file: str
    line: int
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.path}: {self.message}"


@dataclass(frozen=True)
class LoadedPlaybook:
    file: str
    playbook: Playbook | None
    errors: tuple[PlaybookError, ...]
    id: str  # the playbook's id, or the file stem when it could not be built
    version: int | None = None  # as written, when it could be read
    digest: str = ""  # sha256 of the file's text ("" when it could not be read)
    version_at: tuple[int, int] = (1, 1)  # line, col of the version value
    # "warning W1xx: ..." lines (a template loop that may be slow): shown, never disabling
    warnings: tuple[PlaybookError, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.playbook is not None and not self.errors

    @property
    def status(self) -> str:
        """enabled, paused (loaded, enrolling nobody) or disabled (by an error)."""
        if not self.enabled:
            return "disabled"
        return "paused" if self.playbook is not None and self.playbook.paused else "enabled"

    @property
    def reason(self) -> str:
        """Why it is disabled, in one line (empty when enabled)."""
        if self.enabled:
            return ""
        if not self.errors:
            return "not loaded"
        first = self.errors[0]
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        return f"{first.line}:{first.col}: {first.path}: {first.message}{more}"

    def with_errors(self, *errors: PlaybookError) -> LoadedPlaybook:
        """The same file with more errors (the registry's version checks), disabled."""
        merged = tuple(sorted({*self.errors, *errors}, key=_order))
        return replace(self, errors=merged)


def templates_dir_for(sop_dir: Path) -> Path:
    """Where a playbook directory's message templates are: `<sop_dir>/../templates/messages`
    when that exists (the repository layout), else `templates/messages` in the current
    directory."""
    beside = Path(sop_dir).parent / "templates" / "messages"
    return beside if beside.is_dir() else Path("templates") / "messages"


def parse_playbook(
    text: str,
    file: str,
    templates_dir: Path,
    *,
    stem: str | None = None,
    env: jinja2.Environment | None = None,
) -> LoadedPlaybook:
    """Check playbook text that claims to come from `file` (whose stem must be its id)."""
    stem = stem if stem is not None else Path(file).stem
    text = text.removeprefix("\ufeff")
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    try:
        if env is None:
            env = message_environment(templates_dir)
        root, issues = compose(text)
        built = build(root, stem=stem, source=file, text=text, env=env, issues=issues)
        playbook, issues, version, version_at, warned = built
    except Exception as exc:  # a bug in the checks must not stop the server
        log.exception("checking %s failed", file)
        playbook, version, version_at, warned = None, None, (1, 1), ()
        issues = [Issue(1, 1, FILE, f"internal error while checking: {exc!r}")]
    errors = tuple(sorted({_error(file, issue) for issue in issues}, key=_order))
    warnings = tuple(sorted({_error(file, issue) for issue in warned}, key=_order))
    return LoadedPlaybook(
        file=file,
        playbook=None if errors else playbook,
        errors=errors,
        id=playbook.id if playbook is not None else stem,
        version=version,
        digest=digest,
        version_at=version_at,
        warnings=warnings,
    )


class _CheckedFiles:
    """The checks of files already seen, by file, text and the templates they were checked
    against: a reload re-checks only what changed (saving one playbook in the studio reloads
    them all), and every app a process builds reuses the checks of the shipped files. A
    LoadedPlaybook is immutable, so handing the same one out twice is safe."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()  # reloads run in worker threads
        self._entries: OrderedDict[tuple, LoadedPlaybook] = OrderedDict()

    def get(self, key: tuple) -> LoadedPlaybook | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: tuple, loaded: LoadedPlaybook) -> None:
        with self._lock:
            self._entries[key] = loaded
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


_checked = _CheckedFiles(CHECKED_CACHE_SIZE)


def file_times(
    folder: Path, suffixes: tuple[str, ...] | None = None
) -> frozenset[tuple[str, int, int]]:
    """Each file's path, modification time and size: the folder's files with one of
    `suffixes`, or, without them, every file below it."""
    entries: set[tuple[str, int, int]] = set()
    try:
        paths = list(folder.rglob("*")) if suffixes is None else list(folder.iterdir())
    except OSError:
        return frozenset()
    for path in paths:
        if suffixes is not None and path.suffix not in suffixes:
            continue
        try:
            stat = path.stat()
        except OSError:
            continue
        entries.add((str(path), stat.st_mtime_ns, stat.st_size))
    return frozenset(entries)


def templates_fingerprint(templates_dir: Path) -> frozenset[tuple[str, int, int]]:
    """A check that named a template is only reused while the templates are as they were."""
    return file_times(Path(templates_dir))


def load_playbook(
    path: Path,
    templates_dir: Path,
    *,
    env: jinja2.Environment | None = None,
    templates: frozenset[tuple[str, int, int]] | None = None,
) -> LoadedPlaybook:
    """Read and check one playbook file. Never raises for bad content or an unreadable file.

    With `templates` (templates_fingerprint of templates_dir), an unchanged file's earlier
    check is reused."""
    path = Path(path)
    file = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return _broken(
                file,
                path.stem,
                f"the file is {size} bytes; a playbook is at most {MAX_FILE_BYTES // 1024} KiB",
            )
        raw = path.read_bytes()
    except OSError as exc:
        return _broken(file, path.stem, f"cannot read the file: {exc.strerror or exc}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = len(before) - (before.rfind(b"\n") + 1) + 1
        return _broken(file, path.stem, "not UTF-8 text: save the file as UTF-8", line, col)
    if templates is None:
        return parse_playbook(text, file, templates_dir, stem=path.stem, env=env)
    digest = hashlib.sha256(raw).hexdigest()
    key = (file, digest, str(templates_dir), templates)
    loaded = _checked.get(key)
    if loaded is None:
        loaded = parse_playbook(text, file, templates_dir, stem=path.stem, env=env)
        _checked.put(key, loaded)
    return loaded


def load_directory(sop_dir: Path, templates_dir: Path) -> list[LoadedPlaybook]:
    """Every playbook file (*.yaml, *.yml) in the directory, in file-name order.

    Two files with one id (first.yaml and first.yml) are both disabled.
    """
    sop_dir = Path(sop_dir)
    try:
        files = sorted(
            p for p in sop_dir.iterdir() if p.suffix in PLAYBOOK_SUFFIXES and p.is_file()
        )
    except OSError as exc:
        log.warning("cannot list playbooks in %s: %s", sop_dir, exc)
        return []
    env = message_environment(templates_dir)
    templates = templates_fingerprint(templates_dir)
    loaded = [load_playbook(path, templates_dir, env=env, templates=templates) for path in files]
    by_stem: dict[str, list[int]] = {}
    for index, path in enumerate(files):
        by_stem.setdefault(path.stem, []).append(index)
    for indexes in by_stem.values():
        if len(indexes) < 2:
            continue
        names = ", ".join(files[i].name for i in indexes)
        for i in indexes:
            loaded[i] = loaded[i].with_errors(
                PlaybookError(
                    loaded[i].file,
                    1,
                    1,
                    FILE,
                    f"two files define playbook {files[i].stem!r}: {names}; keep one",
                )
            )
    return loaded


def _error(file: str, issue: Issue) -> PlaybookError:
    return PlaybookError(file, issue.line, issue.col, issue.path, issue.message)


def _order(error: PlaybookError) -> tuple[int, int, str, str]:
    return (error.line, error.col, error.path, error.message)


def _broken(file: str, stem: str, message: str, line: int = 1, col: int = 1) -> LoadedPlaybook:
    return LoadedPlaybook(file, None, (PlaybookError(file, line, col, FILE, message),), stem)
