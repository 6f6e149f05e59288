"""`guidebot serve --processes N`: N servers on one port over one PostgreSQL, started, stopped
and given up together by one parent; refused on SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from bench.callbacks import children_of
from guidebot.db.migrate import upgrade
from tests.conftest import reset_pg
from tests.integration.test_cli import env_for, guidebot, start, start_simulator, wait_until_up
from tests.ports import free_port

ADDS = 10


@pytest.mark.parametrize(
    ("count", "said"),
    [
        (
            "2",
            "--processes 2 需要 PostgreSQL：SQLite 只有一个写入者 / "
            "--processes 2 needs PostgreSQL: SQLite has one writer",
        ),
        ("0", "--processes 至少为 1 / --processes must be at least 1"),
    ],
)
def test_what_the_database_cannot_take_is_refused_in_one_line(sqlite_url, count, said):
    port = str(free_port())
    result = guidebot("serve", "--processes", count, "--port", port, env=env_for(sqlite_url))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"guidebot serve: {said}"]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def gone(pids: set[int], seconds: float = 30) -> bool:
    for _ in range(int(seconds * 10)):
        if not any(alive(pid) for pid in pids):
            return True
        await asyncio.sleep(0.1)
    return False


@contextlib.asynccontextmanager
async def two_processes(pg_url: str, tmp_path: Path):
    """The simulator with guide g1, then `serve --processes 2` on a migrated PostgreSQL: the
    parent, its two servers' pids, and the simulator's and the server's base URLs. Whatever
    still runs at the end is killed, servers a parent left behind included."""
    await reset_pg(pg_url)
    server_port, sim_port = free_port(), free_port()
    env = env_for(pg_url, GUIDEBOT_WECOM_API_BASE=f"http://127.0.0.1:{sim_port}")
    await upgrade(pg_url)  # as `guidebot db upgrade` does, in this process (Alembic is loaded)
    logs = tmp_path / "logs.txt"
    sim, api = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{server_port}"
    processes = [start_simulator(sim_port, f"{api}/wecom/callback", env=env, log=logs)]
    servers: set[int] = set()
    try:
        await wait_until_up(f"{sim}/_sim/calls", processes[0])
        async with aiohttp.ClientSession() as http:
            await http.post(f"{sim}/_sim/users", json={"userid": "g1", "name": "王芳"})
        server = start(
            "serve", "--host", "127.0.0.1", "--port", str(server_port), "--processes", "2",
            env=env, log=logs,
        )  # fmt: skip
        processes.append(server)
        await wait_until_up(f"{api}/healthz", server)
        await asyncio.sleep(1)  # a second server that could not bind would have ended by now
        servers = set(children_of(server.pid))
        yield server, servers, sim, api
    finally:
        for pid in filter(alive, servers):
            os.kill(pid, signal.SIGKILL)
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


@pytest.mark.pg
async def test_two_processes_share_the_port_and_welcome_each_add_once(pg_url, tmp_path):
    async with two_processes(pg_url, tmp_path) as (server, servers, sim, api):
        assert server.poll() is None and len(servers) == 2 and all(map(alive, servers))
        async with aiohttp.ClientSession() as http:
            for i in range(ADDS):
                body = {"userid": "g1", "external_userid": f"wmproc{i}", "welcome_code": True}
                added = await (await http.post(f"{sim}/_sim/contact/add", json=body)).json()
                assert added["delivered"] is True, added
            for _ in range(200):
                calls = (await (await http.get(f"{sim}/_sim/calls")).json())["calls"]
                sent = Counter(
                    c["body"]["welcome_code"]
                    for c in calls
                    if c["api"] == "externalcontact/send_welcome_msg"
                )
                if len(sent) == ADDS:
                    break
                await asyncio.sleep(0.1)
        assert len(sent) == ADDS and set(sent.values()) == {1}, sent
        # Whichever process a scrape reaches, /metrics counts the welcomes of both.
        for _ in range(6):
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
                text = await (await s.get(f"{api}/metrics")).text()
            assert f"guidebot_welcome_seconds_count {float(ADDS)}" in text, text
        # One server ending on its own takes the other with it, and the parent reports it.
        os.kill(min(servers), signal.SIGKILL)
        assert await asyncio.to_thread(server.wait, 30) != 0
        assert await gone(servers)


@pytest.mark.pg
async def test_sigterm_to_the_parent_stops_both_servers_cleanly(pg_url, tmp_path):
    async with two_processes(pg_url, tmp_path) as (server, servers, _sim, _api):
        assert len(servers) == 2
        server.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(server.wait, 60) == 0
        assert await gone(servers)
