"""A cohort's page in a real browser (Debian Chromium via Playwright): accessible at desktop
and phone widths (axe-core, WCAG 2.2 AA), its progress moving without a reload."""

import pytest
from playwright.sync_api import Page, expect

from exchange.models import Cohort, CohortStatus
from tests.conftest import Tenant
from tests.plan_admin.conftest import DESKTOP, PHONE, no_sideways_scrolling
from tests.support.accessibility import assert_accessible


@pytest.mark.django_db(transaction=True)
def test_the_cohort_page_is_accessible_and_its_progress_moves_live(
    page: Page, north: Tenant, cohort: Cohort
) -> None:
    detail = f"/p/north/admin/cohorts/{cohort.pk}/"
    for viewport in (DESKTOP, PHONE):
        page.set_viewport_size(viewport)
        for path in ("/p/north/admin/cohorts/", "/p/north/admin/cohorts/new/", detail):
            page.goto(path)
            expect(page.locator("h1")).to_be_visible()
            assert_accessible(page)
            no_sideways_scrolling(page)
        # What was sent, opened: still accessible.
        page.get_by_text("What was sent").first.click()
        expect(page.get_by_text("SCH-99999")).to_be_visible()
        assert_accessible(page)

    page.set_viewport_size(DESKTOP)
    page.goto(detail)
    bar = page.get_by_role("progressbar", name="Members delivered")
    expect(bar).to_have_attribute("value", "1")
    # The filter updates the members and the address, not the page.
    page.evaluate("window.marker = 'still here'")
    page.get_by_label("Status").select_option(label="Not matched")
    expect(page.locator("#cohort-members caption")).to_contain_text("1 member,")
    expect(page).to_have_url(f"{page.url.split('?')[0]}?group=not_matched&member=")
    # The engine finishes the cohort: the poll shows it, says it, and stops.
    Cohort.objects.for_payer(north.payer).filter(pk=cohort.pk).update(status=CohortStatus.COMPLETED)
    expect(page.locator("#cohort-status")).to_have_text("Every member has an outcome")
    expect(page.locator("#cohort-announcement")).to_contain_text("Now: Every member has an outcome")
    expect(page.locator("#cohort-live")).not_to_have_attribute("hx-trigger", "every 3s")
    assert page.evaluate("window.marker") == "still here"
