"""What every browser test shares: Debian's Chromium (Playwright cannot download its own here),
launched headless with the flags a container needs, the folder screenshots go to, and the skip
with its reason where Chromium is missing.

Starting Playwright's driver and Chromium took 1.5 s of each browser test: each pytest process
starts them once, with the articles' web site that the sidebar's links lead to, and each test
gets the browser with nothing open in it. What a test opens (a context, or a page with a context
of its own) holds its own cookies and storage, and is closed after the test whatever the test
closed itself. So that the browser, the servers and the test share one event loop, the browser
tests run on the loop of the pytest process rather than on a loop of their own.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
NEEDS_CHROMIUM = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.access(CHROMIUM, os.X_OK),
        reason=f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)",
    ),
]
ARTICLES = "articles.test"  # the articles' own web site, as Chromium reaches it (port 80)


@pytest.fixture
def _function_scoped_runner(_session_scoped_runner):
    """The browser tests, and their fixtures, on the process's loop, where the browser lives."""
    return _session_scoped_runner


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def articles():
    """The articles' own web site: any path answers with its path as the heading."""

    async def article(request: web.Request) -> web.Response:
        return web.Response(text=f"<h1>{request.path}</h1>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{path:.*}", article)
    server = TestServer(app)
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def _chromium(articles):
    """A headless Chromium for this pytest process, closed at its end."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                f"--host-resolver-rules=MAP {ARTICLES}:80 127.0.0.1:{articles.port}",
            ],
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def browser(_chromium):
    """The headless Chromium with nothing open; what the test opened is closed after it."""
    assert not _chromium.contexts, "a previous test left a context open"
    try:
        yield _chromium
    finally:
        for context in _chromium.contexts:
            await context.close()
