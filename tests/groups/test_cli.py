"""`guidebot groups …` against the simulated WeCom and the harness's database: the sync, a join
code whose joins are attributed to it, the list, a store's group welcome."""

from __future__ import annotations

import asyncio

import pytest

from guidebot.cli import main


@pytest.fixture
def cli(h, monkeypatch, capsys):
    """`guidebot ARGS` in a thread of its own (it runs its own event loop), with the server's
    settings; (exit code, stdout, stderr)."""
    for key, value in h.settings.as_env().items():
        monkeypatch.setenv(key, value)

    async def run(*args: str) -> tuple[int, str, str]:
        code = await asyncio.to_thread(main, list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


async def test_sync_join_way_and_welcome_from_the_command_line(h, cli):
    chat_id = (await h.control("groups", {"owner": "g1", "name": "张江VIP群", "deliver": False}))[
        "chat_id"
    ]
    code, out, err = await cli("groups", "sync")
    assert code == 0, err
    assert "synced: 1" in out
    assert (await h.group(chat_id)).owner_userid == "g1"

    code, out, err = await cli(
        "groups", "join-way", "create", "--store", "11", "--channel", "poster", "--chat", chat_id
    )
    assert code == 0, err
    assert "state: s11:poster" in out
    config_id = next(line for line in out.splitlines() if line.startswith("config_id: "))[11:]
    await h.join(chat_id, "wmc1", config_id=config_id)
    assert (await h.member(chat_id, "wmc1")).channel == "poster"
    code, out, _ = await cli("groups", "join-way", "list", "--store", "11")
    assert code == 0 and f"config_id: {config_id}" in out

    code, out, err = await cli("groups", "welcome", "set", "--store", "11")
    assert code == 0, err
    assert "%NICKNAME%" in out and "张江店" in out
    assert len(h.sim_state.group_welcome_templates) == 1
    status, trail = await h.api("GET", "/audit")
    assert status == 200
    assert sorted((e["role"], e["action"]) for e in trail["entries"]) == [
        ("cli", "group_join_way.create"),
        ("cli", "group_welcome.save"),
    ]


async def test_a_refused_join_way_says_why(h, cli):
    code, out, err = await cli(
        "groups", "join-way", "create", "--store", "99", "--channel", "poster", "--chat", "wrX"
    )
    assert code == 1 and out == ""
    assert "99" in err and "门店" in err
