"""The `guidebot` command as a user runs it: separate processes, real ports. The same command
run again in a test runs in this process (guidebot_here): its answer, not the start-up again."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from unittest import mock

import aiohttp

from tests.ports import free_port
from tests.support import TEST_IDENTITY, make_settings


def env_for(database_url: str, **extra: str) -> dict[str, str]:
    settings = make_settings(database_url)
    return {**os.environ, **settings.as_env(), **extra}


def guidebot(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "guidebot.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def guidebot_here(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """What guidebot() gives, from guidebot.cli.main run in this process: in a thread of its
    own (it runs its own event loop), with `env` for the whole environment and its output
    captured. A command then costs its own work, not a new interpreter's start-up (half a
    second of CPU or more); tests whose point is a command's effect run it so, and the command
    as a separate process stays checked here."""
    from guidebot.cli import main

    out, err = io.StringIO(), io.StringIO()

    def run() -> int:
        with (
            mock.patch.dict(os.environ, env, clear=True),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            try:
                return main(list(args))
            except SystemExit as exc:  # argparse refusing the arguments
                return exc.code if isinstance(exc.code, int) else 1

    with ThreadPoolExecutor(1) as pool:
        code = pool.submit(run).result()
    return subprocess.CompletedProcess(["guidebot", *args], code, out.getvalue(), err.getvalue())


def start(*args: str, env: dict[str, str], log, cwd=None) -> subprocess.Popen:
    with open(log, "a") as output:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "guidebot.cli", *args],
            env=env,
            cwd=cwd,
            stdout=output,
            stderr=output,
        )


def start_simulator(port: int, callback_url: str, *, env: dict[str, str], log) -> subprocess.Popen:
    return start("simulator", "--port", str(port), "--callback-url", callback_url, env=env, log=log)


async def stop_all(processes: list[subprocess.Popen]) -> None:
    """Terminate, then kill what lingers; waited for off the loop, so that whatever the test
    serves on it (a proxy, a balancer) keeps answering while they shut down."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            await asyncio.to_thread(process.wait, 20)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 10)


async def wait_until_up(url: str, process: subprocess.Popen) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(150):
            assert process.poll() is None, f"exited with {process.returncode}"
            try:
                async with http.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never came up")


async def synced(path, *, store: int, guide: str) -> None:
    """Wait for the server's start-up address-book sync to have written `store` and `guide`."""

    def seen() -> bool:
        with sqlite3.connect(path) as conn:
            stores = conn.execute("SELECT 1 FROM departments WHERE id = ?", (store,)).fetchall()
            guides = conn.execute("SELECT 1 FROM guides WHERE userid = ?", (guide,)).fetchall()
        return bool(stores and guides)

    for _ in range(300):
        if await asyncio.to_thread(seen):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the start-up address-book sync never wrote the store and its guide")


def test_a_bad_setting_stops_start_up_with_one_line_naming_it(sqlite_url):
    env = env_for(sqlite_url, GUIDEBOT_AES_KEY="not-a-key")
    result = guidebot("serve", "--port", str(free_port()), env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("guidebot: configuration error: GUIDEBOT_AES_KEY:")


def test_db_upgrade_creates_the_schema(tmp_path):
    path = tmp_path / "fresh.db"
    result = guidebot("db", "upgrade", env=env_for(f"sqlite+aiosqlite:///{path}"))
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
    # Each migration is logged; Alembic's setting up of its plugins is not.
    assert "Running upgrade 0028 -> 0029" in result.stderr
    assert "setup plugin" not in result.stderr
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"inbox_events", "wecom_credentials", "relations", "alembic_version"} <= tables


def test_serve_refuses_an_unmigrated_postgresql(pg_url):
    import asyncio as aio

    from tests.conftest import reset_pg

    aio.run(reset_pg(pg_url))
    result = guidebot("serve", "--port", str(free_port()), env=env_for(pg_url))
    assert result.returncode == 2
    assert "run `guidebot db upgrade`" in result.stderr


