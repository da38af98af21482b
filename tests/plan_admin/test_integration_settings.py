"""Integration settings pages: saving (audited, before/after), refusing bad input, *Test*, keys."""

from collections.abc import Callable, Iterator

import pytest
from django.conf import settings
from django.test import Client

from hub.models import (
    AuditEvent,
    DeliveryMode,
    FhirEndpoint,
    IdentityProvider,
    SftpDestination,
    SigningKey,
    SigningKeyStatus,
    User,
)
from hub.signing_keys import payer_jwks, signing_keys_ensure
from tests.conftest import Tenant
from tests.factories import IdentityProviderFactory, SftpDestinationFactory
from tests.plan_admin.conftest import admin_url
from tests.sandbox.harness import RunningSandbox, running_sandbox
from tests.support.every_payer import rows_of_every_payer
from tests.support.http_stub import http_stub
from tests.support.net import free_loopback_port

BROKEN_PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n-----END OPENSSH PRIVATE KEY-----"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
IDP = {"issuer": "https://login.north.example", "client_id": "hub", "client_secret": "s3cret-value",
       "scopes": "openid profile", "claim_member_id": "member_id", "claim_given_name": "given_name",
       "claim_family_name": "family_name", "claim_birth_date": "birthdate", "claim_gender": "gender",
       "claim_role": "hub_role", "token_endpoint_auth_method": "automatic",
       "role_claim_format": "text", "role_admin_value": "plan_admin",
       "role_member_value": "member"}  # fmt: skip
FHIR = {"base_url": "https://fhir.north.example/r4", "offers_backend_services": "on",
        "scopes": "system/*.rs", "backend_client_id": "hub-north"}  # fmt: skip
SFTP = {"host": "sftp.north.example", "port": "22", "username": "hub", "password": "pw-123",
        "host_key": HOST_KEY, "remote_directory": "incoming"}  # fmt: skip


@pytest.fixture(scope="module")
def idp() -> Iterator[RunningSandbox]:
    with running_sandbox("Identity Plan", "--members", "4") as sandbox:
        yield sandbox


def _audits(action: str) -> list[AuditEvent]:
    return list(rows_of_every_payer(AuditEvent).filter(action=action).order_by("id"))


def test_the_page_shows_the_values_to_register_and_the_published_keys(
    north: Tenant, signed_in: Callable[[User], Client]
) -> None:
    keys = signing_keys_ensure(payer=north.payer)
    page = signed_in(north.admin).get(admin_url("settings")).content.decode()
    base = settings.HUB_PUBLIC_URL
    assert f"{base}/oidc/callback/" in page
    assert f"{base}/p/north/me/signed-out/" in page  # RP-Initiated Logout's return address
    assert f"{base}/p/north/me/launch/callback/" in page
    assert f"{base}/p/north/.well-known/jwks.json" in page
    for key in keys:
        assert key.kid in page
    assert 'id="hub-repository"' in page


def test_saving_the_identity_provider_is_audited_without_the_secret(
    north: Tenant, signed_in: Callable[[User], Client]
) -> None:
    client = signed_in(north.admin)
    response = client.post(admin_url("settings-save", part="identity-provider"), IDP)
    assert response.status_code == 302
    assert response["Location"].endswith("#identity-provider")
    idp = IdentityProvider.objects.for_payer(north.payer).get()
    assert (idp.issuer, idp.client_secret) == ("https://login.north.example", "s3cret-value")
    (created,) = _audits("identityprovider.create")
    assert created.actor == north.admin and created.payer == north.payer
    assert created.changes["fields"]["issuer"] == {
        "before": None,
        "after": "https://login.north.example",
    }
    assert created.changes["secrets_replaced"] == ["client_secret"]
    assert "s3cret-value" not in str(created.changes)

    # Change one field, leave the secret empty (kept): only that field is in the audit.
    client.post(admin_url("settings-save", part="identity-provider"),
                {**IDP, "client_id": "hub-2", "client_secret": ""})  # fmt: skip
    idp.refresh_from_db()
    assert (idp.client_id, idp.client_secret) == ("hub-2", "s3cret-value")
    (updated,) = _audits("identityprovider.update")
    assert updated.changes == {
        "fields": {"client_id": {"before": "hub", "after": "hub-2"}},
        "secrets_replaced": [],
    }
    page = client.get(admin_url("settings")).content.decode()
    assert "s3cret-value" not in page
    assert "Set — leave empty to keep it" in page


