"""The front page, the operator sign-in and the 404 page in a real browser: accessible
(axe-core, WCAG 2.2 AA) on a desktop and on a phone."""

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import Tenant
from tests.support.accessibility import assert_accessible
from tests.support.browser import launched_chromium

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture(params=[1280, 390], ids=["desktop", "phone"])
def page(request: pytest.FixtureRequest, browser: Browser, live_server: Any) -> Iterator[Page]:
    """A tab on the live hub, as wide as a desktop or a phone."""
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": request.param, "height": 900}
    )
    yield context.new_page()
    context.close()


def test_front_page_is_accessible(page: Page, north: Tenant, south: Tenant) -> None:
    page.goto("/")

    expect(page.get_by_role("heading", level=1)).to_contain_text("Your health records follow")
    expect(page.get_by_role("link", name="Sign in with North Star Health")).to_be_visible()
    assert_accessible(page)


def test_not_found_page_is_accessible(page: Page) -> None:
    response = page.goto("/p/nowhere/me/requests/1/")

    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
    # Styled: USWDS's stylesheet loaded (its body font is Source Sans Pro).
    assert "Source Sans Pro" in page.evaluate("getComputedStyle(document.body).fontFamily")
    assert_accessible(page)


def test_operator_sign_in_is_accessible(page: Page) -> None:
    page.goto("/operator/login/?next=/operator/")
    page.get_by_label("Username").fill("operator")
    page.get_by_label("Password").fill("not the password")
    page.get_by_label("Code from your authenticator app").fill("123456")
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("alert")).to_contain_text("correct username and password")
    assert_accessible(page)
