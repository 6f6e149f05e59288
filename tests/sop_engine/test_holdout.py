"""Holdouts: who is held out (a hash, stable across versions), what they get (nothing that
reaches them or their guide), and the lift of a playbook's goal (Newcombe's interval)."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from guidebot import i18n
from guidebot.cli import main
from guidebot.sop.check_language import translate
from guidebot.sop.holdout import (
    HOLDOUT,
    MIN_PER_GROUP,
    TREATED,
    Arm,
    assign,
    draw,
    lift,
    parse_share,
    rebuild_goal_counts,
)
from guidebot.sop.models import SopEnrollment
from tests.harness import ADMIN, REPO

HELD = """
playbook: hold_c
version: {version}
trigger:
  event: customer.added
timezone: Asia/Shanghai
send_window:
  hours: "10:00-21:00"
  days: mon-sun
stop_when: [contact.lost, contact.removed]
goal:
  event: order.paid
  within: 14d
holdout: 50%
steps:
  - id: welcome
    at: enroll
    action: welcome
    template: welcome.j2
    expire_after: 20s
  - id: day1_intro
    at: welcome + 1d
    action: remind
    template: remind_day1_intro.j2
    expire_after: 1d
  - id: day3
    at: enroll + 3d
    action: guide_task
    template: follow_up_day3.j2
    expire_after: 1d
  - id: mark
    at: enroll + 1d
    action: tag
    tag: 新客
