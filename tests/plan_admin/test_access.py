"""Only a plan administrator of the payer in the URL reaches the portal (STYLE.md #9).

Every page and action answers 404 to the other payer's administrator and to members
(theirs or ours), and sends someone signed out to sign in; nothing is changed by a
refused request.
"""

import pytest
from django.test import Client
from django.urls import reverse

from exchange.models import ExchangeStatus
from hub.models import AuditEvent, OnboardingRequest
from tests.conftest import Tenant
from tests.factories import ExchangeRequestFactory, UserFactory
from tests.support.every_payer import rows_of_every_payer

PAGES = ["settings", "directory", "request-list", "request-export", "compliance", "as-former-payer"]
ACTIONS = [
    ("settings-save", {"part": "identity-provider"}),
    ("settings-save", {"part": "client-jwks"}),
    ("settings-test", {"part": "identity-provider"}),
    ("sftp-host-key", {}),
    ("signing-key-rotate", {}),
    ("onboarding-create", {}),
]
REQUEST_ACTIONS = ["retry", "cancel"]


def _client(user: object) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def failed_request(north: Tenant, south: Tenant) -> object:
    member = UserFactory(payer=north.payer)
    return ExchangeRequestFactory(
        consent__member=member, consent__former_payer=south.payer, status=ExchangeStatus.FAILED
    )


@pytest.mark.parametrize("name", PAGES)
def test_pages_answer_only_the_payers_own_admin(name: str, north: Tenant, south: Tenant) -> None:
    url = reverse(f"plan_admin:{name}", kwargs={"payer_slug": "north"})
    assert _client(north.admin).get(url).status_code == 200
    assert _client(south.admin).get(url).status_code == 404
    assert _client(north.member).get(url).status_code == 404
    assert _client(south.member).get(url).status_code == 404
    signed_out = Client().get(url)
    assert signed_out.status_code == 302
    assert f"next={url}" in signed_out["Location"]


def test_an_unknown_payer_slug_is_a_404_even_for_an_admin(north: Tenant) -> None:
    url = reverse("plan_admin:settings", kwargs={"payer_slug": "nowhere"})
    assert _client(north.admin).get(url).status_code == 404


@pytest.mark.parametrize(("name", "kwargs"), ACTIONS)
def test_actions_refuse_other_payers_and_members_and_change_nothing(
    name: str, kwargs: dict[str, str], north: Tenant, south: Tenant
) -> None:
    url = reverse(f"plan_admin:{name}", kwargs={"payer_slug": "north", **kwargs})
    data = {"issuer": "https://login.example-payer.com", "client_id": "hub", "algorithm": "RS384",
            "client_jwks_url": "https://keys.example-payer.com/jwks.json",
            "organization_name": "Sneaky Health", "host": "sftp.example.com", "port": "22"}  # fmt: skip
    for outsider in (south.admin, north.member, south.member):
        assert _client(outsider).post(url, data).status_code == 404
    assert not rows_of_every_payer(AuditEvent).exists()
    assert not rows_of_every_payer(OnboardingRequest).exists()
    north.payer.refresh_from_db()
    assert north.payer.client_jwks_url == ""


@pytest.mark.parametrize("action", REQUEST_ACTIONS)
def test_request_pages_and_actions_are_404_for_another_payer(
    action: str, north: Tenant, south: Tenant, failed_request: object
) -> None:
    detail = reverse(
        "plan_admin:request-detail", kwargs={"payer_slug": "north", "request_id": failed_request.pk}
    )
    action_url = reverse(
        "plan_admin:request-action",
        kwargs={"payer_slug": "north", "request_id": failed_request.pk, "action": action},
    )
    assert _client(north.admin).get(detail).status_code == 200
    for outsider in (south.admin, north.member):
        assert _client(outsider).get(detail).status_code == 404
        assert _client(outsider).post(action_url).status_code == 404
    # South's admin using South's own URL cannot reach North's request either.
    theirs = reverse(
        "plan_admin:request-action",
        kwargs={"payer_slug": "south", "request_id": failed_request.pk, "action": action},
    )
    assert _client(south.admin).post(theirs).status_code == 404
    assert (
        _client(south.admin)
        .get(reverse("plan_admin:request-detail",
                     kwargs={"payer_slug": "south", "request_id": failed_request.pk}))
        .status_code
        == 404
    )  # fmt: skip
    failed_request.refresh_from_db()
    assert failed_request.status == ExchangeStatus.FAILED
    assert not rows_of_every_payer(AuditEvent).exists()
