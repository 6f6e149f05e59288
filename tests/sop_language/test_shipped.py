"""The playbooks guidebot ships load cleanly and say what the issue asks of them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from guidebot.sop.loader import load_directory, templates_dir_for

ROOT = Path(__file__).resolve().parents[2]


def shipped() -> dict:
    loaded = load_directory(ROOT / "sop", templates_dir_for(ROOT / "sop"))
    for item in loaded:
        assert item.errors == (), [str(e) for e in item.errors]
        assert item.enabled
    return {item.id: item.playbook for item in loaded}


def test_shipped_playbooks_load_without_errors() -> None:
    books = shipped()
    assert set(books) >= {
        "first_contact",
        "follow_up_7d",
        "birthday",
        "weekly_new_arrivals",
        "repurchase_30d",
    }
    for book in books.values():
        assert book.version >= 1 and book.timezone == "Asia/Shanghai"
        assert len(book.digest) == 64


def test_first_contact_welcomes_at_once_and_reminds_the_guide_on_day_1() -> None:
    book = shipped()["first_contact"]
    assert book.trigger.event == "customer.added"
    welcome, day1 = book.steps
    assert (welcome.action, welcome.anchor, welcome.offset) == ("welcome", "enroll", timedelta(0))
    assert welcome.immediate and welcome.expire_after == timedelta(seconds=20)
    assert (day1.action, book.offset_from_enroll(day1.id)) == ("remind", timedelta(days=1))


def test_follow_up_has_day_3_and_day_7_guide_tasks() -> None:
    book = shipped()["follow_up_7d"]
    assert [(s.action, book.offset_from_enroll(s.id)) for s in book.steps] == [
        ("guide_task", timedelta(days=3)),
        ("guide_task", timedelta(days=7)),
    ]
    assert "order.paid" in book.stop_when and "contact.lost" in book.stop_when
    assert book.enroll.reenter_after is not None and book.enroll.reenter_after >= book.length


def test_birthday_and_weekly_cron() -> None:
    books = shipped()
    birthday = books["birthday"]
    assert (birthday.trigger.event, birthday.trigger.field) == ("date", "birthday")
    assert [s.action for s in birthday.steps] == ["guide_task"]
    weekly = books["weekly_new_arrivals"]
    assert (weekly.trigger.event, weekly.trigger.cron) == ("cron", "0 10 * * mon")
    assert weekly.audience.tags == {"新品关注"}
    assert weekly.steps[0].action == "guide_task" and weekly.steps[0].content
    assert weekly.stop_tags == {"不再推送"}


def test_repurchase_reminder_for_first_time_buyers_with_a_holdout() -> None:
    book = shipped()["repurchase_30d"]
    trigger = book.trigger
    assert (trigger.event, trigger.after, trigger.orders) == (
        "repurchase_due",
        timedelta(days=30),
        1,
    )
    assert book.holdout == 0.1 and book.goal is not None and book.goal.event == "order.paid"
    assert [s.action for s in book.steps] == ["guide_task"]
    assert "order.paid" in book.stop_when
