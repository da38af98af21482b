"""Debian's Chromium under Playwright, as the browser tests and the README screenshots launch it.

Playwright is a development dependency (requirements-dev.txt): nothing the hub serves
imports this module.
"""

from playwright.sync_api import Browser, Playwright

CHROMIUM = "/usr/bin/chromium"
# No sandbox and no GPU: containers give neither. No background or component updates:
# the browser must not reach beyond loopback (the tests block it, STYLE.md §9).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


def chromium_launch(playwright: Playwright) -> Browser:
    """Return a headless Debian Chromium."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
