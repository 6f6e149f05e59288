"""The sidebar's one-tap task changes, server side: done, skip with a reason, snooze; only the
guide's own tasks, for a customer still theirs; a customer who left answers `customer_left`.
The bilingual no-session guide picker."""

from __future__ import annotations

from datetime import timedelta

from tests.content.test_sidebar_api import login, post


async def test_done_skip_and_snooze_with_one_tap_each(h):
    await h.add("g1", "wmc1")
    first = await h.task("g1", "wmc1", step="day3")
    second = await h.task("g1", "wmc1", step="day7", due_in=timedelta(days=2), status="pending")
    third = await h.task("g1", "wmc1", step="day1", due_in=timedelta(hours=-1))
    await login(h)
    status, body = await post(h, "/sidebar/api/tasks/done", {"task_id": first})
    assert status == 200 and body["task"]["status"] == "done", body
    task = await h.get_task(first)
    assert (task.completed_by, task.completed_by_user) == ("sidebar", "g1")
    assert task.completed_at == h.clock.now()

    status, body = await post(h, "/sidebar/api/tasks/skip", {"task_id": second})
    assert status == 400 and "原因" in body["error"]["reason"]
    assert (await h.get_task(second)).status == "pending"
    status, body = await post(h, "/sidebar/api/tasks/skip", {"task_id": second, "reason": "已到店"})
    assert status == 200 and body["task"]["status"] == "skipped"
    assert (await h.get_task(second)).reason == "已到店"

    status, body = await post(h, "/sidebar/api/tasks/snooze", {"task_id": third})
    assert status == 200 and body["task"]["status"] == "snoozed"
    assert (await h.get_task(third)).due_at == h.clock.now() + timedelta(hours=2)

    # The profile lists what is left by name, the snoozed task among it.
    response = await h.client.get("/sidebar/api/customer?external_userid=wmc1")
    tasks = (await response.json())["tasks"]
    assert [(t["id"], t["status"], t["playbook_name"], t["step_name"]) for t in tasks] == [
        (third, "snoozed", "7 天回访", "群发任务")
    ]
    status, body = await post(h, "/sidebar/api/tasks/done", {"task_id": first})
    assert status == 200  # a second tap on done changes nothing
    status, body = await post(h, "/sidebar/api/tasks/snooze", {"task_id": first})
    assert (status, body["error"]["code"]) == (409, "conflict")


async def test_only_the_guides_own_tasks_and_only_from_our_pages(h):
    await h.add("g1", "wmc1")
    await h.add("g2", "wmc2")
    theirs = await h.task("g2", "wmc2")
    mine = await h.task("g1", "wmc1")
    await login(h)
    status, body = await post(h, "/sidebar/api/tasks/done", {"task_id": theirs})
    assert (status, body["error"]["code"]) == (404, "not_found")
    assert (await h.get_task(theirs)).status == "sent"
    status, _ = await post(
        h, "/sidebar/api/tasks/done", {"task_id": mine}, Origin="https://evil.example.com"
    )
    assert status == 403 and (await h.get_task(mine)).status == "sent"
    status, _ = await post(h, "/sidebar/api/tasks/later", {"task_id": mine})
    assert status == 400
    status, _ = await post(h, "/sidebar/api/tasks/snooze", {"task_id": mine, "delay": "30天"})
    assert status == 400 and (await h.get_task(mine)).status == "sent"


async def test_a_customer_who_left_is_said_to_have_left(h):
    await h.add("g1", "wmc1")
    task = await h.task("g1", "wmc1")
    item = await h.item(kind="text", title="t", body="b")
    await login(h)
    await h.act("contact/delete_by_customer", {"userid": "g1", "external_userid": "wmc1"})
    # The deletion closed the task already: nothing left in the guide's list.
    assert (await h.get_task(task)).status == "skipped"
    response = await h.client.get("/sidebar/api/customer?external_userid=wmc1")
    profile = await response.json()
    assert profile["relation"]["status"] == "lost" and profile["tasks"] == []
    for path, payload in (
        ("/sidebar/api/prepare", {"item_id": item["id"], "external_userid": "wmc1"}),
        ("/sidebar/api/replied", {"external_userid": "wmc1"}),
        ("/sidebar/api/tasks/done", {"task_id": task}),
    ):
        status, body = await post(h, path, payload)
        assert (status, body["error"]["code"]) == (403, "customer_left"), (path, body)
        assert "客户已不在你的客户列表" in body["error"]["reason"]


async def test_the_guide_picker_without_a_session_speaks_both_languages(h):
    response = await h.client.get("/sidebar", allow_redirects=False)
    html = await response.text()
    assert "请选择导购" in html and "Choose a guide" in html
    assert "登录 · Sign in" in html and "王芳 (g1)" in html
