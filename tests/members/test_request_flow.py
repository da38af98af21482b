"""The member's pages: find former plans, consent, follow, withdraw, invite a missing plan."""

import html
import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from exchange.education import HUB_DEFAULT_VERSION
from exchange.models import (
    AuthorizationMode,
    Consent,
    ConsentStatus,
    ExchangeRequest,
    ExchangeStatus,
)
from exchange.state_machine import exchange_request_transition
from hub.models import AuditEvent, FhirEndpoint, OnboardingRequest, Payer, PayerStatus, PlanType
from tests.conftest import Tenant
from tests.factories import MemberLaunchFactory, PayerFactory, UserFactory
from tests.support.every_payer import rows_of_every_payer


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _holder(payer: Payer, *, backend: bool = True) -> Payer:
    FhirEndpoint.objects.create(
        payer=payer,
        base_url="http://127.0.0.1:9/fhir",
        offers_backend_services=backend,
        offers_member_authorization=not backend,
    )
    return payer


def _form(*payers: Payer, card: str = "DH10001235", policy: str = "regular") -> dict[str, Any]:
    data: dict[str, Any] = {
        "former": [p.pk for p in payers],
        "policy": policy,
        "agree": "on",
        # The member-education text the page showed (exchange/education.py).
        "education_version": HUB_DEFAULT_VERSION,
    }
    for payer in payers:
        data[f"p{payer.pk}-card_member_id"] = card
        data[f"p{payer.pk}-coverage_start"] = "2021-01-01"
        data[f"p{payer.pk}-coverage_end"] = "2025-06-30"
    return data


def _asked(north: Tenant, south: Tenant, *, backend: bool = True) -> tuple[Client, ExchangeRequest]:
    """North's member asks South, a former plan in the directory, through the form; return
    the member's client and the request."""
    _holder(south.payer, backend=backend)
    client = _client(north.member)
    client.post("/p/north/me/requests/new/", _form(south.payer))
    return client, ExchangeRequest.objects.for_payer(north.payer).get()


def test_the_directory_lists_other_connected_plans_and_searches(
    north: Tenant, south: Tenant
) -> None:
    _holder(south.payer)
    _holder(north.payer)
    west = _holder(
        PayerFactory(slug="west", name="Western Mutual", states=["CA"], plan_types=[PlanType.QHP])
    )
    PayerFactory(slug="east", name="Eastern Care", status=PayerStatus.INVITED)
    client = _client(north.member)
    page = client.get("/p/north/me/plans/").content.decode()
    assert "Southern Cross Health" in page and "Western Mutual" in page
    assert "North Star Health</label>" not in page  # not one's own plan
    assert "Eastern Care" not in page  # not participating yet
    found = client.get("/p/north/me/plans/", {"state": "ca"}).content.decode()
    assert "Western Mutual" in found and "Southern Cross Health" not in found
    assert "Western Mutual" in client.get("/p/north/me/plans/", {"q": "mutual"}).content.decode()
    assert west.pk


