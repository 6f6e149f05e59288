"""What Dockerfile and docker-compose.yml describe, rehearsed without a container engine.

These machines have no Docker engine, so this test does what the image and the compose file
say, reading them rather than repeating them:
- the build stage: a wheel built from exactly the files its COPY lines take;
- the runtime stage: that wheel installed alone (the checkout off the path), a working
  directory laid out by its COPY, ENV and WORKDIR lines;
- the services: the `migrate` command, then two instances with the instances' command and
  the settings of `.env.example` (placeholders filled in), on PostgreSQL;
- the HEALTHCHECK command, which must pass on both.
A signed callback to either instance is acknowledged and stored; the shipped playbooks and
page templates are found. `.env.example` as shipped is refused, naming a placeholder.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import yaml

from guidebot.config import PLACEHOLDER
from guidebot.wecom.crypto import CallbackCrypto
from tests.conftest import _asyncpg_dsn, reset_pg
from tests.integration.test_cli import start, stop_all, wait_until_up
from tests.ports import free_port
from tests.support import TEST_IDENTITY, signed_post

pytestmark = pytest.mark.pg

REPO = Path(__file__).resolve().parents[2]

# What an operator fills in where .env.example says change-me (the test corp's identity).
FILLED = {
    "GUIDEBOT_CORP_ID": TEST_IDENTITY.corp_id,
    "GUIDEBOT_SECRET": TEST_IDENTITY.secret,
    "GUIDEBOT_TOKEN": TEST_IDENTITY.token,
    "GUIDEBOT_AES_KEY": TEST_IDENTITY.aes_key,
    "GUIDEBOT_ADMIN_TOKEN": "image-admin-token-0001",
    "GUIDEBOT_SECRET_KEY": "i" * 40,
}


@dataclass
class Stage:
    copies: list[tuple[list[str], str]] = field(default_factory=list)  # (sources, destination)
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    healthcheck: str | None = None
    cmd: list[str] | None = None


def read_dockerfile(path: Path) -> list[Stage]:
    """The instructions this rehearsal acts on, per stage; RUN lines are what it replaces."""
    stages: list[Stage] = []
    text = re.sub(r"\\\n\s*", " ", path.read_text())  # join continued lines
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stages.append(Stage())
        elif instruction == "COPY" and "--from=" not in rest:
            words = [w for w in shlex.split(rest) if not w.startswith("--")]
            stages[-1].copies.append((words[:-1], words[-1]))
        elif instruction == "ENV":
            name, _, value = rest.partition("=")
            stages[-1].env[name.strip()] = value.strip()
        elif instruction == "WORKDIR":
            stages[-1].workdir = rest.strip()
        elif instruction == "HEALTHCHECK":
            stages[-1].healthcheck = rest.split(" CMD ", 1)[1].strip()
        elif instruction == "CMD":
            stages[-1].cmd = json.loads(rest)
    return stages


def lay_out(stage: Stage, root: Path) -> Path:
    """Copy the stage's files from the build context into `root`, as its COPY lines say."""
    workdir = root / stage.workdir.lstrip("/")
    workdir.mkdir(parents=True, exist_ok=True)
    for sources, destination in stage.copies:
        target = workdir / destination
        for source in sources:
            origin = REPO / source
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target / origin.name)
    return workdir


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as compose reads an env_file."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def guidebot_args(words: list[str]) -> list[str]:
    """The arguments of a `guidebot ...` command line (the console script is not installed)."""
    assert words[0] == "guidebot", words
    return words[1:]


def command(words: list[str]) -> list[str]:
    """A `guidebot ...` command line, through the installed package's entry point module."""
    return [sys.executable, "-m", "guidebot.cli", *guidebot_args(words)]


