"""The playbook studio in real Chromium: HQ signs in, opens a playbook from the list, breaks it
in the editor (vendored CodeMirror 6) and sees the error at its line and column with its hint,
fixes it, previews a sample customer's messages, saves, and sees the new version listed and
running. No request leaves the machine; screenshots go to tests/artifacts/studio-*.png.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from guidebot.web.keys import SOP
from tests.browser.conftest import ARTIFACTS, NEEDS_CHROMIUM
from tests.metrics.conftest import at
from tests.web.conftest import PASSWORD, clock, h, sessions, sop_dir  # noqa: F401

pytestmark = NEEDS_CHROMIUM


MOVE_TO = """(needle) => {
    const view = window.studio.view;
    const at = view.state.doc.toString().indexOf(needle) + needle.length;
    view.dispatch({selection: {anchor: at}});
    view.focus();
    return view.state.doc.lineAt(at).number;
}"""


PASTE_AT_END = """(text) => {
    const view = window.studio.view;
    view.dispatch({changes: {from: view.state.doc.length, insert: text}, userEvent: "input.paste"});
}"""
NEW_STEP = "  - id: mark\n    at: call + 2d\n    action: tag\n    tag: 新客\n    expire_after: 1d\n"


async def test_break_fix_preview_and_save_a_playbook(h, sessions, browser, sop_dir):  # noqa: F811
    h.set_time(at(9, 10))
    await sessions.account("boss", "hq", [])
    base = str(h.client.make_url("/")).rstrip("/")
    context = await browser.new_context(viewport={"width": 1200, "height": 1400}, locale="zh-CN")
    outside: list[str] = []

    async def only_loopback(route):
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    await context.route("**/*", only_loopback)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    await page.goto(f"{base}/admin/playbooks")
    await page.fill("input[name=username]", "boss")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.click("[data-testid=open-week_sop]")
    await page.wait_for_selector("#editor .cm-editor .cm-lineNumbers")
    assert page.url.endswith("/admin/playbooks/week_sop")
    await page.wait_for_selector("[data-testid=check-state][data-errors='0']")
    assert str(sop_dir) not in await page.content()

    # Break it: "remind" becomes "remindd", typed at the end of the action's value.
    line = await page.evaluate(MOVE_TO, "action: remind")
    await page.keyboard.type("d")
    problem = page.locator("#problems li.error").first
    await problem.wait_for()
    assert await problem.get_attribute("data-line") == str(line)
    assert await problem.get_attribute("data-col") == "13"
    shown = await problem.text_content()
    assert f"第 {line} 行第 13 列" in shown and "未知的动作 'remindd'" in shown
    assert "是不是 'remind'？" in shown
    await page.wait_for_selector(".cm-lint-marker-error")  # in the gutter, at that line
    assert await page.locator(".cm-lintRange-error").first.text_content() == "remindd"
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "studio-error.png"), full_page=True)

    # Fix it, and change what the goal waits for.
    await page.keyboard.press("Backspace")
    await page.wait_for_selector("[data-testid=check-state][data-errors='0']")
    await page.evaluate(MOVE_TO, "within: 7")
    await page.keyboard.press("Backspace")
    await page.keyboard.type("14")
    await page.wait_for_selector("[data-testid=check-state][data-errors='0']")
    # A step typed in shows in the steps as written, on its day.
    await page.evaluate(PASTE_AT_END, NEW_STEP)
    await page.wait_for_selector("[data-testid=live-steps] li[data-step=mark]")
    assert "第 3 天" in await page.text_content("[data-testid=live-steps] li[data-step=mark]")

    # Preview a customer of 张江店 added at 20:55: the welcome at once, the reminder a day on.
    await page.select_option("select[name=store]", label="张江店 · 11")
    await page.fill("input[name=added_at]", "2026-03-09T20:55")
    await page.click("#preview-button")
    message = page.locator("#preview [data-step=welcome] pre[data-testid=message]")
    await message.wait_for()
    assert (await message.text_content()).startswith("王女士您好，我是张江店的导购李娜")
    due = await page.locator("#preview [data-step=call]").text_content()
    assert "2026-03-10 20:55" in due
    await page.screenshot(path=str(ARTIFACTS / "studio-preview.png"), full_page=True)

    # Save: the page comes back with version 2 listed, and the server runs it.
    await page.click("#save-button")
    await page.wait_for_selector("[data-testid=versions] li[data-version='2']")
    listed = await page.locator("[data-testid=versions] li[data-version='2']").text_content()
    assert "boss" in listed
    assert "第 2 版" in await page.locator("h1").text_content()
    assert h.app[SOP].registry.get("week_sop").version == 2
    running = h.app[SOP].registry.get("week_sop")
    assert running.goal.within.days == 14 and [s.id for s in running.steps][-1] == "mark"
    await page.screenshot(path=str(ARTIFACTS / "studio-saved.png"), full_page=True)
    assert errors == [] and outside == []
    await context.close()
