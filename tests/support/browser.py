"""Open a dashboard in headless Chromium (Playwright) with every network request blocked.

Used by the browser test and the dashboard benchmark. `open_dashboard(path)` is a context manager
yielding (page, console_errors, blocked_requests); the page has loaded and the dashboard script
has run (`document.body.dataset.ready == '1'`).
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-gpu", "--disable-dev-shm-usage"]


def chromium_path() -> str | None:
    """The Chromium binary: $ATTNLIFE_CHROMIUM, /usr/bin/chromium, or `chromium` on PATH."""
    for candidate in (os.environ.get("ATTNLIFE_CHROMIUM"), CHROMIUM, shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@contextlib.contextmanager
def open_dashboard(path: str | os.PathLike, width: int = 1400, height: int = 1000,
                   timeout_ms: int = 60_000) -> Iterator[tuple[object, list[str], list[str]]]:
    """Load `path` (file://) in headless Chromium with the network blocked; see module docstring."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    blocked: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            def block(route) -> None:  # noqa: ANN001 - playwright Route
                if route.request.url.startswith("file://"):
                    route.continue_()
                else:
                    blocked.append(route.request.url)
                    route.abort()

            page.route("**/*", block)
            page.goto(Path(path).resolve().as_uri(), wait_until="load", timeout=timeout_ms)
            page.wait_for_function("document.body.dataset.ready === '1'", timeout=timeout_ms)
            yield page, errors, blocked
        finally:
            browser.close()
