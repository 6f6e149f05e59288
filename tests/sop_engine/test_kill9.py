"""kill -9 of a real `guidebot serve` in the middle of a welcome, then a restart: nothing twice.

The simulated WeCom holds send_welcome_msg for a few seconds; guidebot is killed with SIGKILL
while the call is in flight (the row is `sending`, committed). The simulator then delivers the
welcome. The restarted server finds the row in `sending`, cannot ask WeCom whether a welcome
went out, marks it `unknown`, and never sends it again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.ports import free_port
from tests.sop_engine.conftest import FIRST_CONTACT, REPO
from tests.support import TEST_IDENTITY

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")


def request(url: str, payload: dict | None = None, *, token: str | None = None) -> dict:
    data = json.dumps(payload).encode() if payload is not None else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as response:
        return json.loads(response.read())


def wait_for(check, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill9_mid_welcome_and_restart_sends_nothing_twice(tmp_path):
    sop_dir = tmp_path / "sop"
    sop_dir.mkdir()
    (sop_dir / "first_contact.yaml").write_text(FIRST_CONTACT.strip() + "\n", encoding="utf-8")
    shutil.copytree(REPO / "templates" / "messages", tmp_path / "templates" / "messages")
    sim_port, bot_port = free_port(), free_port()
    admin = "admin-token-for-kill9"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "GUIDEBOT_CORP_ID": TEST_IDENTITY.corp_id,
        "GUIDEBOT_AGENT_ID": str(TEST_IDENTITY.agent_id),
        "GUIDEBOT_SECRET": TEST_IDENTITY.secret,
        "GUIDEBOT_TOKEN": TEST_IDENTITY.token,
        "GUIDEBOT_AES_KEY": TEST_IDENTITY.aes_key,
        "GUIDEBOT_ADMIN_TOKEN": admin,
        "GUIDEBOT_SECRET_KEY": "k" * 40,
        "GUIDEBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'guidebot.db'}",
        "GUIDEBOT_WECOM_API_BASE": f"http://127.0.0.1:{sim_port}",
        "GUIDEBOT_SOP_DIR": str(sop_dir),
    }
    sim_url = f"http://127.0.0.1:{sim_port}"
    bot_url = f"http://127.0.0.1:{bot_port}"
    guidebot = [sys.executable, "-m", "guidebot.cli"]
    sim = subprocess.Popen(
        [
            *guidebot,
            "simulator",
            "--port",
            str(sim_port),
            "--callback-url",
            f"{bot_url}/wecom/callback",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    servers: list[subprocess.Popen] = []

    def serve() -> subprocess.Popen:
        process = subprocess.Popen(
            [*guidebot, "serve", "--host", "127.0.0.1", "--port", str(bot_port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        servers.append(process)
        wait_for(lambda: request(f"{bot_url}/readyz"), what="guidebot to start")
        return process

    try:
        wait_for(lambda: request(f"{sim_url}/_sim/config"), what="the simulator")
        request(f"{sim_url}/_sim/departments", {"id": 11, "name": "张江店", "parentid": 1})
        request(f"{sim_url}/_sim/users", {"userid": "g1", "name": "王芳", "department": [11]})
        request(f"{sim_url}/_sim/customers", {"external_userid": "wmc1", "name": "陈女士"})
        request(
            f"{sim_url}/_sim/faults", {"api": "externalcontact/send_welcome_msg", "latency": 1.5}
        )
        first = serve()

        answer = request(
            f"{sim_url}/_sim/contact/add",
            {"userid": "g1", "external_userid": "wmc1", "welcome_code": True},
        )
        assert answer["delivered"], answer
        calls_url = f"{sim_url}/_sim/calls?api=externalcontact/send_welcome_msg"
        wait_for(lambda: request(calls_url)["calls"], what="the welcome call to reach WeCom")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)

        # The simulator finishes the held call: the customer got the welcome.
        wait_for(lambda: request(f"{sim_url}/_sim/welcomes")["welcomes"], what="the welcome")

        serve()
        tasks = wait_for(
            lambda: [
                t
                for t in request(f"{bot_url}/api/v1/tasks?step=welcome", token=admin)["tasks"]
                if t["step"] == "welcome" and t["status"] == "unknown"
            ],
            what="the restart to settle the welcome as unknown",
        )
        assert "not resent" in tasks[0]["reason"]
        time.sleep(1)
        assert len(request(calls_url)["calls"]) == 1
        assert len(request(f"{sim_url}/_sim/welcomes")["welcomes"]) == 1
    finally:
        for process in [*servers, sim]:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
