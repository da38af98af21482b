"""What the member pages say: plain words, one count, sizes in one unit, finished requests
told as finished, duplicates caught, withdrawal while the consent lasts, invitations shown.

These are request-level tests; tests/members/test_member_pages_browser.py checks the same
pages in Chromium for accessibility and keyboard use only.
"""

import re
from typing import Any

import pytest
from django.test import Client

from exchange.education import HUB_DEFAULT_VERSION
from exchange.models import ConsentStatus, ExchangeRequest, ExchangeStatus
from hub.models import FhirEndpoint, OnboardingStatus, Payer
from members.record_kinds import record_kinds_in_words
from tests.conftest import Tenant
from tests.factories import (
    DeliveryFactory,
    ExchangeEventFactory,
    ExchangeRequestFactory,
    OnboardingRequestFactory,
)
from tests.support.every_payer import rows_of_every_payer

FETCHED = {"ExplanationOfBenefit": 49, "Encounter": 10, "Observation": 150, "Provenance": 2}
# What screening kept, plus the hub's own Provenance of the package (exchange/packaging.py).
KEPT = {"ExplanationOfBenefit": 49, "Encounter": 10, "Observation": 148, "Provenance": 3}
MANIFEST = {
    "resourceCounts": KEPT,
    "resourceTotal": sum(KEPT.values()),
    "screenedOut": [{"count": 2, "reason": "Sensitive information you chose not to share."}],
    "files": [{"name": "bundle.json", "size": 233047, "sha256": "0" * 64}],
}


@pytest.fixture
def member(north: Tenant, south: Tenant) -> Client:
    FhirEndpoint.objects.create(
        payer=south.payer, base_url="http://127.0.0.1:9/fhir", offers_backend_services=True
    )
    client = Client()
    client.force_login(north.member)
    return client


def _request(north: Tenant, former: Payer, **fields: Any) -> ExchangeRequest:
    request: ExchangeRequest = ExchangeRequestFactory(
        consent__member=north.member, consent__former_payer=former, **fields
    )
    return request


def _page(client: Client, exchange_request: ExchangeRequest, **headers: str) -> str:
    url = f"/p/north/me/requests/{exchange_request.pk}/"
    return client.get(url, headers=headers).content.decode()


def test_records_are_named_as_people_name_them_and_one_total_agrees_with_the_manifest(
    member: Client, north: Tenant, south: Tenant
) -> None:
    delivered = _request(
        north, south.payer, status=ExchangeStatus.DELIVERED, resource_counts=FETCHED
    )
    DeliveryFactory(exchange_request=delivered, status="delivered", manifest=MANIFEST)
    page = _page(member, delivered)
    for fhir_name in ("ExplanationOfBenefit", "Encounter", "Observation", "Provenance"):
        assert fhir_name not in page
    assert re.search(r"<th[^>]*>Claims and visits</th><td[^>]*>59</td>", page)
    assert "Records of where this came from" in page
    # The hub's own Provenance counts: the page's total is the manifest's, not what arrived.
    assert f"<strong>{MANIFEST['resourceTotal']}</strong> records shared" in page
    progress = member.get(f"/p/north/me/requests/{delivered.pk}/progress.json").json()
    assert progress["record_total"] == MANIFEST["resourceTotal"] == 210
    assert sum(kind["count"] for kind in progress["record_kinds"]) == 210
    # One unit for sizes, the way Django's filesizeformat writes them, and one list of files.
    assert "bundle.json (227.6\xa0KB)" in page and "bytes" not in page
    # North's administrator sees the same total in the package, beside what was retrieved.
    admin = Client()
    admin.force_login(north.admin)
    admin_page = admin.get(f"/p/north/admin/requests/{delivered.pk}/").content.decode()
    total = re.search(
        r"<tfoot><tr><th[^>]*>Total</th><td[^>]*>(\d+)</td><td[^>]*>(\d+)</td>", admin_page
    )
    assert total is not None
    assert (int(total[1]), int(total[2])) == (sum(FETCHED.values()), MANIFEST["resourceTotal"])


def test_while_records_arrive_the_count_is_what_arrived(
    member: Client, north: Tenant, south: Tenant
) -> None:
    retrieving = _request(
        north, south.payer, status=ExchangeStatus.RETRIEVING, resource_counts=FETCHED
    )
    page = _page(member, retrieving)
    assert "<strong>211</strong> records received so far" in page
    assert "Not packaged yet" in page and 'hx-trigger="every 2s"' in page
    assert 'aria-current="step"' in page and "Step 3 of 6" in page


def test_a_finished_request_says_what_did_not_happen_and_stops_asking_for_news(
    member: Client, north: Tenant, south: Tenant
) -> None:
    withdrawn = _request(north, south.payer, status=ExchangeStatus.REVOKED)
    ExchangeEventFactory(
        exchange_request=withdrawn,
        status=ExchangeStatus.REVOKED,
        data={"from": ExchangeStatus.MATCHING},
        message="You withdrew your consent. Nothing more will be fetched.",
    )
    for page in (_page(member, withdrawn), _page(member, withdrawn, HX_Request="true")):
        assert "Nothing was fetched." in page and "No files were delivered." in page
        assert "None yet" not in page and "Not packaged yet" not in page
        assert "hx-trigger" not in page
        assert "Step 2 of 6, where it stopped" in page


