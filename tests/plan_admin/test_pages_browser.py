"""Every plan-admin page in a real browser (Debian Chromium via Playwright), as a new
administrator meets it: accessible at desktop and phone widths (axe-core, WCAG 2.2 AA),
no sideways scrolling on a phone, *Test* results shown where the button was clicked, and
filters that update the list without reloading the page.
"""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from exchange.models import ExchangeEvent, ExchangeRequest, ExchangeStatus
from tests.conftest import Tenant
from tests.factories import (
    DeliveryAttemptFactory,
    DeliveryFactory,
    ExchangeRequestFactory,
    UserFactory,
)
from tests.plan_admin.conftest import DESKTOP, PHONE, no_sideways_scrolling
from tests.support.accessibility import assert_accessible


def _requests(north: Tenant, south: Tenant) -> dict[str, ExchangeRequest]:
    """A delivered, a failed and a withdrawn request of North's, from South."""

    def make(status: str, **fields: object) -> ExchangeRequest:
        member = UserFactory(payer=north.payer, first_name="Ada", last_name="Lovelace")
        return ExchangeRequestFactory(consent__member=member, consent__former_payer=south.payer,
                                      status=status, **fields)  # fmt: skip

    now = timezone.now()
    delivered = make(ExchangeStatus.DELIVERED, opted_in_at=now - timedelta(days=3),
                     resource_counts={"ExplanationOfBenefit": 200, "Coverage": 15},
                     screened_out_counts={"outside-five-year-window": 4})  # fmt: skip
    ExchangeEvent.objects.create(payer=north.payer, exchange_request=delivered,
                                 status=ExchangeStatus.SCREENING, message="We received your records.",
                                 data={"from": "retrieving"})  # fmt: skip
    delivery = DeliveryFactory(exchange_request=delivered, status="delivered", manifest={
        "files": [{"name": "ExplanationOfBenefit.ndjson", "size": 2048, "sha256": "ab" * 32}]})  # fmt: skip
    DeliveryAttemptFactory(delivery=delivery, succeeded=True)
    return {
        "delivered": delivered,
        "failed": make(
            ExchangeStatus.FAILED, reason_code="no_endpoint", opted_in_at=now - timedelta(days=10)
        ),
        "running": make(ExchangeStatus.RETRIEVING),
        "withdrawn": make(ExchangeStatus.REVOKED, reason_code="consent_withdrawn"),
    }


@pytest.mark.django_db(transaction=True)
def test_every_admin_page_is_accessible_on_desktop_and_phone(
    page: Page, north: Tenant, south: Tenant
) -> None:
    made = _requests(north, south)
    paths = [
        "/p/north/admin/",
        "/p/north/admin/directory/",
        "/p/north/admin/requests/",
        f"/p/north/admin/requests/{made['delivered'].pk}/",
        f"/p/north/admin/requests/{made['failed'].pk}/",
        "/p/north/admin/compliance/",
        "/p/north/admin/as-former-payer/",
        "/p/north/admin/repository/",
        "/p/north/admin/member-education/",
        # An invalid filter: the error summary and its links are checked too.
        "/p/north/admin/requests/?opted_in_from=2025-02-01&opted_in_to=2025-01-01",
    ]
    for viewport in (DESKTOP, PHONE):
        page.set_viewport_size(viewport)
        for path in paths:
            page.goto(path)
            expect(page.locator("h1")).to_be_visible()
            assert_accessible(page)
            if viewport is PHONE:
                no_sideways_scrolling(page)
    page.set_viewport_size(DESKTOP)
    page.goto("/p/north/admin/requests/")
    current = page.locator(".usa-nav a[aria-current='page']")
    expect(current).to_have_text("Requests")


@pytest.mark.django_db(transaction=True)
def test_reports_and_refused_forms_are_accessible_too(page: Page) -> None:
    page.goto("/p/north/admin/")
    page.get_by_role("button", name="Test FHIR endpoint").click()
    expect(page.locator("#fhir-endpoint-result .report")).to_be_visible()
    idp = page.locator("#identity-provider")
    idp.get_by_label("Issuer").fill("http://login.example-payer.com")
    idp.get_by_label("Client id").fill("hub")
    idp.get_by_role("button", name="Save identity provider").click()
    summary = page.locator("#identity-provider .usa-alert--error")
    expect(summary).to_contain_text("must start with https://")
    # The summary's link leads to the field, which kept what was typed.
    summary.get_by_role("link").first.click()
    issuer = page.locator("#identity-provider-issuer")
    expect(issuer).to_be_focused()
    expect(issuer).to_have_value("http://login.example-payer.com")
    expect(issuer).to_have_attribute("aria-invalid", "true")
    assert_accessible(page)


