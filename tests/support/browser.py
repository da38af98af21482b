"""Debian's Chromium, driven by Playwright, for the browser tests of both portals."""

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, sync_playwright

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
        refused = _csp_violations_collected(browser)
        try:
            yield browser
        finally:
            browser.close()
        # Every page the tests opened ran under the hub's Content-Security-Policy: Chromium
        # reports what the policy refused (an inline script or style, a foreign source).
        assert not refused, f"the Content-Security-Policy refused: {refused}"


def _csp_violations_collected(browser: Browser) -> list[str]:
    """Return a list that collects the CSP violations of every context ``browser`` opens."""
    refused: list[str] = []
    new_context = browser.new_context

    def collecting(context: BrowserContext) -> BrowserContext:
        def note(message: ConsoleMessage) -> None:
            if "Content Security Policy" in message.text:
                refused.append(f"{message.location.get('url', '')}: {message.text}")

        context.on("console", note)
        return context

    browser.new_context = lambda **options: collecting(new_context(**options))
    return refused
