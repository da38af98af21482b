"""An opt-in naming a former payer that offers only member-authorized access: the request
waits for the member, who is emailed a link to it, signs in at their new plan through the
link and finds the button that starts the sign-in at the former payer (issue 13 item 1).

North's members sign in at one sandbox (its identity provider); South's records are held by
another, which offers the member's own sign-in (SMART App Launch) and no payer-to-payer
access. West, as in the other opt-in tests, is asked payer-to-payer.
"""

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.core import mail
from django.test import Client

from exchange.member_links.tasks import member_authorization_link_send
from exchange.models import (
    AuthorizationMode,
    Consent,
    ExchangeRequest,
    ExchangeStatus,
    MemberAuthorizationLink,
    OptInRecord,
)
from exchange.tasks import exchange_request_advance
from hub.models import FhirEndpoint, IdentityProvider, Payer, Role, User
from tests.api.conftest import opt_in_body
from tests.api.payer_systems import PayerSystems
from tests.conftest import Tenant
from tests.sandbox.harness import FORMER, RunningSandbox, running_sandbox
from tests.support.exchange_setup import SOUTH_SANDBOX_ARGS, sandbox_member
from tests.support.sandbox_sign_in import sandbox_sign_in

S = ExchangeStatus
EMAIL = "patricia.person@mail.example"


@pytest.fixture(scope="module")
def south_holder() -> Iterator[RunningSandbox]:
    with running_sandbox(FORMER, *SOUTH_SANDBOX_ARGS, "--members", "5") as sandbox:
        yield sandbox


@pytest.fixture
def member_signs_in_at_south(
    north: Tenant, south: Tenant, west: Payer, new_payer_idp: RunningSandbox, south_holder: Any
) -> dict[str, Any]:
    """South offers only member-authorized access; North signs its members in at its sandbox.
    Return Patricia as North's identity provider knows her."""
    FhirEndpoint.objects.create(
        payer=south.payer,
        base_url=south_holder.fhir,
        offers_backend_services=False,
        offers_member_authorization=True,
    )
    IdentityProvider.objects.create(
        payer=north.payer,
        issuer=f"{new_payer_idp.base}/oidc",
        client_id="hub",
        client_secret="hub-demo-secret",
        scopes="openid profile",
    )
    return sandbox_member(new_payer_idp, "patricia.person")


def _patricias_opt_in(patricia: dict[str, Any], **member: Any) -> dict[str, Any]:
    """North's opt-in of Patricia, by the member id North's identity provider knows her by."""
    body = opt_in_body()
    body["member"] |= {"member_id": patricia["member_id"], **member}
    return body


def _counts(payer: Payer) -> tuple[int, ...]:
    return (
        OptInRecord.objects.for_payer(payer).count(),
        ExchangeRequest.objects.for_payer(payer).count(),
        Consent.objects.for_payer(payer).count(),
        MemberAuthorizationLink.objects.for_payer(payer).count(),
        User.objects.filter(payer=payer, role=Role.MEMBER).count(),
    )


def _sign_in_through(client: Client, url: str, username: str) -> str:
    """Open ``url`` signed out, sign in at North's sandbox as ``username``; return where the
    hub sends the person at the end."""
    path = urlsplit(url).path
    to_sign_in = client.get(path)
    assert to_sign_in.status_code == 302
    assert to_sign_in["Location"].startswith("/p/north/sign-in/?next=")
    start = client.get(to_sign_in["Location"])
    callback = urlsplit(sandbox_sign_in(start["Location"], username))
    finish = client.get(callback.path, dict(parse_qs(callback.query)))
    assert finish.status_code == 302, finish.content
    return str(finish["Location"])


