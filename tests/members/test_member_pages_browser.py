"""The member pages in Chromium: WCAG 2.2 AA (axe-core) at desktop and phone widths, nothing
wider than the screen, the menu's Sign out on a phone, and the whole flow by keyboard alone.

What the pages say is proven by request-level tests (tests/members/test_member_pages.py);
these tests only look at what a browser adds: layout, focus, scripts.
"""

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import Browser, Page, expect

from exchange.models import ConsentStatus, ExchangeRequest, ExchangeStatus
from hub.models import FhirEndpoint
from tests.conftest import Tenant
from tests.factories import DeliveryFactory, ExchangeRequestFactory, OnboardingRequestFactory
from tests.members.test_member_pages import FETCHED, MANIFEST
from tests.support.accessibility import assert_accessible
from tests.support.browser import launched_chromium

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_chromium() as chromium:
        yield chromium


def _signed_in(browser: Browser, live_server: Any, tenant: Tenant, viewport: Any) -> Page:
    client = Client()
    client.force_login(tenant.member)
    context = browser.new_context(base_url=live_server.url, viewport=viewport)
    context.add_cookies([{
        "name": settings.SESSION_COOKIE_NAME,
        "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
        "url": live_server.url,
    }])  # fmt: skip
    return context.new_page()


@pytest.fixture
def former_plan(south: Tenant) -> Tenant:
    """Southern Cross Health, where the member signs in to allow the transfer (no worker runs)."""
    FhirEndpoint.objects.create(
        payer=south.payer,
        base_url="http://127.0.0.1:9/fhir",
        offers_backend_services=False,
        offers_member_authorization=True,
    )
    return south


def _fits_the_screen(page: Page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), page.url


def _modal_opened(page: Page) -> None:
    """Wait for the withdrawal dialog to have faded in (axe reads colours mid-fade wrongly)."""
    expect(page.get_by_role("dialog").get_by_role("heading")).to_be_visible()
    page.wait_for_function(
        # A function, not a bare expression: Playwright evals an expression in the page,
        # which the Content-Security-Policy refuses (no 'unsafe-eval').
        "() => getComputedStyle(document.querySelector('.usa-modal-wrapper')).opacity === '1'"
    )


def _controls_are_big_enough(page: Page) -> None:
    """Every visible button, text box, list box and menu link is at least 44 px tall."""
    small = page.evaluate(
        """() => [...document.querySelectorAll(
            '.usa-button, .usa-input, .usa-select, .usa-textarea, .usa-nav__primary a')]
          .filter(e => e.offsetParent !== null && e.getBoundingClientRect().height < 44)
          .map(e => e.outerHTML.slice(0, 60))"""
    )
    assert not small, f"{page.url}: {small}"


def _check(page: Page) -> None:
    assert_accessible(page)
    _fits_the_screen(page)
    _controls_are_big_enough(page)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280px", "390px"])
def test_every_member_page_is_accessible_and_fits_the_screen(
    browser: Browser, live_server: Any, north: Tenant, former_plan: Tenant, viewport: Any
) -> None:
    delivered = ExchangeRequestFactory(
        consent__member=north.member,
        consent__former_payer=former_plan.payer,
        status=ExchangeStatus.DELIVERED,
        resource_counts=FETCHED,
    )
    DeliveryFactory(exchange_request=delivered, status="delivered", manifest=MANIFEST)
    running = ExchangeRequestFactory(
        consent__member=north.member,
        consent__former_payer=former_plan.payer,
        status=ExchangeStatus.RETRIEVING,
        resource_counts=FETCHED,
    )
    OnboardingRequestFactory(payer=north.payer, requested_by=north.member)
    page = _signed_in(browser, live_server, north, viewport)
    for path in ("", "requests/", "plans/", "plans/invite/", f"requests/{running.pk}/"):
        page.goto(f"/p/north/me/{path}")
        _check(page)
    page.goto(f"/p/north/me/requests/new/?former={former_plan.payer.pk}")
    _check(page)
    page.get_by_role("button", name="Agree and ask").click()
    expect(page.locator("#error-summary")).to_be_focused()
    _check(page)
    page.goto("/p/north/me/plans/invite/")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#error-summary")).to_be_focused()
    _check(page)
    page.goto(f"/p/north/me/requests/{delivered.pk}/")
    _check(page)
    page.get_by_role("button", name="Withdraw my consent").click()
    _modal_opened(page)
    _check(page)
    if viewport is PHONE:
        # The header's Sign out sits in the USWDS menu, which the Menu button opens.
        page.keyboard.press("Escape")
        page.get_by_role("button", name="Menu").click()
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        _fits_the_screen(page)
    page.goto("/p/north/me/signed-out/")
    _check(page)
    page.context.close()


