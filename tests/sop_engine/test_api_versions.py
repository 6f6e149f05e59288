"""Versions stay with their enrollments; the API lists, filters, settles, and says 404."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.sop_engine.conftest import FIRST_CONTACT, SHANGHAI, local


def at(day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=SHANGHAI)


async def test_an_edited_playbook_leaves_running_enrollments_on_their_version(h):
    await h.add("g1", "wmc1")
    v2 = FIRST_CONTACT.replace("version: 1", "version: 2").replace(
        "at: welcome + 1d", "at: welcome + 2d"
    )
    h.write_playbook(v2)
    status, body = await h.api("POST", "/playbooks/reload")
    assert status == 200
    listed = {p["id"]: p for p in body["playbooks"]}
    assert listed["first_contact"]["version"] == 2
    assert listed["first_contact"]["status"] == "enabled"
    assert listed["first_contact"]["active_enrollments"] == {"1": 1}

    h.advance(timedelta(minutes=1))
    await h.add("g2", "wmc2")
    versions = {
        e.external_userid: e.playbook_version
        for e in await h.enrollments(playbook_id="first_contact")
    }
    assert versions == {"wmc1": 1, "wmc2": 2}
    assert local((await h.task("g1", "wmc1", "day1_intro")).due_at) == at(14, 20, 55)
    assert local((await h.task("g2", "wmc2", "day1_intro")).due_at) == at(15, 20, 56)

    # The old version's step still runs on its own schedule.
    h.set_time(at(14, 20, 55))
    assert (await h.tick()).sent == 1
    assert len(await h.app_messages("g1")) == 1 and await h.app_messages("g2") == []


async def test_a_broken_playbook_loads_disabled_with_its_reason_and_the_rest_runs(h):
    (h.sop_dir / "broken.yaml").write_text(
        "playbook: broken\nversion: 1\ntrigger:\n  event: customer.addded\nsteps: []\n",
        encoding="utf-8",
    )
    status, body = await h.api("POST", "/playbooks/reload")
    assert status == 200
    broken = next(p for p in body["playbooks"] if p["id"] == "broken")
    assert broken["status"] == "disabled"
    assert broken["errors"] and all(e.startswith(str(h.sop_dir)) for e in broken["errors"])
    assert any("customer.addded" in e for e in broken["errors"])
    await h.add("g1", "wmc1")
    assert {e.playbook_id for e in await h.enrollments()} == {"first_contact", "follow_up_7d"}


async def test_playbook_listing_counts_per_step(h):
    await h.add("g1", "wmc1")
    await h.add("g2", "wmc2", welcome_code=False)
    status, body = await h.api("GET", "/playbooks")
    assert status == 200
    first = next(p for p in body["playbooks"] if p["id"] == "first_contact")
    counts = {s["id"]: s["counts"] for s in first["steps"]}
    assert counts["welcome"]["sent"] == 1 and counts["welcome"]["skipped"] == 1
    assert counts["day1_intro"]["pending"] == 2
    assert set(counts["welcome"]) == {
        "pending",
        "sent",
        "done",
        "skipped",
        "expired",
        "failed",
        "unknown",
    }


async def test_enrollment_and_task_filters_and_pagination(h):
    await h.add("g1", "wmc1")
    await h.add("g2", "wmc2")
    status, body = await h.api("GET", "/enrollments", params={"playbook": "first_contact"})
    assert status == 200 and body["total"] == 2
    status, body = await h.api(
        "GET", "/enrollments", params={"guide": "g1", "customer": "wmc1", "status": "active"}
    )
    assert body["total"] == 2
    assert {e["playbook"] for e in body["enrollments"]} == {"first_contact", "follow_up_7d"}
    status, body = await h.api("GET", "/enrollments", params={"per_page": 1, "page": 2})
    assert body["total"] == 4 and len(body["enrollments"]) == 1 and body["page"] == 2
    status, body = await h.api("GET", "/enrollments", params={"status": "bogus"})
    assert status == 400

    # A guide's task list: what waits for them.
    status, body = await h.api(
        "GET", "/tasks", params={"guide": "g1", "action": "guide_task,remind", "status": "pending"}
    )
    assert status == 200
    assert [t["step"] for t in body["tasks"]] == ["day1_intro", "day3", "day7"]
    assert body["tasks"][0]["url"].endswith(f"/sidebar?task={body['tasks'][0]['id']}")
    status, body = await h.api(
        "GET", "/tasks", params={"guide": "g1", "due_before": at(17, 0, 0).isoformat()}
    )
    assert [t["step"] for t in body["tasks"]] == ["welcome", "day1_intro", "day3"]
    status, body = await h.api("GET", "/tasks", params={"due_before": "tomorrow"})
    assert status == 400
    status, body = await h.api("GET", "/tasks", params={"action": "email"})
    assert status == 400


async def test_done_skip_and_404s(h):
    await h.add("g1", "wmc1")
    day3 = await h.task("g1", "wmc1", "day3")
    intro = await h.task("g1", "wmc1", "day1_intro")

    assert (await h.api("POST", "/tasks/999999/done"))[0] == 404
    assert (await h.api("POST", "/tasks/abc/skip", json={"reason": "x"}))[0] == 404
    assert (await h.api("GET", "/tasks/999999"))[0] == 404
    assert (await h.api("POST", f"/tasks/{day3.id}/skip", json={}))[0] == 400
    assert (await h.api("POST", f"/tasks/{day3.id}/skip", json={"reason": " "}))[0] == 400

    status, body = await h.api("POST", f"/tasks/{day3.id}/skip", json={"reason": "客户已到店购买"})
    assert status == 200 and body["task"]["status"] == "skipped"
    assert body["task"]["reason"] == "客户已到店购买"
    assert (await h.api("POST", f"/tasks/{day3.id}/done"))[0] == 409

    h.set_time(at(14, 20, 55))
    await h.tick()
    status, body = await h.api("POST", f"/tasks/{intro.id}/done", json={"note": "聊过了"})
    assert status == 200
    assert body["task"]["status"] == "done" and body["task"]["completed_by"] == "api"
    # Idempotent for the sidebar's double taps.
    assert (await h.api("POST", f"/tasks/{intro.id}/done"))[0] == 200

    # The skipped step is never sent.
    h.set_time(at(16, 20, 55))
    await h.tick()
    assert await h.calls("externalcontact/add_msg_template") == []

    response = await h.client.get("/api/v1/tasks")
    assert response.status == 401
