"""`guidebot doctor` against the simulated WeCom and a running guidebot: every check passes on a
healthy setup, and each fault an admin can leave (injected through the simulator's control API
or the settings) gives its ✗, its cause, the console step that fixes it, and exit status 1."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from guidebot.cli import main
from guidebot.clock import FakeClock
from guidebot.doctor import CHECKS, render_text, run_checks
from guidebot.doctor.checks import Context, trusted_domain
from tests.harness import START, start_harness

VERIFY = "WW_verify_Ab12Cd34Ef56Gh78.txt"


@pytest.fixture
def verify_dir(tmp_path) -> Path:
    folder = tmp_path / "verify"
    folder.mkdir()
    (folder / VERIFY).write_text("Ab12Cd34Ef56Gh78", encoding="ascii")
    (folder / "notes.txt").write_text("not a WeCom file", encoding="ascii")
    return folder


@pytest.fixture
async def h(aiohttp_client, migrated_sqlite_url, verify_dir):
    """guidebot serving the callback and the verify files; WeCom with 127.0.0.1 as the app's
    可信域名. The doctor touches no database: one engine is enough."""
    return await start_harness(
        aiohttp_client,
        migrated_sqlite_url,
        FakeClock(START),
        simulator={"trusted_domain": "127.0.0.1"},
        wecom_verify_dir=str(verify_dir),
    )


def doctor_settings(h, **changes):
    """The server's settings as the doctor reads them, its public URL the running server's."""
    public = str(h.client.make_url("/")).rstrip("/")
    return dataclasses.replace(h.settings, public_url=public, **changes)


async def check(h, **changes) -> dict:
    results = await run_checks(doctor_settings(h, **changes), wait=5.0)
    assert [r.check for r in results] == [name for name, _, _ in CHECKS]
    return {r.check: r for r in results}


def failed(results: dict) -> set[str]:
    return {name for name, r in results.items() if not r.outcome.ok}


async def test_a_healthy_setup_passes_every_check(h):
    results = await check(h)
    assert failed(results) == set(), {n: r.outcome.cause for n, r in results.items()}
    text = render_text(doctor_settings(h), list(results.values()))
    lines = text.splitlines()
    marks = [line for line in lines if line[:1] in "✓✗"]
    assert len(marks) == len(CHECKS) and all(line.startswith("✓") for line in marks)
    assert lines[-1] == f"{len(CHECKS)} 项检查全部通过 / all {len(CHECKS)} checks passed"
    assert "3 member(s) enabled for customer contact" in text
    assert VERIFY in text and "notes.txt" not in text


async def test_a_wrong_corp_id_is_40013_and_a_wrong_secret_40001(h):
    results = await check(h, corp_id="wwnotthiscorp")
    outcome = results["credentials"].outcome
    assert outcome.errcode == 40013 and "企业ID" in outcome.fix.zh
    assert "Company ID" in outcome.fix.en and "GUIDEBOT_CORP_ID" in outcome.fix.en
    assert (
        results["trusted_ip"].skipped and "企业ID与应用 Secret" in results["app"].outcome.cause.zh
    )

    results = await check(h, secret="not-the-apps-secret")
    outcome = results["credentials"].outcome
    assert outcome.errcode == 40001 and "40001" in outcome.cause.zh
    assert "Secret「查看」" in outcome.fix.zh and "GUIDEBOT_SECRET" in outcome.fix.en
    assert "客户联系 → 客户" not in outcome.fix.zh  # not the 48002 fix
    assert failed(results) == {name for name, _, needs in CHECKS if needs} | {"credentials"}


async def test_a_wecom_that_cannot_be_reached(h, unused_tcp_port):
    base = f"http://127.0.0.1:{unused_tcp_port}"
    outcome = (await check(h, wecom_api_base=base))["credentials"].outcome
    assert outcome.errcode == -1 and "连不上企业微信" in outcome.cause.zh
    assert f"能以 HTTPS 访问 {base}" in outcome.fix.zh and "outbound firewall" in outcome.fix.en


async def test_an_app_outside_customer_contacts_callable_apps_is_48002(h):
    await h.control("config", {"customer_contact": False})
    results = await check(h)
    outcome = results["customer_contact"].outcome
    assert outcome.errcode == 48002
    assert "可调用接口的应用" in outcome.fix.zh and "Apps that can call the API" in outcome.fix.en
    assert "Secret 是对的" in outcome.cause.zh
    assert results["contact_ways"].skipped
    assert failed(results) == {"customer_contact", "contact_ways"}


async def test_an_address_outside_the_trusted_ips_is_60020_naming_it(h):
    await h.control("config", {"trusted_ips": ["203.0.113.7"]})
    results = await check(h)
    outcome = results["trusted_ip"].outcome
    assert outcome.errcode == 60020 and "127.0.0.1" in outcome.cause.zh
    assert "企业可信IP → 配置，加入 127.0.0.1" in outcome.fix.zh
    assert "Trusted corporate IP" in outcome.fix.en
    wecom = {"app", "customer_contact", "contact_ways", "address_book", "jssdk", "trusted_domain"}
    assert all(results[name].skipped for name in wecom)
    assert failed(results) == wecom | {"trusted_ip"}  # the callback and the file still pass


async def test_a_token_refused_after_a_refresh_says_so(h):
    await h.fault("department/list", 40014, times=2)  # refreshed once, refused again
    results = await check(h)
    outcome = results["address_book"].outcome
    assert outcome.errcode == 40014 and "GUIDEBOT_WECOM_API_BASE" in outcome.fix.zh
    assert failed(results) == {"address_book"}


async def test_a_secret_of_another_app_is_told_by_agent_get(h):
    results = await check(h, agent_id=h.settings.agent_id + 1)
    outcome = results["app"].outcome
    assert outcome.errcode == 301002
    assert "GUIDEBOT_AGENT_ID 与 GUIDEBOT_SECRET" in outcome.fix.zh
    assert results["trusted_domain"].skipped
    assert failed(results) == {"app", "trusted_domain"}


async def test_jssdk_tickets_that_cannot_be_fetched(h):
    await h.fault("ticket/get", 45009)
    results = await check(h)
    outcome = results["jssdk"].outcome
    assert outcome.errcode == 45009 and failed(results) == {"jssdk"}


async def test_a_callback_url_that_does_not_verify(h, unused_tcp_port):
    results = await check(h, token="notTheConsoleToken1")  # the console and guidebot differ
    outcome = results["callback"].outcome
    assert "不是解密后的 echostr" in outcome.cause.zh and "HTTP 403" in outcome.cause.en
    assert "接收消息 → 设置API接收" in outcome.fix.zh and "/wecom/callback" in outcome.fix.zh
    assert failed(results) == {"callback"}

    nowhere = f"http://127.0.0.1:{unused_tcp_port}"
    results = await run_checks(
        dataclasses.replace(doctor_settings(h), public_url=nowhere), wait=5.0
    )
    outcome = {r.check: r for r in results}["callback"].outcome
    assert not outcome.ok and "could not be reached" in outcome.cause.en


async def test_a_sidebar_domain_that_is_not_the_trusted_domain(h):
    await h.control("config", {"trusted_domain": "guide.example.com"})
    outcome = (await check(h))["trusted_domain"].outcome
    # The harness serves on 127.0.0.1: a public URL left local is named as the cause.
    assert "GUIDEBOT_PUBLIC_URL 还是本机地址" in outcome.cause.zh
    assert "公网可达的 HTTPS 地址" in outcome.fix.zh
    # With a public host, the app's 可信域名 (what agent/get answered) against that host.
    public = dataclasses.replace(h.settings, public_url="https://guide2.example.com")
    for domain, cause in [
        ("", "应用没有设置可信域名"),
        ("guide.example.com", "可信域名是 guide.example.com，但侧边栏在 guide2.example.com"),
    ]:
        ctx = Context(public, None, None, agent={"redirect_domain": domain})  # type: ignore[arg-type]
        outcome = await trusted_domain(ctx)
        assert not outcome.ok and cause in outcome.cause.zh
        assert "设置可信域名：填 guide2.example.com" in outcome.fix.zh
        assert "Set trusted domain: enter guide2.example.com" in outcome.fix.en
    ctx = Context(public, None, None, agent={"redirect_domain": "guide2.example.com"})  # type: ignore[arg-type]
    assert (await trusted_domain(ctx)).ok


async def test_a_verify_file_missing_or_not_served(h, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    outcome = (await check(h, wecom_verify_dir=str(empty)))["verify_file"].outcome
    assert "里没有 WW_verify_*.txt" in outcome.cause.zh
    assert "GUIDEBOT_WECOM_VERIFY_DIR" in outcome.fix.zh
    other = tmp_path / "other"
    other.mkdir()
    (other / VERIFY).write_text("SomethingElse", encoding="ascii")
    outcome = (await check(h, wecom_verify_dir=str(other)))["verify_file"].outcome
    assert "the content differs" in outcome.cause.en
    (other / VERIFY).unlink()
    (other / "WW_verify_Zz99.txt").write_text("Zz99", encoding="ascii")
    outcome = (await check(h, wecom_verify_dir=str(other)))["verify_file"].outcome
    assert "HTTP 404" in outcome.cause.en


async def test_the_command_prints_json_and_exits_by_the_outcome(h, monkeypatch, capsys):
    for name, value in doctor_settings(h).as_env().items():
        monkeypatch.setenv(name, value)
    assert await asyncio.to_thread(main, ["doctor", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] is True and len(document["checks"]) == len(CHECKS)
    assert document["checks"][0]["title"] == {
        "zh": "企业ID与应用 Secret",
        "en": "corp ID and the app's Secret",
    }

    await h.control("config", {"trusted_ips": ["203.0.113.7"]})
    assert await asyncio.to_thread(main, ["doctor"]) == 1
    out = capsys.readouterr().out
    assert "✗ 企业可信IP / trusted IP: 60020 本服务器的出口 IP 127.0.0.1" in out
    assert (
        "    修复：管理后台 → 应用管理" in out and "    Fix: Admin console → App Management" in out
    )


async def test_guidebot_serves_only_the_verify_files_at_its_root(
    h, aiohttp_client, tmp_path, migrated_sqlite
):
    """GUIDEBOT_WECOM_VERIFY_DIR's WW_verify_*.txt, as they are; nothing else of the folder."""
    response = await h.client.get(f"/{VERIFY}")
    assert response.status == 200 and response.content_type == "text/plain"
    assert await response.text() == "Ab12Cd34Ef56Gh78"
    for path in ("/notes.txt", "/WW_verify_Missing1.txt", "/WW_verify_../notes.txt"):
        assert (await h.client.get(path)).status == 404, path
    shutil.copyfile(migrated_sqlite, tmp_path / "unset.db")
    unset = await start_harness(
        aiohttp_client, f"sqlite+aiosqlite:///{tmp_path / 'unset.db'}", FakeClock(START)
    )
    assert (await unset.client.get(f"/{VERIFY}")).status == 404