def _tab_to(page: Page, selector: str, limit: int = 80) -> None:
    """Press Tab until ``selector`` has the focus, and check the focus can be seen."""
    for _ in range(limit):
        if page.evaluate("s => document.activeElement.matches(s)", selector):
            break
        page.keyboard.press("Tab")
    else:
        raise AssertionError(f"Tab never reached {selector} on {page.url}")
    shown = page.evaluate(
        """() => { const e = document.activeElement, s = getComputedStyle(e);
        const target = e.matches('.usa-checkbox__input, .usa-radio__input')
          ? getComputedStyle(e.labels[0], '::before') : s;
        return target.outlineStyle !== 'none' || target.boxShadow !== 'none'; }"""
    )
    assert shown, f"no visible focus on {selector}"


def _enter_to_next_page(page: Page) -> None:
    with page.expect_navigation():
        page.keyboard.press("Enter")


def test_a_member_asks_follows_and_withdraws_with_the_keyboard_alone(
    browser: Browser, live_server: Any, north: Tenant, former_plan: Tenant
) -> None:
    page = _signed_in(browser, live_server, north, DESKTOP)
    page.goto("/p/north/me/plans/")
    _tab_to(page, f"#former-{former_plan.payer.pk}")
    page.keyboard.press("Space")
    _tab_to(page, "button[type=submit]")
    _enter_to_next_page(page)
    prefix = f"#id_p{former_plan.payer.pk}"
    _tab_to(page, f"{prefix}-card_member_id")
    page.keyboard.type("DH10001235")
    _tab_to(page, f"{prefix}-coverage_start")
    page.keyboard.type("01012021")
    # One Tab stop per group of radio buttons: Space picks the first choice.
    _tab_to(page, "#id_policy_0")
    page.keyboard.press("Space")
    _tab_to(page, "#id_agree")
    page.keyboard.press("Space")
    _tab_to(page, "button[type=submit]")
    _enter_to_next_page(page)
    expect(page.get_by_role("heading", name="Records from Southern Cross Health")).to_be_visible()
    exchange_request = ExchangeRequest.objects.for_payer(north.payer).get()
    assert exchange_request.coverage_start.isoformat() == "2021-01-01"

    _tab_to(page, "#back-to-requests")
    _enter_to_next_page(page)
    _tab_to(page, f"a[href$='/requests/{exchange_request.pk}/']")
    _enter_to_next_page(page)
    _tab_to(page, "#withdraw")
    page.keyboard.press("Enter")
    _modal_opened(page)
    # USWDS moves the focus into the dialog; Tab goes round inside it.
    _tab_to(page, "#withdraw-confirm")
    page.keyboard.press("Tab")
    _tab_to(page, "#withdraw-confirm")
    _enter_to_next_page(page)
    expect(page.get_by_role("status").first).to_contain_text("Your consent is withdrawn")
    exchange_request.consent.refresh_from_db()
    assert exchange_request.consent.status == ConsentStatus.INACTIVE
    page.context.close()


def test_the_request_page_follows_the_work_and_announces_each_change_once(
    browser: Browser, live_server: Any, north: Tenant, former_plan: Tenant
) -> None:
    running = ExchangeRequestFactory(
        consent__member=north.member,
        consent__former_payer=former_plan.payer,
        status=ExchangeStatus.RETRIEVING,
    )
    page = _signed_in(browser, live_server, north, DESKTOP)
    page.goto(f"/p/north/me/requests/{running.pk}/")
    expect(page.locator("#status")).to_have_text("Collecting your records")
    announcement = page.locator("#status-announcement")
    expect(announcement).to_be_empty()
    ExchangeRequest.objects.for_payer(north.payer).filter(pk=running.pk).update(
        status=ExchangeStatus.SCREENING, resource_counts=FETCHED
    )
    expect(page.locator("#status")).to_have_text("Checking what may be shared")
    expect(page.locator("#record-total")).to_contain_text("211 records received so far")
    expect(page.locator("#progress")).to_have_attribute("value", "4")
    expect(announcement).to_have_text("Now: Checking what may be shared")
    ExchangeRequest.objects.for_payer(north.payer).filter(pk=running.pk).update(
        status=ExchangeStatus.DELIVERED
    )
    expect(announcement).to_have_text("Now: Delivered")
    # Settled: the fresh copy carries no trigger, so the page stops asking.
    expect(page.locator("#request-live")).not_to_have_attribute("hx-trigger", "every 2s")
    page.context.close()
