"""The audit trail: each HQ and manager write path leaves one entry with its before and after,
in the change's transaction; HQ reads it in the API and on /admin/audit."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from guidebot.audit.models import AuditEntry
from guidebot.intake.models import InboxEvent, InboxStatus
from guidebot.sop.models import Action, TaskStatus
from guidebot.web.accounts import add_account
from tests.harness import write_playbook
from tests.integration.test_cli import env_for
from tests.integration.test_cli import guidebot_here as guidebot
from tests.metrics.conftest import PLAYBOOK
from tests.web.conftest import Sessions, admin_cookie, guide_cookie


async def entries(h, action: str | None = None) -> list[AuditEntry]:
    async with h.sessions() as session:
        query = select(AuditEntry).order_by(AuditEntry.id)
        if action is not None:
            query = query.where(AuditEntry.action == action)
        return list(await session.scalars(query))


async def only(h, action: str) -> AuditEntry:
    [entry] = await entries(h, action)
    assert entry.actor == "hq:admin token" and entry.role == "hq" and entry.ip, entry
    assert entry.at == h.clock.now()
    return entry


async def test_content_changes_are_audited_with_before_and_after(h):
    status, item = await h.api(
        "POST", "/content", json={"key": "spring", "kind": "text", "title": "春季", "body": "新品"}
    )
    assert status == 201, item
    created = await only(h, "content.create")
    assert created.before is None and created.after["title"] == "春季"
    assert created.target == f"content:{item['id']}"
    h.advance(60)
    status, _ = await h.api("PATCH", f"/content/{item['id']}", json={"title": "夏季"})
    assert status == 200
    updated = await only(h, "content.update")
    assert (updated.before["title"], updated.after["title"]) == ("春季", "夏季")
    assert updated.before["body"] == updated.after["body"] == "新品"
    h.advance(60)
    status, _ = await h.api("DELETE", f"/content/{item['id']}")
    assert status == 200
    deleted = await only(h, "content.delete")
    assert deleted.before["deleted_at"] is None and deleted.after["deleted_at"]
    # A refused change leaves nothing behind.
    status, _ = await h.api("PATCH", "/content/99999", json={"title": "x"})
    assert status == 404
    assert len(await entries(h)) == 3


async def test_orders_posted_and_refunded_are_audited_without_the_mobile(h):
    await h.add("g1", "wmc01")
    order = {
        "order_id": "o-9",
        "mobile": "13800138000",
        "amount": "120.50",
        "paid_at": h.clock.now().isoformat(),
    }
    await h.order(order, status=201)
    posted = await only(h, "order.post")
    assert posted.before is None and posted.after["amount"] == "120.50"
    assert "13800138000" not in str([posted.before, posted.after])
    await h.order(order, status=200)  # the same post again changes nothing: no entry
    assert len(await entries(h, "order.post")) == 1
    status, _ = await h.api("POST", "/orders/o-9/refund", json={})
    assert status == 200
    refunded = await only(h, "order.refund")
    assert (refunded.before["status"], refunded.after["status"]) == ("paid", "refunded")


async def test_store_settings_playbooks_and_transfers_are_audited(h):
    status, _ = await h.api("PATCH", "/stores/11", json={"timezone": "Asia/Urumqi"})
    assert status == 200
    store = await only(h, "store.update")
    assert store.before == {"code": "11", "timezone": None}
    assert store.after == {"code": "11", "timezone": "Asia/Urumqi"}

    write_playbook(h.sop_dir, PLAYBOOK.replace("version: 1", "version: 2"))
    status, _ = await h.api("POST", "/playbooks/reload")
    assert status == 200
    reload = await only(h, "playbooks.reload")
    assert reload.before["week_sop"]["version"] == 1 and reload.after["week_sop"]["version"] == 2
    await h.api("POST", "/playbooks/reload")  # nothing changed: no entry
    assert len(await entries(h, "playbooks.reload")) == 1

    await h.add("g1", "wmc01")
    status, answer = await h.api(
        "POST",
        "/transfers",
        json={
            "kind": "in_service",
            "handover_userid": "g1",
            "takeover_userid": "g2",
            "external_userids": ["wmc01"],
        },
    )
    assert status == 202, answer
    transfer = await only(h, "transfer.request")
    assert transfer.after["takeover"] == "g2"
    assert transfer.after["transfers"] == answer["transfers"]

    status, way = await h.api(
        "POST", "/contact-ways", json={"store": "12", "channel": "poster", "userids": ["g2"]}
    )
    assert status == 201, way
    assert (await only(h, "contact_way.create")).after["config_id"] == way["config_id"]


async def test_hq_closing_a_guides_task_is_audited_a_guide_closing_their_own_is_not(h):
    await h.add("g1", "wmc01")
    await h.add("g1", "wmc02")
    h.advance(timedelta(days=1, hours=1))
    await h.tick()
    first = await h.task("g1", "wmc01", "call")
    second = await h.task("g1", "wmc02", "call")
    assert first.action == Action.REMIND and first.status == TaskStatus.SENT
    status, _ = await h.api("POST", f"/tasks/{first.id}/skip", json={"reason": "客户出差"})
    assert status == 200
    skipped = await only(h, "task.skip")
    assert skipped.before["status"] == "sent" and skipped.after["status"] == "skipped"
    assert skipped.after["reason"] == "客户出差"
    cookie = Sessions(h).guide("g1")
    response = await h.client.post(
        f"/api/v1/tasks/{second.id}/done",
        headers={**guide_cookie(cookie), "X-CSRF-Token": Sessions(h).csrf(cookie)},
    )
    assert response.status == 200, await response.text()
    assert await entries(h, "task.done") == []


async def test_accounts_are_audited_without_their_password(h, database_url):
    account = await add_account(database_url, "alice", "password-1", "hq", [])
    assert account.role == "hq"
    await add_account(database_url, "alice", "password-2", "manager", ["11"])
    first, second = await entries(h, "account.save")
    assert first.role == "cli" and first.before is None
    assert second.before["role"] == "hq" and second.after["role"] == "manager"
    assert second.after["stores"] == [11] and second.after["password"] == "set"
    assert "password-2" not in str(second.after) and "scrypt" not in str(second.after)


async def test_the_commands_that_change_things_are_audited(h, database_url, tmp_path):
    env = env_for(database_url)
    async with h.sessions() as session, session.begin():
        for key in ("a", "b"):
            session.add(
                InboxEvent(
                    dedupe_key=key,
                    kind="x",
                    payload="<xml/>",
                    received_at=h.clock.now(),
                    status=InboxStatus.FAILED,
                    next_attempt_at=h.clock.now(),
                )
            )
    async with h.sessions() as session:
        first = await session.scalar(select(InboxEvent.id).where(InboxEvent.dedupe_key == "a"))
    done = guidebot("inbox", "dismiss", env=env)
    assert done.returncode == 2 and "--all" in done.stderr
    done = guidebot("inbox", "dismiss", str(first), env=env)
    assert done.returncode == 0, done.stderr
    [dismissed] = await entries(h, "inbox.dismiss")
    assert dismissed.after == {"dismissed": [first]} and dismissed.actor.startswith("cli:")
    async with h.sessions() as session:
        rows = await session.execute(select(InboxEvent.dedupe_key, InboxEvent.status))
        statuses = {key: status for key, status in rows}
    assert statuses == {"a": InboxStatus.DONE, "b": InboxStatus.FAILED}
    done = guidebot("inbox", "replay", "--failed", env=env)
    assert done.returncode == 0, done.stderr
    [replay] = await entries(h, "inbox.replay")
    assert replay.actor.startswith("cli:") and replay.after["failed_too"] is True
    done = guidebot("jobs", "retry", "--all", env=env)
    assert done.returncode == 0, done.stderr
    assert (await entries(h, "jobs.retry"))[0].after["handed_back"] == 0
    library = tmp_path / "library.yaml"
    library.write_text("items:\n  - {key: hello, kind: text, title: 问候, body: 您好}\n")
    done = guidebot("content", "import", str(library), env=env)
    assert done.returncode == 0, done.stderr
    [imported] = await entries(h, "content.import")
    assert imported.target == str(library) and "1 created" in imported.after["summary"]


async def test_hq_reads_the_trail_filtered_and_managers_do_not(h):
    await h.api("PATCH", "/stores/11", json={"timezone": "Asia/Urumqi"})
    h.advance(timedelta(days=2))
    await h.api("PATCH", "/stores/12", json={"timezone": "Asia/Urumqi"})
    status, answer = await h.api("GET", "/audit")
    assert status == 200 and answer["total"] == 2
    assert [e["target"] for e in answer["entries"]] == ["store:12", "store:11"]  # newest first
    day = h.clock.now().date().isoformat()
    status, answer = await h.api("GET", "/audit", params={"from": day, "action": "store."})
    assert [e["target"] for e in answer["entries"]] == ["store:12"]
    status, answer = await h.api("GET", "/audit", params={"actor": "hq:someone"})
    assert answer["entries"] == []
    status, answer = await h.api("GET", "/audit", params={"from": "yesterday"})
    assert status == 400

    sessions = Sessions(h)
    hq = await sessions.account("boss", "hq", [])
    response = await h.client.get("/admin/audit", headers=admin_cookie(hq))
    page = await response.text()
    assert response.status == 200
    assert "审计日志" in page and "修改门店设置" in page and "总部" in page
    assert "Audit trail" not in page and "Store settings changed" not in page
    assert "store:12" in page
    response = await h.client.get("/admin/audit?lang=en", headers=admin_cookie(hq))
    page = await response.text()
    assert "Audit trail" in page and "Store settings changed" in page and "Filter" in page
    assert "审计日志" not in page and "修改门店设置" not in page and "筛选" not in page
    manager = await sessions.account("m11", "manager", ["11"])
    response = await h.client.get("/admin/audit", headers=admin_cookie(manager))
    assert response.status == 404
    response = await h.client.get(
        "/api/v1/audit", headers={**admin_cookie(manager)}, allow_redirects=False
    )
    assert response.status == 403


async def test_a_playbook_saved_in_the_studio_is_audited(h):
    text = PLAYBOOK.replace("name: 测试欢迎与次日提醒", "name: 新名字")
    status, answer = await h.api("PUT", "/playbooks/week_sop", json={"text": text})
    assert status == 200, answer
    saved = await only(h, "playbook.save")
    assert saved.target == "playbook:week_sop"
    assert saved.before == {"version": 1} and saved.after["version"] == answer["version"] == 2
    assert "新名字" in saved.after["text"]
    broken = text.replace("action: remind", "action: remindd")
    status, answer = await h.api("PUT", "/playbooks/week_sop", json={"text": broken})
    assert status == 422
    assert len(await entries(h, "playbook.save")) == 1  # a refused save changed nothing
