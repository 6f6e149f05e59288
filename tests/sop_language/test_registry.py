"""The registry: versions stay available, broken files are disabled with reasons, no raise."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from guidebot.sop.registry import PlaybookRegistry


def text(version: int, days: int = 3, name: str = "first") -> str:
    return (
        f"playbook: {name}\nversion: {version}\ntrigger: {{event: customer.added}}\n"
        'timezone: Asia/Shanghai\nsend_window: {hours: "10:00-21:00"}\nsteps:\n'
        f"  - {{id: day{days}, at: enroll + {days}d, action: guide_task, template: hi.j2, "
        "expire_after: 1d}\n"
    )


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    sop, templates = tmp_path / "sop", tmp_path / "templates" / "messages"
    sop.mkdir()
    templates.mkdir(parents=True)
    (templates / "hi.j2").write_text("{{ customer.name }}您好", encoding="utf-8")
    return sop, templates


def write(path: Path, content: str) -> None:
    path.write_text(content, encoding="utf-8")
    # Make sure a rewrite within one clock tick still looks changed to the watcher.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_reload_keeps_the_old_version_available(dirs: tuple[Path, Path]) -> None:
    sop, templates = dirs
    registry = PlaybookRegistry(sop, templates)
    write(sop / "first.yaml", text(1, days=3))
    registry.reload()
    assert [p.version for p in registry.enabled()] == [1]
    write(sop / "first.yaml", text(2, days=5))
    loaded = registry.reload()
    assert [item.enabled for item in loaded] == [True]
    current, old = registry.get("first"), registry.get("first", 1)
    assert current is not None and current.version == 2 and current.steps[0].id == "day5"
    assert old is not None and old.version == 1 and old.steps[0].id == "day3"
    assert registry.get("first", 7) is None and registry.get("nope") is None
    assert registry.versions("first") == [1, 2]


def test_a_broken_file_is_disabled_with_its_errors_and_never_raises(
    dirs: tuple[Path, Path],
) -> None:
    sop, templates = dirs
    registry = PlaybookRegistry(sop, templates)
    write(sop / "first.yaml", text(1))
    write(sop / "second.yaml", text(1, name="second"))
    registry.reload()
    write(sop / "first.yaml", "playbook: first\nversion: [\n")
    loaded = registry.reload()  # does not raise
    first = next(item for item in loaded if item.id == "first")
    assert not first.enabled and first.playbook is None
    assert str(first.errors[0]).startswith(f"{sop / 'first.yaml'}:3:1: (file): YAML syntax error")
    assert "YAML syntax error" in first.reason
    assert registry.get("first") is None  # nobody new enrolls
    assert registry.get("first", 1) is not None  # running enrollments go on
    assert [p.id for p in registry.enabled()] == ["second"]  # the others are unaffected


def test_an_edit_without_a_version_bump_is_refused(dirs: tuple[Path, Path]) -> None:
    sop, templates = dirs
    registry = PlaybookRegistry(sop, templates)
    write(sop / "first.yaml", text(2, days=3))
    registry.reload()
    original = registry.get("first", 2)
    write(sop / "first.yaml", text(2, days=4))
    (item,) = registry.reload()
    assert not item.enabled
    assert [str(e) for e in item.errors] == [
        f"{sop / 'first.yaml'}:2:10: version: the file changed but version 2 did not; bump "
        "'version' (running enrollments stay on 2)"
    ]
    assert registry.get("first", 2) is original
    assert registry.get("first") is None
    write(sop / "first.yaml", text(1, days=9))
    (item,) = registry.reload()
    assert [e.message for e in item.errors] == [
        "version 1 is older than version 2 loaded before; versions only go up: use 3"
    ]
    write(sop / "first.yaml", text(3, days=4))
    (item,) = registry.reload()
    assert item.enabled and registry.get("first").version == 3  # type: ignore[union-attr]


def test_two_files_with_one_id_are_both_disabled(dirs: tuple[Path, Path]) -> None:
    sop, templates = dirs
    write(sop / "first.yaml", text(1))
    write(sop / "first.yml", text(1))
    registry = PlaybookRegistry(sop, templates)
    loaded = registry.reload()
    assert [item.enabled for item in loaded] == [False, False]
    assert loaded[0].errors[0].message == (
        "two files define playbook 'first': first.yaml, first.yml; keep one"
    )


def test_a_missing_directory_loads_nothing(tmp_path: Path) -> None:
    registry = PlaybookRegistry(tmp_path / "absent", tmp_path / "templates")
    assert registry.reload() == [] and registry.enabled() == []


async def test_watch_reloads_on_change(dirs: tuple[Path, Path]) -> None:
    sop, templates = dirs
    write(sop / "first.yaml", text(1))
    registry = PlaybookRegistry(sop, templates)
    watcher = asyncio.create_task(registry.watch(0.01))
    try:
        for _ in range(200):
            if registry.get("first") is not None:
                break
            await asyncio.sleep(0.01)
        assert registry.get("first").version == 1  # type: ignore[union-attr]
        write(sop / "first.yaml", text(2))
        for _ in range(200):
            if registry.get("first") is not None and registry.get("first").version == 2:  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.01)
        assert registry.get("first").version == 2  # type: ignore[union-attr]
        # A template change is a change too: a broken template disables the playbook.
        write(templates / "hi.j2", "{{ nobody }}")
        for _ in range(200):
            if registry.get("first") is None:
                break
            await asyncio.sleep(0.01)
        assert registry.get("first") is None
        assert "unknown variable 'nobody'" in registry.loaded[0].reason
    finally:
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher


def test_a_reload_checks_again_only_what_changed(dirs: tuple[Path, Path]) -> None:
    sop, templates = dirs
    registry = PlaybookRegistry(sop, templates)
    write(sop / "first.yaml", text(1))
    write(sop / "second.yaml", text(1, name="second"))
    first = registry.reload()
    assert registry.reload() == first
    assert [a is b for a, b in zip(registry.reload(), first, strict=True)] == [True, True]

    write(sop / "second.yaml", text(2, name="second"))
    changed = registry.reload()
    assert changed[0] is first[0]
    assert changed[1] is not first[1] and changed[1].version == 2 and changed[1].enabled

    # A template the playbooks use changed: both are checked again, against the new text.
    write(templates / "hi.j2", "{{ customer.name 您好")
    broken = registry.reload()
    assert [item.enabled for item in broken] == [False, False]
    assert all("hi.j2" in str(item.errors[0]) for item in broken)