def pip(*args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def test_the_image_and_compose_file_run_two_instances_on_postgresql(pg_url, tmp_path):
    build, runtime = read_dockerfile(REPO / "Dockerfile")
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    instances = [name for name in services if name.startswith("guidebot-")]
    assert len(instances) == 2 and services["migrate"]["env_file"] == ".env.example"

    # The build stage, then the runtime stage's install of the wheel alone.
    source = lay_out(build, tmp_path / "build")
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    await asyncio.to_thread(
        pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(wheels), str(source)
    )
    [wheel] = wheels.glob("guidebot-*.whl")
    await asyncio.to_thread(pip, "install", "--no-deps", "--target", str(site), str(wheel))
    app = lay_out(runtime, tmp_path / "image")
    assert (site / "guidebot" / "db" / "migrations" / "versions").is_dir()
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(site)}
    where = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", "import guidebot; print(guidebot.__file__)"],
        env=base,
        cwd=app,
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(site)), where  # the wheel's package, not the checkout

    shipped = env_file(REPO / services["migrate"]["env_file"])
    # Paths in the image's ENV lines are under its root, here tmp_path / "image".
    image_env = {
        name: str(tmp_path / "image" / value.lstrip("/")) if value.startswith("/") else value
        for name, value in runtime.env.items()
    }

    # As shipped, every instance refuses to start and names the first placeholder.
    refused = await asyncio.to_thread(
        subprocess.run,
        command(services["migrate"]["command"]),
        env={**base, **image_env, **shipped},
        cwd=app,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"is still the placeholder {PLACEHOLDER!r}" in refused.stderr

    filled = {name: FILLED.get(name, value) for name, value in shipped.items()}
    assert PLACEHOLDER not in {v for k, v in filled.items() if k.startswith("GUIDEBOT_")} - {
        filled["GUIDEBOT_DATABASE_URL"]
    }
    sim_port = free_port()
    filled["GUIDEBOT_DATABASE_URL"] = pg_url  # the compose network's postgres, here
    filled["GUIDEBOT_WECOM_API_BASE"] = f"http://127.0.0.1:{sim_port}"
    env = {**base, **image_env, **filled}

    await reset_pg(pg_url)
    migrated = await asyncio.to_thread(
        subprocess.run,
        command(services["migrate"]["command"]),
        env=env,
        cwd=app,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr

    log = tmp_path / "services.log"
    ports = [free_port() for _ in instances]
    processes = [start("simulator", "--port", str(sim_port), env=env, log=log, cwd=app)]
    for name, port in zip(instances, ports, strict=True):
        words = [
            {"0.0.0.0": "127.0.0.1", "8080": str(port)}.get(w, w) for w in services[name]["command"]
        ]
        assert words != services[name]["command"]  # the host and port were found
        processes.append(start(*guidebot_args(words), env=env, log=log, cwd=app))
    try:
        for port, process in zip(ports, processes[1:], strict=True):
            await wait_until_up(f"http://127.0.0.1:{port}/healthz", process)
        crypto = CallbackCrypto(TEST_IDENTITY.token, TEST_IDENTITY.aes_key, TEST_IDENTITY.corp_id)
        async with aiohttp.ClientSession() as http:
            for n, port in enumerate(ports):
                healthcheck = runtime.healthcheck.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
                assert healthcheck != runtime.healthcheck
                checked = await asyncio.to_thread(
                    subprocess.run,
                    [sys.executable, *shlex.split(healthcheck)[1:]],
                    env=env,
                    capture_output=True,
                    timeout=10,
                )
                assert checked.returncode == 0, checked.stderr

                query, body = signed_post(
                    crypto,
                    "<xml><ToUserName><![CDATA[wwguidebottest0001]]></ToUserName>"
                    "<FromUserName><![CDATA[sys]]></FromUserName>"
                    "<CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType>"
                    "<Event><![CDATA[change_external_chat]]></Event>"
                    f"<ChatId><![CDATA[wrimage{n}]]></ChatId>"
                    "<ChangeType><![CDATA[create]]></ChangeType></xml>",
                    nonce=str(n),
                )
                url = f"http://127.0.0.1:{port}"
                async with http.post(f"{url}/wecom/callback", params=query, data=body) as answer:
                    assert answer.status == 200, await answer.text()
                headers = {"Authorization": f"Bearer {FILLED['GUIDEBOT_ADMIN_TOKEN']}"}
                async with http.get(f"{url}/api/v1/playbooks", headers=headers) as answer:
                    playbooks = (await answer.json())["playbooks"]
                shipped_books = sorted(p.stem for p in (REPO / "sop").glob("*.yaml"))
                assert sorted(p["id"] for p in playbooks) == shipped_books
                assert {p["status"] for p in playbooks} == {"enabled"}, playbooks
                async with http.get(f"{url}/admin/login") as answer:
                    assert answer.status == 200 and "<form" in await answer.text()
        conn = await asyncpg.connect(_asyncpg_dsn(pg_url))
        try:
            stored = await conn.fetchval("SELECT count(*) FROM inbox_events")
        finally:
            await conn.close()
        assert stored == len(ports)
    finally:
        await stop_all(processes)
    assert "Traceback" not in log.read_text()