def test_withdrawal_after_delivery_is_offered_and_says_what_it_means(
    member: Client, north: Tenant, south: Tenant
) -> None:
    delivered = _request(north, south.payer, status=ExchangeStatus.DELIVERED)
    page = _page(member, delivered)
    assert "data-open-modal>Withdraw my consent</button>" in page
    assert "they stay with North Star Health" in page and "confirm(" not in page
    done = member.post(f"/p/north/me/requests/{delivered.pk}/withdraw/", follow=True)
    assert "The records already delivered stay with North Star Health" in done.content.decode()
    delivered.refresh_from_db()
    delivered.consent.refresh_from_db()
    assert delivered.status == ExchangeStatus.DELIVERED
    assert delivered.consent.status == ConsentStatus.INACTIVE
    after = done.content.decode()
    assert "You withdrew your consent on" in after and "data-open-modal" not in after


def test_a_second_request_to_a_plan_already_asked_needs_the_member_to_say_so(
    member: Client, north: Tenant, south: Tenant
) -> None:
    open_request = _request(north, south.payer, status=ExchangeStatus.MATCHING)
    ask = member.get("/p/north/me/requests/new/", {"former": south.payer.pk}).content.decode()
    assert "You already asked this plan" in ask
    assert f'href="/p/north/me/requests/{open_request.pk}/"' in ask
    data = {
        "former": south.payer.pk,
        f"p{south.payer.pk}-card_member_id": "DH10001235",
        f"p{south.payer.pk}-coverage_start": "2021-01-01",
        "policy": "regular",
        "agree": "on",
        "education_version": HUB_DEFAULT_VERSION,
    }
    refused = member.post("/p/north/me/requests/new/", data)
    assert refused.status_code == 400
    assert "You already have an open request to Southern Cross Health" in refused.text
    assert rows_of_every_payer(ExchangeRequest).count() == 1
    again = member.post("/p/north/me/requests/new/", {**data, "ask_again": "on"})
    assert again.status_code == 302
    assert rows_of_every_payer(ExchangeRequest).count() == 2


def test_each_request_is_told_apart_and_the_member_s_invitations_are_listed(
    member: Client, north: Tenant, south: Tenant
) -> None:
    _request(north, south.payer, card_member_id="DH10001235")
    _request(north, south.payer, card_member_id="DH10009999", status=ExchangeStatus.DELIVERED)
    OnboardingRequestFactory(
        payer=north.payer, requested_by=north.member, organization_name="Prairie Health Co-op"
    )
    OnboardingRequestFactory(
        payer=north.payer,
        requested_by=north.admin,
        organization_name="Someone Else's Plan",
        status=OnboardingStatus.CONTACTED,
    )
    for path in ("/p/north/me/", "/p/north/me/requests/"):
        page = member.get(path).content.decode()
        assert "Card ending 1235" in page and "Card ending 9999" in page
        assert "Covered Jan. 1, 2021 to Dec. 31, 2025" in page
        assert re.search(r'class="usa-tag bg-green"[^>]*>Delivered<', page)
        assert "Prairie Health Co-op" in page and "We will ask it to join" in page
        assert "Someone Else" not in page
        assert 'usa-current" aria-current="page"' in page


def test_a_refused_form_lists_each_error_linked_to_its_field_and_keeps_what_was_typed(
    member: Client, south: Tenant
) -> None:
    ask = member.get("/p/north/me/requests/new/", {"former": south.payer.pk}).content.decode()
    assert "your former plan uses it to find you" in ask and "best estimate" in ask
    prefix = f"id_p{south.payer.pk}"
    refused = member.post(
        "/p/north/me/requests/new/",
        {
            "former": south.payer.pk,
            f"p{south.payer.pk}-card_member_id": "DH-1<>",
            f"p{south.payer.pk}-coverage_start": "2021-01-01",
        },
    ).content.decode()
    summary = refused[refused.index('id="error-summary"') :].split("</ul>")[0]
    links = re.findall(r'<a href="#([^"]+)">', summary)
    assert links == [f"{prefix}-card_member_id", "id_policy_0", "id_agree"]
    # Each line says what to do, and for which plan when a page has several.
    assert "Southern Cross Health: Enter the member ID exactly as printed" in summary
    assert "Choose what may be shared." in summary and "This field is required" not in summary
    card = re.search(rf'<input[^>]*id="{prefix}-card_member_id"[^>]*>', refused)
    assert card is not None
    assert 'value="DH-1&lt;&gt;"' in card[0] and "usa-input--error" in card[0]
    assert (
        f'aria-describedby="{prefix}-card_member_id_error {prefix}-card_member_id_helptext"'
        in card[0]
    )
    assert f'id="{prefix}-card_member_id_error"' in refused
    assert 'value="2021-01-01"' in refused


def test_the_live_part_of_another_member_s_request_is_a_404(
    member: Client, north: Tenant, south: Tenant
) -> None:
    theirs = ExchangeRequestFactory(consent__member=south.member, consent__former_payer=north.payer)
    for slug in ("north", "south"):
        response = member.get(f"/p/{slug}/me/requests/{theirs.pk}/", headers={"HX-Request": "true"})
        assert response.status_code == 404


def test_record_kinds_merge_the_fhir_types_a_member_sees_as_one() -> None:
    kinds = record_kinds_in_words({"Claim": 2, "ExplanationOfBenefit": 3, "Basic": 1, "Goal": 0})
    assert [(k.name, k.count) for k in kinds] == [("Claims and visits", 5), ("Other records", 1)]
