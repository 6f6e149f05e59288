"""An HQ template that would render for ever: its step fails with a reason, nothing is sent, and
callbacks are acknowledged meanwhile (the render runs off the event loop, after the commit)."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlencode

import pytest

from guidebot.wecom.crypto import CallbackCrypto
from tests.support import TEST_IDENTITY, event_xml, signed_post

# Passes `sop check` (with warnings). Nested loops, each turn a scan of 2,000 numbers: before
# the render budget this held the event loop, inside the SOP transaction, for seconds.
NESTED_WELCOME = (
    "{% set seen = range(2000)|list %}\n"
    "{% for a in range(300) %}{% for b in range(500) %}{% if -1 in seen %}!{% endif %}"
    "{% endfor %}{% endfor %}\n"
    "{{ customer.name }}您好，我是{{ guide.name }}"
)


class CallbackSender(threading.Thread):
    """WeCom from outside the event loop: posts callbacks one after another, timing each ack."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.crypto = CallbackCrypto(
            TEST_IDENTITY.token, TEST_IDENTITY.aes_key, TEST_IDENTITY.corp_id
        )
        self.stop = threading.Event()
        self.acks: list[tuple[float, float, int]] = []  # (sent at, seconds, status)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            xml = event_xml("del_follow_user", "g1", f"wmbusy{n}", 1_773_400_000 + n)
            query, body = signed_post(self.crypto, xml, nonce=str(n))
            request = urllib.request.Request(
                f"{self.url}?{urlencode(query)}", data=body.encode(), method="POST"
            )
            started = time.monotonic()
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code  # 503: the inbox commit failed
            except OSError:
                status = 0
            self.acks.append((started, time.monotonic() - started, status))
            self.stop.wait(0.02)


async def welcome_failed(h) -> bool:
    tasks = await h.tasks(guide_userid="g1", external_userid="wmc1", step_id="welcome")
    return bool(tasks) and tasks[0].status == "failed"


@pytest.mark.serial  # holds an ack to a real-time bound
async def test_a_nested_loop_welcome_fails_its_step_while_callbacks_are_acked(h):
    (h.sop_dir.parent / "templates" / "messages" / "welcome.j2").write_text(
        NESTED_WELCOME, encoding="utf-8"
    )
    [first_contact, _] = h.reload()  # loads: the loops are warnings, not errors
    assert any("warning W101" in str(w) for w in first_contact.warnings)
    status, body = await h.api("GET", "/playbooks")
    [listed] = [p for p in body["playbooks"] if p["id"] == "first_contact"]
    assert listed["status"] == "enabled" and listed["warnings"] == [
        str(w) for w in first_contact.warnings
    ]
    answer = await h.control(
        "contact/add", {"userid": "g1", "external_userid": "wmc1", "welcome_code": True}
    )
    assert answer.get("delivered"), answer

    sender = CallbackSender(str(h.client.make_url("/wecom/callback")))
    sender.start()
    try:
        await asyncio.sleep(0.2)  # a few acks before the welcome starts rendering
        render_began = time.monotonic()
        draining = asyncio.create_task(h.drain())  # the add, then the welcome on the fast path
        # The flood lasts until the welcome's render has failed, not until the drain ends: a
        # drain that also handles the flood would chase it for as long as the machine is slower
        # than the sender (minutes, on a busy one).
        for _ in range(2400):  # two minutes at most
            if draining.done() or await welcome_failed(h):
                break
            await asyncio.sleep(0.05)
        render_ended = time.monotonic()
        await asyncio.sleep(0.2)
    finally:
        sender.stop.set()
        await asyncio.to_thread(sender.join, 60)
    await draining  # the flood's backlog, now a bounded one

    during = [ack for ack in sender.acks if render_began <= ack[0] <= render_ended]
    assert len(during) >= 3, sender.acks  # callbacks really arrived while it rendered
    assert all(status == 200 for _, _, status in sender.acks), sender.acks
    slowest = max(seconds for _, seconds, _ in sender.acks)
    assert slowest < 1.0, f"a callback waited {slowest:.2f} s for its ack"

    welcome = await h.task("g1", "wmc1", "welcome")
    assert welcome.status == "failed"
    assert welcome.reason.startswith("template error: 模板 'welcome.j2' 渲染")
    assert "template 'welcome.j2' is over its render budget" in welcome.reason
    assert welcome.message is None and welcome.welcome_code is None
    assert await h.welcomes() == []  # nothing sent
    assert await h.calls("externalcontact/send_welcome_msg") == []
    # The reason is where failed steps show theirs.
    status, body = await h.api("GET", f"/tasks/{welcome.id}")
    assert status == 200 and body["task"]["reason"] == welcome.reason
    # The rest of the playbook goes on.
    assert (await h.task("g1", "wmc1", "day1_intro")).status == "pending"