async def test_a_server_and_a_simulator_configured_alike_work_together(tmp_path):
    server_port, sim_port = free_port(), free_port()
    env = env_for(
        f"sqlite+aiosqlite:///{tmp_path / 'guidebot.db'}",
        GUIDEBOT_WECOM_API_BASE=f"http://127.0.0.1:{sim_port}",
    )
    logs = tmp_path / "logs.txt"
    simulator = start_simulator(
        sim_port, f"http://127.0.0.1:{server_port}/wecom/callback", env=env, log=logs
    )
    server = start("serve", "--host", "127.0.0.1", "--port", str(server_port), env=env, log=logs)
    sim, api = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{server_port}"
    headers = {"Authorization": "Bearer admin-token-for-tests"}
    try:
        await wait_until_up(f"{sim}/_sim/calls", simulator)
        await wait_until_up(f"{api}/healthz", server)
        async with aiohttp.ClientSession() as http:
            verify = await (await http.post(f"{sim}/_sim/verify_url", json={})).json()
            assert verify["ok"] is True
            await http.post(f"{sim}/_sim/users", json={"userid": "g1", "name": "王芳"})
            added = await (
                await http.post(
                    f"{sim}/_sim/contact/add",
                    json={"userid": "g1", "external_userid": "wmcli1", "name": "李雷"},
                )
            ).json()
            assert added["delivered"] is True
            customer = None
            for _ in range(100):
                async with http.get(f"{api}/api/v1/customers/wmcli1", headers=headers) as r:
                    if r.status == 200:
                        customer = await r.json()
                        break
                await asyncio.sleep(0.1)
            assert customer is not None, "the add never reached the customer graph"
            assert customer["customer"]["name"] == "李雷"
    finally:
        for process in (server, simulator):
            process.terminate()
            process.wait(timeout=30)
    assert TEST_IDENTITY.corp_id  # both processes read the same GUIDEBOT_* identity


async def test_a_callback_acknowledged_before_a_kill_is_processed_after_restart(tmp_path):
    from guidebot.wecom.crypto import CallbackCrypto
    from tests.support import event_xml, signed_post

    server_port, sim_port = free_port(), free_port()
    env = env_for(
        f"sqlite+aiosqlite:///{tmp_path / 'guidebot.db'}",
        GUIDEBOT_WECOM_API_BASE=f"http://127.0.0.1:{sim_port}",  # WeCom is down at first
    )
    logs = tmp_path / "logs.txt"
    api = f"http://127.0.0.1:{server_port}"
    server = start("serve", "--host", "127.0.0.1", "--port", str(server_port), env=env, log=logs)
    crypto = CallbackCrypto(TEST_IDENTITY.token, TEST_IDENTITY.aes_key, TEST_IDENTITY.corp_id)
    query, body = signed_post(crypto, event_xml("add_external_contact", "g1", "wmkill", 1700000000))
    simulator = None
    try:
        await wait_until_up(f"{api}/healthz", server)
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{api}/wecom/callback", params=query, data=body) as response,
        ):
            assert response.status == 200  # acknowledged: stored before the answer
        server.kill()  # SIGKILL while the worker cannot reach WeCom to process it
        server.wait(timeout=10)

        simulator = start_simulator(sim_port, f"{api}/wecom/callback", env=env, log=logs)
        await wait_until_up(f"http://127.0.0.1:{sim_port}/_sim/calls", simulator)
        async with aiohttp.ClientSession() as http:
            sim = f"http://127.0.0.1:{sim_port}/_sim"
            await http.post(f"{sim}/users", json={"userid": "g1", "name": "王芳"})
            await http.post(
                f"{sim}/contact/add",
                json={
                    "userid": "g1",
                    "external_userid": "wmkill",
                    "name": "韩梅梅",
                    "deliver": False,
                },
            )
            server = start(
                "serve", "--host", "127.0.0.1", "--port", str(server_port), env=env, log=logs
            )
            await wait_until_up(f"{api}/healthz", server)
            headers = {"Authorization": "Bearer admin-token-for-tests"}
            customer = None
            for _ in range(300):
                async with http.get(f"{api}/api/v1/customers/wmkill", headers=headers) as r:
                    if r.status == 200:
                        customer = await r.json()
                        break
                await asyncio.sleep(0.1)
        assert customer is not None, "the acknowledged add was lost in the crash"
        assert customer["customer"]["name"] == "韩梅梅"
    finally:
        for process in (server, simulator):
            if process and process.poll() is None:
                process.terminate()
                process.wait(timeout=30)