"""


@pytest.fixture
def playbooks() -> list[str]:
    return [HELD.format(version=1)]


# ---- assignment ----------------------------------------------------------------------------


def test_assignment_is_a_fixed_hash_of_playbook_and_customer() -> None:
    # sha256("hold_c\x00wmc1")[:8] / 2**64: the same on every machine and every run.
    assert round(draw("hold_c", "wmc1"), 3) == 0.042
    assert assign("hold_c", "wmc1", 0.5) == HOLDOUT
    assert assign("hold_c", "wmc2", 0.5) == TREATED
    assert assign("hold_c", "wmc1", 0.0) is None  # no holdout: no group at all
    # Another playbook draws again: the customer's place is per playbook.
    assert assign("hold_a", "wmc1", 0.5) == TREATED


def test_about_ten_percent_of_ten_thousand_customers_are_held_out() -> None:
    held = sum(assign("spring", f"wm{i:05d}", 0.1) == HOLDOUT for i in range(10_000))
    assert 900 <= held <= 1100  # 10% ± 1 point (3 standard deviations is 0.9 points)
    # Raising the share only moves treated customers into the holdout.
    for i in range(2000):
        if assign("spring", f"wm{i:05d}", 0.1) == HOLDOUT:
            assert assign("spring", f"wm{i:05d}", 0.2) == HOLDOUT


@pytest.mark.parametrize("text", ["0%", "10%", "2.5%", "50%"])
def test_holdout_shares_read(text: str) -> None:
    assert parse_share(text) == float(text[:-1]) / 100


@pytest.mark.parametrize("text", ["10", "60%", "ten percent", "-5%", "10 %%"])
def test_bad_holdout_shares_say_why_in_both_languages(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_share(text)
    message = str(caught.value)
    assert "holdout" in message or "held out" in message
    # The checker's English sentence has a code and a Chinese form (sop check --lang zh).
    code, chinese = translate(message, i18n.ZH)
    assert code in ("E219", "E220")
    assert any("\u4e00" <= ch <= "\u9fff" for ch in chinese)


# ---- lift ----------------------------------------------------------------------------------


def test_lift_matches_newcombes_worked_example() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 vs 48/80, method 10
    # gives +0.2000 with 95% interval 0.0524 to 0.3339.
    found = lift(Arm(70, 56), Arm(80, 48))
    assert found.refused is None
    assert found.difference == pytest.approx(0.2)
    assert found.relative == pytest.approx(1 / 3)
    assert (round(found.low, 4), round(found.high, 4)) == (0.0524, 0.3339)


def test_lift_at_zero_conversion_keeps_inside_the_possible() -> None:
    found = lift(Arm(40, 0), Arm(40, 0))
    assert found.difference == 0 and found.relative is None
    assert -1 <= found.low < 0 < found.high <= 1


def test_too_few_in_either_group_is_refused() -> None:
    enough, short = Arm(MIN_PER_GROUP, 10), Arm(MIN_PER_GROUP - 1, 1)
    for found in (lift(enough, short), lift(short, enough)):
        assert found.difference is None and found.low is None
        assert found.refused.startswith("样本太少") and "too few" in found.refused
    assert lift(enough, enough).refused is None


# ---- end to end: the held-out customer gets nothing -----------------------------------------


async def test_held_out_customer_gets_no_welcome_no_message_no_guide_task(h) -> None:
    assert assign("hold_c", "wmc1", 0.5) == HOLDOUT
    assert assign("hold_c", "wmc2", 0.5) == TREATED
    await h.add("g1", "wmc1")
    await h.add("g2", "wmc2")

    welcomed = [w["external_userid"] for w in await h.welcomes()]
    assert welcomed == ["wmc2"]
    [held] = await h.enrollments(external_userid="wmc1")
    [treated] = await h.enrollments(external_userid="wmc2")
    assert (held.treatment_group, treated.treatment_group) == (HOLDOUT, TREATED)
    assert held.goal_event == "order.paid"  # its goal is still counted, for the comparison
    # Only the step that reaches nobody (the tag) is planned for the held-out customer.
    assert [t.step_id for t in await h.tasks(external_userid="wmc1")] == ["mark"]
    assert {t.step_id for t in await h.tasks(external_userid="wmc2")} == {
        "welcome",
        "day1_intro",
        "day3",
        "mark",
    }

    for _ in range(4):  # a day at a time through day 3
        h.advance(timedelta(days=1))
        await h.tick()
    assert await h.app_messages("g1") == []  # no reminder about the held-out customer
    assert len(await h.app_messages("g2")) >= 1
    sent_to = [
        c["body"]["external_userid"] for c in await h.calls("externalcontact/add_msg_template")
    ]
    assert sent_to == [["wmc2"]]

    # The held-out customer buys: the goal is credited, and the lift's rollup counts it.
    paid = {"order_id": "H-1", "external_userid": "wmc1", "amount": "99.00"}
    status, _ = await h.api("POST", "/orders", json={**paid, "paid_at": h.clock.now().isoformat()})
    assert status == 201
    [held] = await h.enrollments(external_userid="wmc1")
    assert held.goal_met_at is not None
    status, body = await h.api("GET", "/playbooks")
    [listed] = [p for p in body["playbooks"] if p["id"] == "hold_c"]
    assert listed["holdout"]["held_out"] == {"customers": 1, "converted": 1, "rate": 1.0}
    assert listed["holdout"]["treated"]["customers"] == 0  # wmc2's window is still open

    # An edit of the playbook keeps everyone in their group.
    h.write_playbook(HELD.format(version=2))
    h.reload()
    await h.add("g3", "wmc1")  # the same customer, another guide: already enrolled once
    assert [e.treatment_group for e in await h.enrollments(external_userid="wmc1")] == [HOLDOUT]
    assert assign("hold_c", "wmc1", 0.5) == HOLDOUT


async def test_playbooks_api_shows_the_lift_or_refuses_too_few(h) -> None:
    await h.add("g1", "wmc1")
    await h.add("g2", "wmc2")
    status, body = await h.api("GET", "/playbooks")
    assert status == 200
    [listed] = [p for p in body["playbooks"] if p["id"] == "hold_c"]
    holdout = listed["holdout"]
    assert holdout["share"] == 0.5 and holdout["method"] == "newcombe-hybrid-score"
    # Nothing settled yet (goal windows open): too few.
    assert holdout["treated"]["customers"] == 0 and holdout["difference"] is None
    assert holdout["refused"].startswith("样本太少")
    page = await (await h.client.get("/admin/playbooks", headers=ADMIN)).text()
    assert f"样本太少：每组至少 {MIN_PER_GROUP} 位已结算客户" in page and "too few" not in page

    # Hand-built settled history: 40 treated (20 bought), 40 held out (10 bought).
    now = h.clock.now()
    async with h.sessions() as session, session.begin():
        for i in range(80):
            group = TREATED if i < 40 else HOLDOUT
            met = now - timedelta(days=20) if (i < 20 or 40 <= i < 50) else None
            session.add(_enrollment(f"wmx{i}", group, now - timedelta(days=30), met))
        await session.flush()
        await rebuild_goal_counts(session)  # written by hand: the lift's rollup from them
    status, body = await h.api("GET", "/playbooks")
    [listed] = [p for p in body["playbooks"] if p["id"] == "hold_c"]
    holdout = listed["holdout"]
    assert holdout["treated"] == {"customers": 40, "converted": 20, "rate": 0.5}
    assert holdout["held_out"] == {"customers": 40, "converted": 10, "rate": 0.25}
    assert holdout["difference"] == pytest.approx(0.25)
    assert holdout["relative"] == pytest.approx(1.0)
    low, high = holdout["ci95"]
    assert 0 < low < 0.25 < high < 0.5
    assert holdout["refused"] is None

    # The admin list shows it too.
    page = await h.client.get("/admin/playbooks", headers=ADMIN)
    text = await page.text()
    holdout_line = text.split('data-testid="holdout-hold_c">', 1)[1].split("</p>", 1)[0]
    assert "对照组 50.0%" in holdout_line and "提升 +25.0 个百分点" in holdout_line
    assert "lift" not in holdout_line and "Holdout" not in holdout_line
    # And the playbook's own page (the studio).
    page = await h.client.get("/admin/playbooks/hold_c", headers=ADMIN)
    assert page.status == 200
    assert "提升 +25.0 个百分点" in await page.text()
    page = await h.client.get("/admin/playbooks/hold_c?lang=en", headers=ADMIN)
    holdout_line = (await page.text()).split('data-testid="holdout-hold_c">', 1)[1]
    holdout_line = holdout_line.split("</p>", 1)[0]
    assert "Holdout 50.0%" in holdout_line and "lift +25.0 points" in holdout_line
    assert "对照组" not in holdout_line and "提升" not in holdout_line
    # Enrollments from before the playbook had a holdout carry no group and are left out.
    async with h.sessions() as session, session.begin():
        await session.execute(
            update(SopEnrollment)
            .where(SopEnrollment.external_userid == "wmx0")
            .values(treatment_group=None)
        )
        await rebuild_goal_counts(session)
    status, body = await h.api("GET", "/playbooks")
    [listed] = [p for p in body["playbooks"] if p["id"] == "hold_c"]
    assert listed["holdout"]["treated"]["customers"] == 39


def _enrollment(ext, group, at, met) -> SopEnrollment:
    return SopEnrollment(
        playbook_id="hold_c",
        playbook_version=1,
        scope="*",
        guide_userid="g1",
        external_userid=ext,
        store_id=None,
        timezone="Asia/Shanghai",
        trigger="customer.added",
        cycle="0",
        status="completed",
        enrolled_at=at,
        goal_event="order.paid",
        goal_deadline=at + timedelta(days=14),
        goal_met_at=met,
        treatment_group=group,
        settings={},
        created_at=at,
        updated_at=at,
    )


# ---- sop check and sop simulate ------------------------------------------------------------


@pytest.fixture
def deployed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(__import__("os").environ):
        if name.startswith("GUIDEBOT_"):
            monkeypatch.delenv(name)
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    (tmp_path / "sop").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path / "sop"


def test_sop_check_refuses_a_bad_holdout_in_both_languages(deployed: Path, capsys) -> None:
    (deployed / "hold_c.yaml").write_text(HELD.format(version=1).replace("50%", "60%"))
    assert main(["sop", "check", "--lang", "zh", str(deployed / "hold_c.yaml")]) == 1
    assert ": holdout: E220 '60%'：对照组最多 50%" in capsys.readouterr().out
    assert main(["sop", "check", "--lang", "en", str(deployed / "hold_c.yaml")]) == 1
    assert ": holdout: E220 '60%': at most 50% may be held out" in capsys.readouterr().out
    (deployed / "hold_c.yaml").write_text(HELD.format(version=1).replace("50%", "10"))
    assert main(["sop", "check", "--lang", "zh", str(deployed / "hold_c.yaml")]) == 1
    assert "holdout: E219 10: holdout 应为 0% 到 50% 之间的百分比" in capsys.readouterr().out


def test_sop_simulate_says_which_group_a_customer_is_in(deployed: Path, capsys) -> None:
    (deployed / "hold_c.yaml").write_text(HELD.format(version=1))
    path = str(deployed / "hold_c.yaml")
    at = ["--added-at", "2026-03-13T20:55"]
    assert main(["sop", "simulate", path, *at, "--customer", "wmc1"]) == 0
    out = capsys.readouterr().out
    assert "holdout    50% of customers held out (对照组)" in out
    assert "customer   wmc1: 对照组 / held out" in out
    assert out.count("held out 对照组客户不发送、不建任务") == 3  # welcome, remind, guide_task
    assert main(["sop", "simulate", path, *at, "--customer", "wmc2"]) == 0
    out = capsys.readouterr().out
    assert "customer   wmc2: 处理组 / treated" in out and "不建任务" not in out


def test_report_playbooks_lists_the_holdout_and_refuses_too_few(
    deployed: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    (deployed / "hold_c.yaml").write_text(HELD.format(version=1))
    monkeypatch.setenv("GUIDEBOT_SOP_DIR", str(deployed))
    monkeypatch.setenv("GUIDEBOT_DATABASE_URL", f"sqlite+aiosqlite:///{deployed.parent / 'g.db'}")
    assert main(["report", "playbooks"]) == 0
    out = capsys.readouterr().out
    assert "hold_c" in out and "对照组 holdout 50%" in out and "样本太少" in out
    assert main(["report", "playbooks", "--format", "json"]) == 0
    assert '"refused": "样本太少' in capsys.readouterr().out
    assert main(["report", "playbooks", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("playbook,name,goal,met,open,missed,holdout")