def test_the_member_is_emailed_a_link_that_leads_to_the_authorization_at_the_former_payer(
    north: Tenant,
    south: Tenant,
    west: Payer,
    systems: PayerSystems,
    member_signs_in_at_south: dict[str, Any],
    south_holder: RunningSandbox,
    django_capture_on_commit_callbacks: Any,
) -> None:
    patricia = member_signs_in_at_south
    client = systems.client(north.payer)
    with django_capture_on_commit_callbacks() as enqueued:
        response = client.post("/api/v1/opt-ins", _patricias_opt_in(patricia, email=EMAIL))

    assert response.status_code == 201, response.json()
    requests = {r["former_payer"]["slug"]: r for r in response.json()["requests"]}
    # South waits for the member; West is asked payer-to-payer, as before.
    assert (requests["south"]["status"], requests["west"]["status"]) == (
        "awaiting_authorization",
        "consented",
    )
    south_request = ExchangeRequest.objects.for_payer(north.payer).get(pk=requests["south"]["id"])
    assert south_request.authorization_mode == AuthorizationMode.MEMBER_AUTHORIZED
    assert list(south_request.events.values_list("status", "message")) == [
        (S.CONSENTED, south_request.events.first().message),
        (S.AWAITING_AUTHORIZATION, "Waiting for you to sign in at Southern Cross Health and "
         "allow the transfer."),
    ]  # fmt: skip
    link = MemberAuthorizationLink.objects.for_payer(north.payer).get()
    assert (link.exchange_request, link.email, link.sent_at) == (south_request, EMAIL, None)
    # Once the opt-in commits: West's request to a worker, the link's mail to another; no
    # worker is asked to advance South's, which waits for the member.
    handed_over = sorted((c.func.__self__.name, c.args) for c in enqueued)
    assert handed_over == sorted(
        [
            (exchange_request_advance.name, (requests["west"]["id"], north.payer.pk)),
            (member_authorization_link_send.name, (link.pk, north.payer.pk)),
        ]
    )
    detail = client.get(f"/api/v1/requests/{south_request.pk}").json()
    assert detail["status"] == "awaiting_authorization"
    assert detail["authorization_link"] == {
        "status": "pending",
        "sent_at": None,
        "attempts": 0,
        "problem": "",
    }
    assert (
        client.get(f"/api/v1/requests/{requests['west']['id']}").json()["authorization_link"]
        is None
    )

    # What the worker does with it (exchange/member_links/tasks.py), here in-process.
    member_authorization_link_send(link.pk, north.payer.pk)

    [message] = mail.outbox
    url = f"{settings.HUB_PUBLIC_URL}/p/north/me/requests/{south_request.pk}/"
    assert message.to == [EMAIL]
    assert message.subject == (
        "North Star Health: allow Southern Cross Health to send us your health records"
    )
    assert f"Open this link: {url}\n" in message.body
    assert 'Choose "Sign in at Southern Cross Health"' in message.body
    assert patricia["member_id"] not in message.body  # no identifier by mail
    sent = client.get(f"/api/v1/requests/{south_request.pk}").json()["authorization_link"]
    assert (sent["status"], sent["attempts"]) == ("sent", 1)
    link.refresh_from_db()
    assert sent["sent_at"] and link.sent_at is not None
    # A task delivered twice mails once.
    member_authorization_link_send(link.pk, north.payer.pk)
    assert len(mail.outbox) == 1

    # Patricia follows the link, signs in at North, and lands on the request.
    browser = Client()
    assert _sign_in_through(browser, url, "patricia.person") == urlsplit(url).path
    opted_in = OptInRecord.objects.for_payer(north.payer).get().member
    opted_in.refresh_from_db()
    assert opted_in.oidc_subject  # the member the opt-in made is hers now, not a second one
    assert User.objects.filter(payer=north.payer, plan_member_id=patricia["member_id"]).count() == 1
    page = browser.get(urlsplit(url).path)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="authorize"' in html and "Sign in at Southern Cross Health" in html

    # Its button starts the existing flow: the sign-in at South's own server.
    launch = browser.post(f"/p/north/me/requests/{south_request.pk}/authorize/")
    assert launch.status_code == 302
    assert launch["Location"].startswith(south_holder.base)
    assert parse_qs(urlsplit(launch["Location"]).query)["code_challenge_method"] == ["S256"]


def test_without_an_email_such_an_opt_in_is_refused_naming_member_email_and_nothing_is_made(
    north: Tenant, systems: PayerSystems, member_signs_in_at_south: dict[str, Any]
) -> None:
    before = _counts(north.payer)
    for member in ({}, {"email": ""}):
        response = systems.client(north.payer).post(
            "/api/v1/opt-ins", _patricias_opt_in(member_signs_in_at_south, **member)
        )
        assert response.status_code == 422, response.json()
        assert response["Content-Type"] == "application/problem+json"
        errors = {e["field"]: e["message"] for e in response.json()["errors"]}
        assert list(errors) == ["member.email"]
        assert errors["member.email"].startswith(
            "Southern Cross Health shares records only once the member signs in there"
        )
        assert "email address" in errors["member.email"]
    not_an_address = systems.client(north.payer).post(
        "/api/v1/opt-ins", _patricias_opt_in(member_signs_in_at_south, email="patricia@")
    )
    assert not_an_address.status_code == 422
    assert [e["field"] for e in not_an_address.json()["errors"]] == ["member.email"]
    assert _counts(north.payer) == before
    assert not mail.outbox


def test_a_payer_to_payer_opt_in_needs_no_email_and_owes_no_link(
    north: Tenant, south_holds_records: Payer, west: Payer, systems: PayerSystems
) -> None:
    response = systems.client(north.payer).post("/api/v1/opt-ins", opt_in_body())
    assert response.status_code == 201, response.json()
    assert {r["status"] for r in response.json()["requests"]} == {"consented"}
    assert not MemberAuthorizationLink.objects.for_payer(north.payer).exists()


def test_another_payer_and_another_member_get_404_for_the_request_and_its_link(
    north: Tenant,
    south: Tenant,
    systems: PayerSystems,
    member_signs_in_at_south: dict[str, Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks():
        created = systems.client(north.payer).post(
            "/api/v1/opt-ins", _patricias_opt_in(member_signs_in_at_south, email=EMAIL)
        )
    request_id = next(
        r["id"] for r in created.json()["requests"] if r["status"] == "awaiting_authorization"
    )
    link = MemberAuthorizationLink.objects.for_payer(north.payer).get()
    before = _counts(north.payer)

    # South's system: the request is not theirs.
    answer = systems.client(south.payer).get(f"/api/v1/requests/{request_id}")
    assert answer.status_code == 404
    assert EMAIL not in answer.content.decode()
    # Someone else signed in follows the link: North's other member, South's member.
    page = f"/p/north/me/requests/{request_id}/"
    for someone in (north.member, south.member):
        browser = Client()
        browser.force_login(someone)
        assert browser.get(page).status_code == 404
        assert browser.post(f"{page}authorize/").status_code == 404
    # South's member at their own plan's address finds nothing of North's either.
    browser = Client()
    browser.force_login(south.member)
    assert browser.get(f"/p/south/me/requests/{request_id}/").status_code == 404

    # The link's sending is scoped to North too: as South's, it sends nothing.
    member_authorization_link_send(link.pk, south.payer.pk)
    assert not mail.outbox
    assert _counts(north.payer) == before
