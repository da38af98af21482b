"""The front page, the operator sign-in and the 404 page in a real browser: accessible
(axe-core, WCAG 2.2 AA) on a desktop and on a phone."""

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from tests.conftest import Tenant
from tests.support.accessibility import assert_accessible
from tests.support.browser import launched_chromium

WIDTHS = [pytest.param(1280, id="desktop"), pytest.param(390, id="phone")]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_chromium() as chromium:
        yield chromium


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", WIDTHS)
def test_front_page_is_accessible(
    browser: Browser, live_server: object, north: Tenant, south: Tenant, width: int
) -> None:
    context = browser.new_context(
        base_url=live_server.url,
        viewport={"width": width, "height": 900},
    )
    page = context.new_page()
    page.goto("/")

    expect(page.get_by_role("heading", level=1)).to_contain_text("Your health records follow")
    expect(page.get_by_role("link", name="Sign in with North Star Health")).to_be_visible()
    assert_accessible(page)
    context.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", WIDTHS)
def test_not_found_page_is_accessible(browser: Browser, live_server: object, width: int) -> None:
    context = browser.new_context(
        base_url=live_server.url,
        viewport={"width": width, "height": 900},
    )
    page = context.new_page()
    response = page.goto("/p/nowhere/me/requests/1/")

    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
    # Styled: USWDS's stylesheet loaded (its body font is Source Sans Pro).
    assert "Source Sans Pro" in page.evaluate("getComputedStyle(document.body).fontFamily")
    assert_accessible(page)
    context.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", WIDTHS)
def test_operator_sign_in_is_accessible(browser: Browser, live_server: object, width: int) -> None:
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": width, "height": 900}
    )
    page = context.new_page()
    page.goto("/operator/login/?next=/operator/")
    page.get_by_label("Username").fill("operator")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("alert")).to_contain_text("correct username and password")
    assert_accessible(page)
    context.close()