def test_content_import_is_idempotent_and_reports_bad_files(tmp_path):
    env = env_for(f"sqlite+aiosqlite:///{tmp_path / 'guidebot.db'}")
    library = tmp_path / "library.yaml"
    library.write_text(
        "items:\n"
        "  - {key: spring, kind: link, title: 春季新品, url: https://example.com/spring}\n"
        "  - {key: hello, kind: text, title: 问候, body: 您好}\n",
        encoding="utf-8",
    )
    first = guidebot("content", "import", str(library), env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "2 created, 0 updated, 0 unchanged, 0 skipped (deleted)"
    again = guidebot_here("content", "import", str(library), env=env)
    assert again.stdout.strip() == "0 created, 0 updated, 2 unchanged, 0 skipped (deleted)"
    broken = tmp_path / "broken.yaml"
    broken.write_text("items: [", encoding="utf-8")
    failed = guidebot_here("content", "import", str(broken), env=env)
    assert failed.returncode == 1
    assert "not valid YAML" in failed.stderr


async def test_contacts_add_way_creates_a_store_code_through_wecom(tmp_path):
    sim_port = free_port()
    env = env_for(
        f"sqlite+aiosqlite:///{tmp_path / 'guidebot.db'}",
        GUIDEBOT_WECOM_API_BASE=f"http://127.0.0.1:{sim_port}",
    )
    logs = tmp_path / "logs.txt"
    simulator = start_simulator(sim_port, "http://127.0.0.1:9/", env=env, log=logs)
    try:
        sim = f"http://127.0.0.1:{sim_port}/_sim"
        await wait_until_up(f"{sim}/calls", simulator)
        async with aiohttp.ClientSession() as http:
            await http.post(
                f"{sim}/departments", json={"id": 10, "name": "南京西路店", "parentid": 1}
            )
            await http.post(
                f"{sim}/users", json={"userid": "g1", "name": "王芳", "department": [10]}
            )
        # The store must be known to guidebot first: the address book comes over WeCom's API.
        server_port = free_port()
        server = start(
            "serve", "--host", "127.0.0.1", "--port", str(server_port), env=env, log=logs
        )
        try:
            await wait_until_up(f"http://127.0.0.1:{server_port}/healthz", server)
            await synced(tmp_path / "guidebot.db", store=10, guide="g1")  # the start-up sync
        finally:
            server.terminate()
            server.wait(timeout=30)
        result = await asyncio.to_thread(
            guidebot,
            "contacts",
            "add-way",
            "--store",
            "10",
            "--channel",
            "poster",
            "--campaign",
            "spring",
            "--guide",
            "g1",
            env=env,
        )
        assert result.returncode == 0, result.stderr
        assert "state: s10:poster:spring" in result.stdout
        refused = await asyncio.to_thread(
            guidebot_here,
            "contacts",
            "add-way",
            "--store",
            "99",
            "--channel",
            "poster",
            "--guide",
            "g1",
            env=env,
        )
        assert refused.returncode == 1 and "99" in refused.stderr
    finally:
        simulator.terminate()
        simulator.wait(timeout=30)


def test_parked_rows_are_listed_and_handed_back(tmp_path):
    """An operator's view of a row no job can handle: an add in year 9999 written straight into
    the event log. `report guides` still reports (and says what it left out); `jobs parked`
    shows the row with its reason; `jobs retry` hands it back."""
    path = tmp_path / "guidebot.db"
    env = env_for(f"sqlite+aiosqlite:///{path}", GUIDEBOT_TIMEZONE="Asia/Shanghai")
    period = ("--from", "2026-03-09", "--to", "2026-03-09")
    assert guidebot("report", "guides", *period, env=env).returncode == 0  # the first run
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO relation_events (occurred_at, recorded_at, kind, guide_userid,"
            " external_userid, source) VALUES ('9999-12-31 23:00:00.000000',"
            " '2026-03-09 02:00:00.000000', 'added', 'g1', 'c09', 'callback')"
        )
    assert guidebot_here("jobs", "parked", env=env).stdout == "没有搁置的行 / no parked rows\n"

    report = guidebot("report", "guides", *period, env=env)
    assert report.returncode == 0, report.stderr
    assert "guidebot jobs parked" in report.stderr

    listing = guidebot_here("jobs", "parked", env=env)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].startswith("搁置的行 1 / 1 parked row(s)")
    assert lines[1].startswith("#1 metrics-rollup metrics_dirty ")
    assert "g1/c09 at 9999-12-31T23:00:00+00:00" in lines[2]
    assert lines[3].strip().startswith("OverflowError")
    document = json.loads(guidebot_here("jobs", "parked", "--format", "json", env=env).stdout)
    assert [(r["id"], r["job"], r["count"]) for r in document] == [(1, "metrics-rollup", 1)]

    assert guidebot_here("jobs", "retry", env=env).returncode == 2  # IDs or --all
    handed = guidebot_here("jobs", "retry", "1", env=env)
    assert handed.returncode == 0 and handed.stdout.startswith("1 行已交还 / 1 row(s)")
    assert guidebot_here("jobs", "parked", env=env).stdout == "没有搁置的行 / no parked rows\n"
