"""What every browser test shares: Debian's Chromium (Playwright cannot download its own here),
launched headless with the flags a container needs, the folder screenshots go to, and the skip
with its reason where Chromium is missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
NEEDS_CHROMIUM = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.access(CHROMIUM, os.X_OK),
        reason=f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)",
    ),
]


@pytest.fixture
async def browser():
    """A headless Chromium, closed after the test."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield browser
        finally:
            await browser.close()
