"""Registrations at holders in the operator console: requester, holder, choice, state, last
error and when, never a secret; every look audited; *Register again* calls the service the
administrator's button calls, audited with the operator; nobody of a payer gets in."""

from django.test import Client
from django.utils import timezone

from exchange.models import HolderRegistration, RegistrationChoice, RegistrationMethod
from hub.client_certificates import client_certificate_upload
from hub.models import AuditEvent, User
from tests.conftest import Tenant
from tests.factories import FhirEndpointFactory, HolderRegistrationFactory
from tests.support.http_stub import http_stub
from tests.support.pki import CertificateAuthority
from tests.support.sessions import signed_in

REGISTRATIONS = "/operator/exchange/holderregistration/"


def test_registrations_show_state_and_last_error_never_secrets_and_looks_are_audited(
    console: Client, olga: User, north: Tenant, south: Tenant
) -> None:
    registration = HolderRegistrationFactory(
        payer=north.payer,
        former_payer=south.payer,
        member_client_secret="member-secret-value",
        backend_access_token="access-token-value",
        last_error="South Health requires a client certificate (mutual TLS); upload your "
        "payer's certificate on the integration page.",
        last_error_at=timezone.now(),
    )
    issued = CertificateAuthority.create("Partner CA").issue(north.payer.name)
    client_certificate_upload(
        payer=north.payer,
        certificate_pem=issued.cert_pem,
        private_key_pem=issued.key_pem,
        actor=north.admin,
    )

    listing = console.get(REGISTRATIONS).content.decode()
    detail = console.get(f"{REGISTRATIONS}{registration.pk}/change/").content.decode()
    for page in (listing, detail):
        assert north.payer.name in page and south.payer.name in page
        assert "Failing" in page
        assert "requires a client certificate (mutual TLS)" in page
        assert "Valid until" in page
        assert "member-secret-value" not in page and "access-token-value" not in page
    for payer in (north.payer, south.payer):
        looks = AuditEvent.objects.for_payer(payer).filter(action="operator.look", actor=olga)
        assert looks.count() == 2  # the list and the detail
    assert console.post(f"{REGISTRATIONS}{registration.pk}/change/", {}).status_code == 403


def test_register_again_runs_the_service_and_shows_the_outcome(
    console: Client, olga: User, north: Tenant, south: Tenant
) -> None:
    with http_stub() as holder:  # publishes no SMART configuration: the attempt fails
        FhirEndpointFactory(payer=south.payer, base_url=f"{holder.base}/fhir")
        registration = HolderRegistrationFactory(
            payer=north.payer,
            former_payer=south.payer,
            choice=RegistrationChoice.AUTOMATIC,
            method=RegistrationMethod.CONFIGURED,
        )
        response = console.post(
            REGISTRATIONS,
            {"action": "register_again", "_selected_action": [registration.pk]},
            follow=True,
        )
    page = response.content.decode()
    assert f"Registering {north.payer.name} again at {south.payer.name} failed" in page
    assert "publishes no SMART configuration" in page
    registration = HolderRegistration.objects.for_payer(north.payer).get(pk=registration.pk)
    assert "publishes no SMART configuration" in registration.last_error
    assert (
        AuditEvent.objects.for_payer(north.payer)
        .filter(action="holder_registration.register_again", actor=olga)
        .exists()
    )


def test_a_plan_administrator_and_a_member_get_no_access(north: Tenant) -> None:
    HolderRegistrationFactory(payer=north.payer)
    for person in (north.admin, north.member):
        response = signed_in(person).get(REGISTRATIONS)
        assert response.status_code == 302 and "/operator/login/" in response["Location"]
