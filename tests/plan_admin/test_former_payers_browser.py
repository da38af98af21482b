"""*Former payers we ask* in a real browser (Chromium): accessible at desktop and phone
widths with a 1,000-character client id on show, and a padded id refused beside its field."""

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from exchange.models import HolderRegistration, RegistrationChoice, RegistrationMethod
from tests.conftest import Tenant
from tests.factories import FhirEndpointFactory
from tests.plan_admin.conftest import DESKTOP, PHONE, no_sideways_scrolling
from tests.support.accessibility import assert_accessible


@pytest.mark.django_db(transaction=True)
def test_the_registration_pages_are_accessible_and_refuse_a_padded_id(
    page: Page, north: Tenant, south: Tenant
) -> None:
    FhirEndpointFactory(payer=south.payer, base_url="https://fhir.south.example/r4")
    HolderRegistration.objects.create(
        payer=north.payer,
        former_payer=south.payer,
        choice=RegistrationChoice.MANUAL,
        method=RegistrationMethod.MANUAL,
        backend_client_id="oob." + "Q" * 996,
        registered_at=timezone.now(),
        last_error="Southern Cross Health refused the hub's token request (invalid_client).",
        last_error_at=timezone.now(),
    )
    for viewport in (DESKTOP, PHONE):
        page.set_viewport_size(viewport)
        for path in ("/p/north/admin/former-payers/", "/p/north/admin/former-payers/south/"):
            page.goto(path)
            expect(page.locator("h1")).to_be_visible()
            expect(page.get_by_text("invalid_client").first).to_be_visible()
            assert_accessible(page)
            if viewport is PHONE:
                no_sideways_scrolling(page)

    page.set_viewport_size(DESKTOP)
    page.goto("/p/north/admin/")
    page.get_by_role("link", name="Manage registrations at former payers").click()
    page.get_by_role("link", name="Southern Cross Health").click()
    expect(page.locator(".usa-nav a[aria-current='page']")).to_have_text("Integration settings")
    page.get_by_label("Payer-to-payer client id (SMART Backend Services)").fill(" padded-id")
    page.get_by_role("button", name="Save registration").click()
    expect(page.locator(".usa-alert--error, .usa-error-message").first).to_contain_text(
        "starts or ends with a space"
    )
    assert_accessible(page)
    registration = HolderRegistration.objects.for_payer(north.payer).get()
    assert registration.backend_client_id.startswith("oob.")