def test_fhir_endpoint_and_sftp_destination_save_through_their_services(
    north: Tenant, signed_in: Callable[[User], Client]
) -> None:
    client = signed_in(north.admin)
    assert client.post(admin_url("settings-save", part="fhir-endpoint"), FHIR).status_code == 302
    assert client.post(admin_url("settings-save", part="sftp-destination"), SFTP).status_code == 302
    assert FhirEndpoint.objects.for_payer(north.payer).get().backend_client_id == "hub-north"
    destination = SftpDestination.objects.for_payer(north.payer).get()
    assert (destination.host, destination.password) == ("sftp.north.example", "pw-123")
    (audit,) = _audits("sftpdestination.create")
    assert audit.changes["fields"]["port"] == {"before": None, "after": 22}
    assert set(audit.changes["secrets_replaced"]) == {"password"}


@pytest.mark.parametrize(
    ("part", "data", "field", "message"),
    [
        ("identity-provider", {**IDP, "issuer": "http://login.north.example"}, "issuer", "must start with https://"),
        ("identity-provider", {**IDP, "issuer": "https://10.1.2.3/oidc"}, "issuer", "10.1.2.3 is a private"),
        ("fhir-endpoint", {**FHIR, "base_url": "https://169.254.169.254/latest"}, "base_url", "private or reserved"),
        ("fhir-endpoint", {**FHIR, "token_url": "https://[::1]/token"}, "token_url", "::1 is a private or reserved"),
        ("fhir-endpoint", {**FHIR, "base_url": "not a url"}, "base_url", "Enter a full URL"),
        ("client-jwks", {"client_jwks_url": "http://keys.north.example/jwks"}, "client_jwks_url", "must start with https://"),
        ("client-jwks", {"client_jwks_url": "https://192.168.0.10/jwks"}, "client_jwks_url", "private or reserved"),
        ("sftp-destination", {**SFTP, "host_key": "ssh-ed25519 nope!!"}, "host_key", "Not a usable SSH public key"),
        ("sftp-destination", {**SFTP, "private_key": BROKEN_PRIVATE_KEY}, "private_key", "Not a usable SSH private"),
        ("sftp-destination", {**SFTP, "port": "70000"}, "port", "less than or equal to 65535"),
        ("sftp-destination", {**SFTP, "port": "0"}, "port", "greater than or equal to 1"),
        ("sftp-destination", {**SFTP, "host": "10.0.0.7"}, "host", "10.0.0.7 is a private or reserved"),
        ("delivery-mode", {"delivery_mode": "carrier_pigeon"}, "delivery_mode", "Select a valid choice"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_with_a_message_and_changes_nothing(
    part: str, data: dict[str, str], field: str, message: str,
    north: Tenant, signed_in: Callable[[User], Client],
) -> None:  # fmt: skip
    before = IdentityProviderFactory(payer=north.payer, issuer="https://login.before.example")
    response = signed_in(north.admin).post(admin_url("settings-save", part=part), data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not rows_of_every_payer(AuditEvent).exists()
    before.refresh_from_db()
    assert before.issuer == "https://login.before.example"
    assert not rows_of_every_payer(FhirEndpoint).exists()
    assert not rows_of_every_payer(SftpDestination).exists()
    north.payer.refresh_from_db()
    assert (north.payer.client_jwks_url, north.payer.delivery_mode) == (
        "",
        DeliveryMode.HUB_REPOSITORY,
    )


def test_an_unknown_settings_section_is_a_404(
    north: Tenant, signed_in: Callable[[User], Client]
) -> None:
    client = signed_in(north.admin)
    assert client.post(admin_url("settings-save", part="slug")).status_code == 404
    assert client.post(admin_url("settings-test", part="slug")).status_code == 404


def test_pushing_deliveries_needs_an_sftp_destination_first(
    north: Tenant, signed_in: Callable[[User], Client]
) -> None:
    client = signed_in(north.admin)
    refused = client.post(
        admin_url("settings-save", part="delivery-mode"), {"delivery_mode": "push_sftp"}
    )
    assert refused.status_code == 400
    assert "Save your SFTP destination first" in refused.content.decode()
    north.payer.refresh_from_db()
    assert north.payer.delivery_mode == DeliveryMode.HUB_REPOSITORY

    SftpDestinationFactory(payer=north.payer)
    assert client.post(admin_url("settings-save", part="delivery-mode"),
                       {"delivery_mode": "push_sftp"}).status_code == 302  # fmt: skip
    north.payer.refresh_from_db()
    assert north.payer.delivery_mode == DeliveryMode.PUSH_SFTP
    (audit,) = _audits("payer.settings_update")
    assert audit.changes["fields"] == {
        "delivery_mode": {"before": "hub_repository", "after": "push_sftp"}
    }


def test_rotating_a_key_keeps_the_previous_one_published(
    north: Tenant, signed_in: Callable[[User], Client]
) -> None:
    old_rsa, _ = signing_keys_ensure(payer=north.payer)
    client = signed_in(north.admin)
    response = client.post(admin_url("signing-key-rotate"), {"algorithm": "RS384"})
    assert response.status_code == 302
    old_rsa.refresh_from_db()
    assert old_rsa.status == SigningKeyStatus.PREVIOUS
    new = SigningKey.objects.for_payer(north.payer).get(algorithm="RS384", status="active")
    page = client.get(admin_url("settings")).content.decode()
    assert new.kid in page and old_rsa.kid in page
    assert _audits("signing_key.rotate")[0].actor == north.admin

    bad = client.post(admin_url("signing-key-rotate"), {"algorithm": "HS256"}, follow=True)
    assert "Choose RS384 or ES384" in bad.content.decode()
    assert SigningKey.objects.for_payer(north.payer).count() == 3


def test_the_identity_provider_test_button_reports_success_and_failure(
    north: Tenant, signed_in: Callable[[User], Client], idp: RunningSandbox
) -> None:
    client = signed_in(north.admin)
    not_yet = client.post(admin_url("settings-test", part="identity-provider")).content.decode()
    assert "Save the identity provider first" in not_yet

    IdentityProviderFactory(payer=north.payer, issuer=f"{idp.base}/oidc")
    page = client.post(admin_url("settings-test", part="identity-provider")).content.decode()
    assert "Test passed" in page and "The issuer in the discovery document matches" in page

    IdentityProvider.objects.for_payer(north.payer).update(
        issuer=f"http://127.0.0.1:{free_loopback_port()}/oidc"
    )
    page = client.post(admin_url("settings-test", part="identity-provider")).content.decode()
    assert "Test failed" in page and "Could not reach" in page


def test_the_client_keys_test_button_reads_the_saved_url(
    north: Tenant, signed_in: Callable[[User], Client]
) -> None:
    signing_keys_ensure(payer=north.payer)
    client = signed_in(north.admin)
    with http_stub({"/jwks.json": payer_jwks(payer=north.payer)}) as stub:
        saved = client.post(
            admin_url("settings-save", part="client-jwks"),
            {"client_jwks_url": f"{stub.base}/jwks.json"},
        )
        assert saved.status_code == 302
        page = client.post(admin_url("settings-test", part="client-jwks")).content.decode()
    assert "Test passed" in page and "2 key(s) can sign client assertions" in page


def test_the_hub_repository_section_links_to_its_key_management(
    north: Tenant, signed_in: Callable[[User], Client]
) -> None:
    page = signed_in(north.admin).get(admin_url("settings")).content.decode()
    assert 'href="/p/north/admin/repository/"' in page
