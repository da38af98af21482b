"""Debian's Chromium, driven by Playwright, for the browser tests of both portals."""

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import Browser, sync_playwright

from hub.headless_chromium import chromium_launch


@contextmanager
def launched_chromium() -> Iterator[Browser]:
    """Yield a headless Chromium; the test's own ORM calls keep working meanwhile."""
    # Playwright's sync API keeps an event loop running in this thread, so Django takes
    # the tests' own (synchronous) ORM calls for calls from async code and refuses them.
    # The variable is set for the browser's lifetime only: it must not leak into later
    # tests (`check --deploy` rightly refuses it).
    with pytest.MonkeyPatch.context() as env, sync_playwright() as playwright:
        env.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = chromium_launch(playwright)
        try:
            yield browser
        finally:
            browser.close()
