"""The browser tests: Debian's chromium, driven by Playwright, against a live server.

Skipped (with the reason) only when no chromium is installed. Each step's screenshot
goes to var/screenshots/ (ENSWITCH_SCREENSHOTS to change it), for a reviewer to look at.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("ENSWITCH_SCREENSHOTS", ROOT / "var" / "screenshots"))
VIEWPORT = {"width": 1366, "height": 900}


def chromium_path() -> str | None:
    return (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    executable = chromium_path()
    if executable is None:
        pytest.skip("no chromium installed (Debian: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests
    # make between steps are still synchronous and safe.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport=VIEWPORT, locale="en-GB", timezone_id="UTC")  # type: ignore[attr-defined]
    context.set_default_timeout(15_000)
    opened = context.new_page()
    yield opened
    context.close()


class Camera:
    """Numbered full-page screenshots of one test's steps."""

    def __init__(self, page: object, test: str) -> None:
        self.page, self.test, self.count = page, test, 0
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def shot(self, step: str, *, full_page: bool = False) -> Path:
        """What the window shows (a long list's first screen), or the whole page."""
        self.count += 1
        path = SCREENSHOTS / f"{self.test}-{self.count:02d}-{step}.png"
        self.page.screenshot(path=str(path), full_page=full_page)  # type: ignore[attr-defined]
        return path


@pytest.fixture
def camera(page: object, request: pytest.FixtureRequest) -> Camera:
    return Camera(page, request.node.name.removeprefix("test_"))
