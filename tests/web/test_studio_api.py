"""The playbook studio's API: validate (errors at their line and column with the hint), preview
(the real planner and the sandboxed templates for a sample customer), and save (refused on
errors; else a new version, the file, the history with diffs, the registry reloaded so the next
enrollment runs it), HQ only, with the session's CSRF token."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

from sqlalchemy import select

from guidebot.sop.models import SopEnrollment, SopPlaybookVersion
from guidebot.sop.registry import load_registry
from guidebot.sop.versions import with_version, write_atomically
from guidebot.web.keys import SOP
from tests.harness import ADMIN
from tests.metrics.conftest import PLAYBOOK, at
from tests.web.conftest import admin_cookie, guide_cookie

GOOD = PLAYBOOK.strip() + "\n"
# One more step for the saved version: a tag a day after the reminder.
EDITED = GOOD + (
    "  - id: mark\n    name: 标记新客\n    at: call + 1d\n    action: tag\n    tag: 新客\n"
    "    expire_after: 1d\n"
)


def _line_of(text: str, needle: str) -> tuple[int, int]:
    for number, line in enumerate(text.split("\n"), start=1):
        if needle in line:
            return number, line.index(needle) + 1
    raise AssertionError(needle)


async def test_validate_places_a_yaml_syntax_error_at_its_line(h):
    broken = GOOD.replace("  event: customer.added", "  event: [customer.added")
    status, answer = await h.api(
        "POST", "/playbooks/validate", json={"name": "week_sop", "text": broken}
    )
    assert status == 200, answer
    [error] = answer["errors"]
    assert error["code"] == "yaml_syntax" and error["path"] == "(file)"
    assert error["message"].startswith("YAML syntax error")
    line, _ = _line_of(broken, "event: [customer.added")
    assert line <= error["line"] <= line + 2  # PyYAML stops where the flow list cannot go on
    assert answer["timeline"] == [] and answer["version"] is None


async def test_validate_names_an_unknown_action_with_its_hint(h):
    broken = GOOD.replace("action: remind", "action: remindd")
    status, answer = await h.api(
        "POST", "/playbooks/validate", json={"name": "week_sop", "text": broken}
    )
    assert status == 200
    [error] = answer["errors"]
    line, col = _line_of(broken, "remindd")
    assert (error["line"], error["col"]) == (line, col)
    assert error["path"] == "steps[1].action" and error["code"] == "unknown_action"
    assert error["message"] == "unknown action 'remindd'"
    assert error["hint"].startswith("did you mean 'remind'?")
    assert "expected one of" in error["hint"]
    # The studio asks in its page's language: sop check's Chinese, the advice inside it.
    status, answer = await h.api(
        "POST", "/playbooks/validate", json={"name": "week_sop", "text": broken, "lang": "zh"}
    )
    [chinese] = answer["errors"]
    assert (chinese["line"], chinese["col"], chinese["code"]) == (line, col, "unknown_action")
    assert chinese["message"].startswith("未知的动作 'remindd'（是不是 'remind'？）")
    assert chinese["hint"] is None and "unknown" not in chinese["message"]

    status, answer = await h.api(
        "POST", "/playbooks/validate", json={"name": "week_sop", "text": GOOD}
    )
    assert answer["errors"] == [] and answer["version"] == 1
    kinds = [(e["kind"], e["id"] or e["event"]) for e in answer["timeline"]]
    assert kinds == [
        ("trigger", "customer.added"),
        ("step", "welcome"),
        ("step", "call"),
        ("window", None),
        ("stop", "contact.lost"),
        ("stop", "contact.removed"),
        ("stop", "order.paid"),
        ("goal", "order.paid"),
    ]
    call = answer["timeline"][2]
    assert (call["day"], call["at"], call["action"]) == (1.0, "welcome + 1d", "remind")
    assert answer["timeline"][3]["value"] == "09:00-21:00"
    assert answer["timeline"][-1]["day"] == 7.0
    # The name must be the playbook's id, as the file's stem must.
    status, answer = await h.api(
        "POST", "/playbooks/validate", json={"name": "other", "text": GOOD}
    )
    assert [e["code"] for e in answer["errors"]] == ["id_mismatch"]


async def test_preview_plans_a_sample_customer_and_renders_each_message(h):
    body = {"name": "week_sop", "text": GOOD, "store": "11", "added_at": "2026-03-09T20:55"}
    status, answer = await h.api("POST", "/playbooks/preview", json=body)
    assert status == 200, answer
    shown = answer["preview"]
    assert shown["zone"] == "Asia/Shanghai" and shown["store"]["name"] == "张江店"
    welcome, call = shown["steps"]
    assert welcome["immediate"] and welcome["due_local"] == "2026-03-09T20:55:00+08:00"
    assert welcome["to"] == "customer"
    assert welcome["message"].startswith("王女士您好，我是张江店的导购李娜")
    assert call["to"] == "guide" and "王女士" in call["message"]
    assert call["due_local"] == "2026-03-10T20:55:00+08:00" and not call["moved"]

    # Added after the window closed: the reminder waits for it to open the day after.
    body["added_at"] = "2026-03-09T22:30"
    status, answer = await h.api("POST", "/playbooks/preview", json=body)
    welcome, call = answer["preview"]["steps"]
    assert welcome["due_local"] == "2026-03-09T22:30:00+08:00"
    assert call["due_local"] == "2026-03-11T09:00:00+08:00" and call["moved"]

    # A template that cannot render says so on its step; broken text has no preview.
    body["text"] = GOOD.replace("action: remind", "action: remindd")
    status, answer = await h.api("POST", "/playbooks/preview", json=body)
    assert status == 200 and answer["preview"] is None and answer["errors"]
    body["store"], body["text"] = "nowhere", GOOD
    status, answer = await h.api("POST", "/playbooks/preview", json=body)
    assert status == 422 and "nowhere" in answer["error"]["reason"]


async def _versions(h) -> list[tuple[int, str | None, str]]:
    async with h.sessions() as session:
        rows = await session.scalars(
            select(SopPlaybookVersion)
            .where(SopPlaybookVersion.playbook_id == "week_sop")
            .order_by(SopPlaybookVersion.version)
        )
        return [(r.version, r.saved_by, r.diff) for r in rows]


async def test_save_refuses_errors_and_changes_nothing(h, sop_dir: Path):
    before = (sop_dir / "week_sop.yaml").read_text()
    broken = GOOD.replace("action: remind", "action: remindd")
    status, answer = await h.api("PUT", "/playbooks/week_sop", json={"text": broken})
    assert status == 422 and answer["error"]["code"] == "invalid_playbook"
    [error] = answer["errors"]
    assert error["code"] == "unknown_action" and error["line"] == _line_of(broken, "remindd")[0]
    assert (sop_dir / "week_sop.yaml").read_text() == before
    assert await _versions(h) == []
    assert h.app[SOP].registry.get("week_sop").version == 1
    # The studio edits the playbooks the directory has; it makes no new files.
    status, answer = await h.api("PUT", "/playbooks/new_one", json={"text": GOOD})
    assert status == 404 and not (sop_dir / "new_one.yaml").exists()


async def test_save_bumps_the_version_writes_the_file_keeps_history_and_reloads(
    h, sessions, sop_dir: Path
):
    hq = await sessions.account("boss", "hq", [])
    headers = {**admin_cookie(hq), "X-CSRF-Token": sessions.csrf(hq)}
    other_instance = load_registry(sop_dir)  # another server sharing the directory
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")  # enrolled on version 1

    response = await h.client.put(
        "/api/v1/playbooks/week_sop", json={"text": EDITED, "base_version": 1}, headers=headers
    )
    answer = await response.json()
    assert response.status == 200, answer
    assert (answer["version"], answer["running"], answer["unchanged"]) == (2, 2, False)
    written = (sop_dir / "week_sop.yaml").read_text()
    assert written == EDITED.replace("version: 1", "version: 2")
    left = await asyncio.to_thread(os.listdir, sop_dir)
    assert [name for name in left if name.startswith(".")] == []  # no temporary file left

    [(v1, by1, diff1), (v2, by2, diff2)] = await _versions(h)
    assert (v1, by1, diff1) == (1, None, "")  # the file as it was before the studio
    assert (v2, by2) == (2, "boss")
    assert "-version: 1\n+version: 2\n" in diff2 and "+  - id: mark\n" in diff2

    registry = h.app[SOP].registry
    assert registry.get("week_sop").version == 2 and registry.get("week_sop", 1) is not None
    await h.add("g1", "wmc02")  # a new enrollment runs the new version, the old keeps its own
    async with h.sessions() as session:
        versions = dict(
            (
                await session.execute(
                    select(SopEnrollment.external_userid, SopEnrollment.playbook_version)
                )
            ).all()
        )
    assert versions == {"wmc01": 1, "wmc02": 2}

    # The other instance sees the file change on its next look and loads version 2.
    assert other_instance.changed()
    other_instance.reload()
    assert other_instance.get("week_sop").version == 2

    # The same text again is no new version; an editor still on version 1 is refused.
    response = await h.client.put(
        "/api/v1/playbooks/week_sop", json={"text": written}, headers=headers
    )
    assert (await response.json())["unchanged"] is True
    response = await h.client.put(
        "/api/v1/playbooks/week_sop", json={"text": GOOD, "base_version": 1}, headers=headers
    )
    assert response.status == 409
    # Text still saying version 1 is numbered past every version seen.
    response = await h.client.put(
        "/api/v1/playbooks/week_sop", json={"text": GOOD, "base_version": 2}, headers=headers
    )
    assert (await response.json())["version"] == 3
    assert [v for v, _, _ in await _versions(h)] == [1, 2, 3]


async def test_only_hq_may_use_the_studio_and_sessions_need_the_csrf_token(h, sessions):
    manager = await sessions.account("m11", "manager", ["11"])
    guide = sessions.guide("g1")
    body = {"text": EDITED}
    for cookie, value in ((admin_cookie(manager), manager), (guide_cookie(guide), guide)):
        headers = {**cookie, "X-CSRF-Token": sessions.csrf(value)}
        response = await h.client.put("/api/v1/playbooks/week_sop", json=body, headers=headers)
        assert response.status == 403, await response.text()
        response = await h.client.post(
            "/api/v1/playbooks/validate", json={"name": "week_sop", "text": GOOD}, headers=headers
        )
        assert response.status == 403
    hq = await sessions.account("boss", "hq", [])
    response = await h.client.put("/api/v1/playbooks/week_sop", json=body, headers=admin_cookie(hq))
    assert response.status == 403 and (await response.json())["error"]["code"] == "csrf"
    assert await _versions(h) == []
    assert h.app[SOP].registry.get("week_sop").version == 1


async def test_body_limits_and_the_playbook_size_limit(h):
    # Over the checker's 256 KiB in UTF-8 while under the field's length in characters.
    wide = GOOD + "# " + "长" * 90_000 + "\n"
    status, answer = await h.api(
        "POST", "/playbooks/validate", json={"name": "week_sop", "text": wide}
    )
    assert status == 200
    assert [(e["code"], e["line"]) for e in answer["errors"]] == [("too_large", 1)]
    status, answer = await h.api(
        "POST", "/playbooks/validate", json={"name": "week_sop", "text": "a" * 300_000}
    )
    assert status == 400 and "text" in answer["error"]["reason"]
    big = b'{"text": "#' + b"\\u957f" * 300_000 + b'"}'  # 2.1 MB of JSON escapes
    response = await h.client.put(
        "/api/v1/playbooks/week_sop",
        data=io.BytesIO(big),
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "too_large"
    assert h.app[SOP].registry.get("week_sop").version == 1


def test_the_version_is_rewritten_where_the_checker_found_it():
    text = "playbook: x\nversion:   7   # bump me\nname: v\n"
    assert with_version(text, (2, 12), 12) == "playbook: x\nversion:   12   # bump me\nname: v\n"
    flow = "{playbook: x, version: 3, steps: []}"
    assert with_version(flow, (1, 24), 4) == "{playbook: x, version: 4, steps: []}"


def test_the_file_is_replaced_whole_and_keeps_its_permissions(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("old\n")
    path.chmod(0o664)
    write_atomically(path, "新\n")
    assert path.read_text(encoding="utf-8") == "新\n"
    assert path.stat().st_mode & 0o777 == 0o664
    assert [p.name for p in tmp_path.iterdir()] == ["p.yaml"]