def _in_view(page: Page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    assert box is not None and size is not None
    return box["y"] >= 0 and box["y"] + min(box["height"], 40) <= size["height"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_each_test_result_appears_beside_its_button_without_a_reload(
    page: Page, viewport: dict[str, int]
) -> None:
    page.set_viewport_size(viewport)
    page.goto("/p/north/admin/")
    page.evaluate("window.marker = 'still here'")
    buttons = [
        ("Test FHIR endpoint", "#fhir-endpoint-result"),
        ("Test identity provider", "#identity-provider-result"),
        ("Test client keys", "#client-jwks-result"),
        ("Fetch the host key", "#sftp-host-key-result"),
        ("Test SFTP destination", "#sftp-destination-result"),
    ]
    for name, result in buttons:
        page.get_by_role("button", name=name).click()
        report = page.locator(f"{result} .report")
        expect(report).to_be_visible()
        assert "Test failed" in report.inner_text()  # nothing is configured yet
        assert _in_view(page, f"{result} .report"), f"{name}: the result is out of view"
        assert page.get_by_role("button", name=name).is_visible()
        assert page.evaluate("window.marker") == "still here", f"{name} reloaded the page"


@pytest.mark.django_db(transaction=True)
def test_filters_update_the_list_and_its_csv_link_without_a_reload(
    page: Page, north: Tenant, south: Tenant
) -> None:
    made = _requests(north, south)
    page.goto("/p/north/admin/requests/")
    page.evaluate("window.marker = 'still here'")
    expect(page.locator("#request-results caption")).to_contain_text("4 requests")

    page.get_by_label("Status").select_option(label="Consent withdrawn")
    expect(page).to_have_url(re.compile(r"[?&]status=revoked(&|$)"))  # hx-push-url
    expect(page.locator("#request-results caption")).to_contain_text("1 request")
    row = page.locator("#request-results tbody tr")
    expect(row).to_contain_text("Consent withdrawn")
    expect(row).to_contain_text("Member withdrew consent")
    csv_link = page.get_by_role("link", name="Export this request as CSV")
    assert "status=revoked" in (csv_link.get_attribute("href") or "")

    page.get_by_label("Opted in from").fill("2025-02-01")
    page.get_by_label("Opted in to").fill("2025-01-01")
    page.get_by_role("button", name="Apply filters").click()
    summary = page.locator("#request-results .usa-alert--error")
    expect(summary).to_contain_text("The end of the date range is before its start.")
    expect(page.locator("#id_opted_in_to-error")).to_contain_text("before its start")
    expect(page.get_by_label("Opted in to")).to_have_value("2025-01-01")
    expect(page.locator("#request-results table")).to_have_count(0)
    expect(page.get_by_role("link", name="Export")).to_have_count(0)
    assert page.evaluate("window.marker") == "still here"
    assert made["withdrawn"].pk  # the fixture's rows were listed above


@pytest.mark.django_db(transaction=True)
def test_cancelling_asks_for_confirmation_in_a_dialog(
    page: Page, north: Tenant, south: Tenant
) -> None:
    running = _requests(north, south)["running"]
    page.goto(f"/p/north/admin/requests/{running.pk}/")
    page.get_by_role("button", name="Cancel the request…").click()
    dialog = page.get_by_role("dialog")
    # The dialog's wrapper is a zero-size fixed box; its heading is what a person sees.
    expect(dialog.get_by_role("heading", name=f"Cancel request {running.pk}?")).to_be_visible()
    assert_accessible(page)
    dialog.get_by_role("button", name="Keep it running").click()
    expect(dialog.get_by_role("heading")).to_be_hidden()
    running.refresh_from_db()
    assert running.status == ExchangeStatus.RETRIEVING

    page.get_by_role("button", name="Cancel the request…").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel the request", exact=True).click()
    expect(page.get_by_role("status").filter(has_text="The request is cancelled.")).to_be_visible()
    expect(page.locator(".status .usa-tag")).to_have_text("Cancelled")
    running.refresh_from_db()
    assert running.status == ExchangeStatus.CANCELLED