def test_one_consent_asks_several_former_plans_at_once(
    north: Tenant, south: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    _holder(south.payer)
    west = _holder(PayerFactory(slug="west", name="Western Mutual"), backend=False)
    with django_capture_on_commit_callbacks() as queued:
        response = _client(north.member).post("/p/north/me/requests/new/", _form(south.payer, west))
    assert response.status_code == 302
    requests = {r.former_payer.slug: r for r in ExchangeRequest.objects.for_payer(north.payer)}
    assert set(requests) == {"south", "west"}
    # Payer-to-payer goes straight to the worker; member sign-in waits for the member.
    assert requests["south"].authorization_mode == AuthorizationMode.BACKEND_SERVICES
    assert requests["south"].status == ExchangeStatus.CONSENTED
    assert requests["west"].status == ExchangeStatus.AWAITING_AUTHORIZATION
    assert len(queued) == 1
    south_request = requests["south"]
    assert south_request.due_by - south_request.opted_in_at == timedelta(days=7)
    consent = south_request.consent.fhir_resource
    assert consent["id"] == str(south_request.consent_id)
    assert consent["sourceReference"]["reference"].endswith(
        f"/p/north/fhir/Consent/{south_request.consent_id}"
    )
    assert consent["policy"][0]["uri"].endswith("#regular")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"card": '<script>alert("x")</script>'}, "letters, digits and dashes only"),
        ({"coverage_end": "2015-01-01"}, "more than five years ago"),
        ({"coverage_end": "2020-01-01"}, "before the start date"),
        ({"agree": None}, "Tick the box to give your consent"),
    ],
)
def test_bad_input_is_refused_with_a_message_and_nothing_is_created(
    north: Tenant, south: Tenant, change: dict[str, Any], message: str
) -> None:
    _holder(south.payer)
    data = _form(south.payer, card=change.get("card", "DH10001235"))
    if "coverage_end" in change:
        data[f"p{south.payer.pk}-coverage_end"] = change["coverage_end"]
    if "agree" in change:
        del data["agree"]
    response = _client(north.member).post("/p/north/me/requests/new/", data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not rows_of_every_payer(ExchangeRequest).exists()
    assert not rows_of_every_payer(Consent).exists()


def test_withdrawing_ends_the_request_and_the_consent(north: Tenant, south: Tenant) -> None:
    client, exchange_request = _asked(north, south)
    response = client.post(f"/p/north/me/requests/{exchange_request.pk}/withdraw/")
    assert response.status_code == 302
    exchange_request.refresh_from_db()
    assert exchange_request.status == ExchangeStatus.REVOKED
    assert exchange_request.consent.status == ConsentStatus.INACTIVE
    assert exchange_request.consent.fhir_resource["status"] == "inactive"
    assert AuditEvent.objects.for_payer(north.payer).filter(action="consent.withdraw").count() == 1
    progress = client.get(f"/p/north/me/requests/{exchange_request.pk}/progress.json").json()
    assert progress["status"] == "revoked" and progress["ended"] is True
    assert "withdrew" in progress["events"][-1]["message"]


def test_another_member_and_another_payer_get_404(north: Tenant, south: Tenant) -> None:
    _holder(south.payer)
    _client(north.member).post("/p/north/me/requests/new/", _form(south.payer))
    exchange_request = ExchangeRequest.objects.for_payer(north.payer).get()
    neighbour = UserFactory(username="nadia", payer=north.payer)
    for user, slug in ((neighbour, "north"), (south.member, "south"), (south.member, "north")):
        client = _client(user)
        for path in ("", "progress.json"):
            assert (
                client.get(f"/p/{slug}/me/requests/{exchange_request.pk}/{path}").status_code == 404
            )
        assert (
            client.post(f"/p/{slug}/me/requests/{exchange_request.pk}/withdraw/").status_code == 404
        )
    exchange_request.refresh_from_db()
    assert exchange_request.status == ExchangeStatus.CONSENTED


def test_a_missing_plan_can_be_invited(north: Tenant) -> None:
    response = _client(north.member).post(
        "/p/north/me/plans/invite/",
        {
            "organization_name": "Prairie Health Co-op",
            "state": "ND",
            "npi": "",
            "note": "2019-2022",
        },
    )
    assert response.status_code == 302
    invitation = OnboardingRequest.objects.for_payer(north.payer).get()
    assert invitation.requested_by == north.member
    assert invitation.organization_name == "Prairie Health Co-op"
    bad = _client(north.member).post(
        "/p/north/me/plans/invite/", {"organization_name": "X", "npi": "1234567890"}
    )
    assert bad.status_code == 400 and "NPI" in bad.content.decode()
    assert rows_of_every_payer(OnboardingRequest).count() == 1


def test_the_status_page_shows_the_timeline(north: Tenant, south: Tenant) -> None:
    client, exchange_request = _asked(north, south, backend=False)
    page = client.get(f"/p/north/me/requests/{exchange_request.pk}/").content.decode()
    assert "Sign in at Southern Cross Health" in page
    assert "Waiting for you to sign in at Southern Cross Health" in page
    assert exchange_request.due_by > timezone.now()


def test_a_former_plan_id_that_is_not_a_number_is_ignored_not_a_500(
    north: Tenant, south: Tenant
) -> None:
    _holder(south.payer)
    # "²" passes str.isdigit() but is no integer: the ticked ids must not reach the database raw.
    response = _client(north.member).get(
        "/p/north/me/requests/new/", {"former": ["²", "1e3", str(south.payer.pk)]}
    )
    assert response.status_code == 200
    assert [p.pk for p in response.context["former_payers"]] == [south.payer.pk]


def test_what_went_wrong_or_right_is_told_on_the_page_the_member_lands_on(
    north: Tenant, south: Tenant
) -> None:
    client = _client(north.member)
    nothing_ticked = client.get("/p/north/me/requests/new/", follow=True)
    assert nothing_ticked.redirect_chain == [("/p/north/me/plans/", 302)]
    assert "Choose at least one former plan" in nothing_ticked.content.decode()
    invited = client.post(
        "/p/north/me/plans/invite/", {"organization_name": "Prairie Health Co-op"}, follow=True
    )
    assert "We will ask Prairie Health Co-op to join" in invited.content.decode()
    _holder(south.payer)
    west = _holder(PayerFactory(slug="west", name="Western Mutual"))
    opened = client.post("/p/north/me/requests/new/", _form(south.payer, west), follow=True)
    assert "2 requests opened" in opened.content.decode()


def test_an_invited_plan_s_state_is_checked_like_everywhere_else(north: Tenant) -> None:
    client = _client(north.member)
    refused = client.post(
        "/p/north/me/plans/invite/", {"organization_name": "Prairie Health Co-op", "state": "1!"}
    )
    assert "two-letter code" in refused.content.decode()
    assert not rows_of_every_payer(OnboardingRequest).exists()
    client.post("/p/north/me/plans/invite/", {"organization_name": "Prairie", "state": "nd"})
    assert OnboardingRequest.objects.for_payer(north.payer).get().state == "ND"
    assert rows_of_every_payer(AuditEvent).filter(action="onboarding_request.create").count() == 1


def test_the_directory_names_kinds_of_plan_in_words_and_searches_them(
    north: Tenant, south: Tenant
) -> None:
    _holder(south.payer)
    _holder(
        PayerFactory(slug="west", name="Western Mutual", plan_types=[PlanType.MEDICARE_ADVANTAGE])
    )
    client = _client(north.member)
    page = client.get("/p/north/me/plans/").content.decode()
    assert "Medicare Advantage" in page and "medicare_advantage</td>" not in page
    found = client.get("/p/north/me/plans/", {"plan_type": PlanType.MEDICARE_ADVANTAGE})
    assert [p.name for p, _ in found.context["rows"]] == ["Western Mutual"]


def test_a_very_long_refusal_from_the_former_plan_ends_the_request_not_a_500(
    north: Tenant, south: Tenant
) -> None:
    client, exchange_request = _asked(north, south, backend=False)
    MemberLaunchFactory(exchange_request=exchange_request, state="launch-state")
    response = client.get(
        "/p/north/me/launch/callback/",
        {"state": "launch-state", "error": "access_denied", "error_description": "no " * 400},
    )
    assert response.status_code == 302
    exchange_request.refresh_from_db()
    assert exchange_request.status == ExchangeStatus.AUTHORIZATION_DENIED
    said = exchange_request.events.get(status=ExchangeStatus.AUTHORIZATION_DENIED).message
    assert said.startswith("Southern Cross Health did not allow the transfer (no no")
    assert len(said) <= 500


def _next_poll(page: str) -> str:
    """Return the address the live part of a request page polls next, as htmx reads it."""
    found = re.search(r'id="request-live"\s+hx-get="([^"]+)"', page)
    assert found, "the live part does not poll"
    return html.unescape(found.group(1))


def test_a_poll_of_an_unchanged_request_gets_204_and_any_change_gets_the_new_part(
    north: Tenant, south: Tenant
) -> None:
    client, exchange_request = _asked(north, south)
    poll = _next_poll(client.get(f"/p/north/me/requests/{exchange_request.pk}/").text)
    htmx = {"HX-Request": "true"}

    unchanged = client.get(poll, headers=htmx)
    assert unchanged.status_code == 204 and unchanged.content == b""
    # The same address without htmx is the whole page, as ever.
    assert 'id="request-live"' in client.get(poll).text

    # Each thing the live part shows, changed, gets the part back with a poll that knows it.
    changes = [
        # records fetched so far (the worker's progress)
        lambda: (
            ExchangeRequest.objects.for_payer(north.payer)
            .filter(pk=exchange_request.pk)
            .update(resource_counts={"Patient": 1, "Encounter": 4})
        ),
        # a move, with its line on the timeline
        lambda: exchange_request_transition(
            payer=north.payer,
            exchange_request_id=exchange_request.pk,
            from_status=ExchangeStatus.CONSENTED,
            to_status=ExchangeStatus.MATCHING,
            message="Looking for you at Southern Cross Health.",
            actor=None,
            actor_label="test",
        ),
    ]
    shown = []
    for change in changes:
        change()
        changed = client.get(poll, headers=htmx)
        assert changed.status_code == 200 and 'id="request-live"' in changed.text
        assert _next_poll(changed.text) != poll
        poll = _next_poll(changed.text)
        assert client.get(poll, headers=htmx).status_code == 204
        shown.append(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", changed.text)))
    assert "5 records received so far" in shown[0]
    assert "Status: Finding you" in shown[1]

    # The version tells nothing to another member or payer: still a 404.
    neighbour = UserFactory(username="nadia", payer=north.payer)
    for user, slug in ((neighbour, "north"), (south.member, "south"), (south.member, "north")):
        other = _client(user).get(poll.replace("/p/north/", f"/p/{slug}/"), headers=htmx)
        assert other.status_code == 404


def test_the_status_page_announces_status_changes_and_labels_the_consent_choice(
    north: Tenant, south: Tenant
) -> None:
    client, exchange_request = _asked(north, south)
    detail = f"/p/north/me/requests/{exchange_request.pk}/"
    status_page = client.get(detail).content.decode()
    # The poll rewrites the status in place; a screen reader hears it only through a live
    # region, which the page keeps and the poll fills when, and only when, the status changed.
    assert re.search(
        r'<div role="status" aria-live="polite"[^>]*id="status-announcement"', status_page
    )
    changed = client.get(detail, {"seen": "awaiting_authorization"}, headers={"HX-Request": "true"})
    assert re.search(r'id="status-announcement" hx-swap-oob="innerHTML">Now: Asked<', changed.text)
    same = client.get(detail, {"seen": "consented"}, headers={"HX-Request": "true"})
    assert "status-announcement" not in same.text and 'id="status"' in same.text
    consent_page = client.post(
        "/p/north/me/requests/new/", {**_form(south.payer), "policy": ""}
    ).content.decode()
    # A group of radio buttons is named by a legend, and its error is tied to the group.
    assert re.search(
        r'<fieldset class="[^"]*" aria-describedby="id_policy_error">\s*'
        r'<legend class="usa-legend">What may be shared</legend>',
        consent_page,
    )
    assert 'id="id_policy_error"' in consent_page
