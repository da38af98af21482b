"""Fixtures of the plan-admin portal tests: signed-in clients, browsers and portal URLs."""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from playwright.sync_api import Browser, BrowserContext

from hub.models import User
from tests.conftest import Tenant
from tests.support.browser import launched_chromium


@pytest.fixture
def signed_in() -> Callable[[User], Client]:
    """Return a test client signed in as the given person."""

    def sign_in(user: User) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return sign_in


def admin_url(name: str, slug: str = "north", **kwargs: Any) -> str:
    return reverse(f"plan_admin:{name}", kwargs={"payer_slug": slug, **kwargs})


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium per test module, so the browser tests stay bounded in time."""
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture
def admin_browser(browser: Browser, live_server: Any, north: Tenant) -> Iterator[BrowserContext]:
    """A browser signed in as North's administrator, at desktop width."""
    client = Client()
    client.force_login(north.admin)
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 800})
    context.add_cookies([{
        "name": settings.SESSION_COOKIE_NAME,
        "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
        "url": live_server.url,
    }])  # fmt: skip
    yield context
    context.close()
