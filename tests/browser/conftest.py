"""The browser tier: the dashboard in Debian's headless Chromium, driven by Playwright, against a
real ``predq serve``, real workers and the sandbox (the integration tier's fixtures).

Chromium is ``/usr/bin/chromium`` (or ``PREDQ_CHROMIUM``); Playwright's own browser download is
not used. Without it the tier is skipped, except in CI (``CI=true``), where that is a failure.
Screenshots go to ``PREDQ_SCREENSHOTS`` (default ``.predq/screenshots``), printed at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.integration.conftest import (  # noqa: F401  (fixtures, shared with that tier)
    api,
    pytest_runtest_makereport,
    redis_server,
    redis_url,
    sandbox,
    sandbox_server,
    workers,
)

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
#: How long an expectation waits (the dashboard refreshes every 2-5 s; jobs take a few s).
expect.set_options(timeout=20_000)
SCREENSHOTS = Path(os.environ.get("PREDQ_SCREENSHOTS", ".predq/screenshots")).resolve()


def chromium_path() -> str | None:
    return (
        os.environ.get("PREDQ_CHROMIUM")
        or shutil.which("chromium")
        or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    )


# Module-scoped, not session-scoped: Playwright's sync API runs an event loop in this thread while
# it is open, and the async tests of the other tiers need the thread's loop free.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    path = chromium_path()
    if path is None:
        message = "no Chromium: apt-get install chromium (or set PREDQ_CHROMIUM)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"the browser tier must run in CI: {message}")
        pytest.skip(message)
    with tempfile.TemporaryDirectory(prefix="predq-chromium-") as profile:
        browser = playwright.chromium.launch(
            executable_path=path, args=[*CHROMIUM_FLAGS, f"--disk-cache-dir={profile}"]
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (no cookies) on a laptop-sized screen; page errors fail the test."""
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.set_default_timeout(20_000)
    yield page
    context.close()
    expected = ("status of 401", "status of 403")  # signed out at first; forged actions
    assert not [e for e in errors if not any(x in e for x in expected)], errors


def shoot(page: Page, name: str) -> None:
    """Save a full-page screenshot under SCREENSHOTS for people to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SCREENSHOTS.exists() and any(SCREENSHOTS.glob("*.png")):
        terminalreporter.write_line(f"dashboard screenshots: {SCREENSHOTS}")
