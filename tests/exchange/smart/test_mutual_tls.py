"""A former payer that requires a client certificate (seed 002: mTLS, then RFC 7591 registration
over it, then ``$member-match`` over it) — a sandbox started with TLS and client-certificate
verification — is reached only with the requesting payer's certificate.

With North's certificate the plan administrator's *Test*, the RFC 7591 registration, the
token, ``$member-match`` and *Register again* all go through; without one, or with one from
a CA the holder does not trust, each call fails with a sentence the administrator can act on,
kept as the registration's last error.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exchange.connectivity import fhir_endpoint_check
from exchange.fhir.errors import FhirPermanentError
from exchange.member_match import member_match_run
from exchange.models import ExchangeStatus, HolderRegistration, RegistrationMethod
from exchange.smart.backend_services import backend_access_token
from exchange.smart.registration_settings import holder_registration_register_again
from hub.client_certificates import client_certificate_upload
from hub.models import Payer
from tests.conftest import Tenant
from tests.exchange.holders import endpoint_of, former_payer_of, member_request, ordinary_member
from tests.sandbox.harness import FORMER, NEW, SEED, RunningSandbox, running_sandbox
from tests.support.pki import CertificateAuthority, Issued, client_context, mutual_tls_files

REQUIRED = (
    "requires a client certificate (mutual TLS); upload your payer's certificate on the "
    "integration page."
)


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pki")


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("Former Health Plan partner CA")


@pytest.fixture(scope="module")
def mtls_holder(ca: CertificateAuthority, pki_dir: Path) -> Iterator[RunningSandbox]:
    """The former payer, serving HTTPS and requiring a client certificate its CA signed."""
    files = mutual_tls_files(ca, pki_dir)
    with running_sandbox(
        FORMER, "--seed", SEED, "--members", "10", "--peer", NEW, *files.sandbox_args(),
        verify=client_context(ca.issue("the test itself"), pki_dir),
    ) as sandbox:  # fmt: skip
        yield sandbox


@pytest.fixture
def former(hub: Tenant, settings: Any, mtls_holder: RunningSandbox, pki_dir: Path) -> Payer:
    """The holder as a hub payer; the hub trusts its server certificate's CA."""
    settings.OUTBOUND_CA_FILE = str(pki_dir / "ca.pem")
    return former_payer_of(mtls_holder)


def certificate_of(tenant: Tenant, issued: Issued) -> None:
    client_certificate_upload(
        payer=tenant.payer,
        certificate_pem=issued.cert_pem,
        private_key_pem=issued.key_pem,
        actor=tenant.admin,
    )


def test_with_the_payers_certificate_test_registration_and_member_match_go_through(
    hub: Tenant, former: Payer, mtls_holder: RunningSandbox, ca: CertificateAuthority
) -> None:
    certificate_of(hub, ca.issue(hub.payer.name))

    report = fhir_endpoint_check(endpoint=endpoint_of(former), requesting_payer=hub.payer)
    assert report.ok, report.as_dict()
    registration = HolderRegistration.objects.for_payer(hub.payer).get(former_payer=former)
    assert registration.method == RegistrationMethod.DYNAMIC  # RFC 7591 over the mTLS connection

    member = ordinary_member(mtls_holder)
    outcome = member_match_run(
        exchange_request=member_request(tenant=hub, former_payer=former, member=member)
    )
    assert outcome.status == ExchangeStatus.MATCHED
    assert outcome.patient_id == member["patient_id"]

    again = holder_registration_register_again(
        payer=hub.payer, former_payer=former, actor=hub.admin
    )
    assert again.last_error == ""
    assert again.backend_client_id and again.backend_client_id != registration.backend_client_id


def test_without_a_certificate_every_call_is_refused_with_the_sentence(
    hub: Tenant, former: Payer, mtls_holder: RunningSandbox
) -> None:
    report = fhir_endpoint_check(endpoint=endpoint_of(former), requesting_payer=hub.payer)
    assert not report.ok
    assert report.steps[0].detail == f"{former.name} {REQUIRED}"

    with pytest.raises(FhirPermanentError) as refused:
        backend_access_token(payer=hub.payer, former_payer=former)
    assert refused.value.code == "client_certificate_required"
    registration = HolderRegistration.objects.for_payer(hub.payer).get(former_payer=former)
    assert registration.last_error == f"{former.name} {REQUIRED}"

    again = holder_registration_register_again(
        payer=hub.payer, former_payer=former, actor=hub.admin
    )
    assert again.last_error == f"{former.name} {REQUIRED}"


def test_a_certificate_from_a_ca_the_holder_does_not_trust_is_refused_with_a_sentence(
    hub: Tenant, former: Payer, mtls_holder: RunningSandbox
) -> None:
    stranger = CertificateAuthority.create("Some other CA")
    certificate_of(hub, stranger.issue(hub.payer.name))
    member = ordinary_member(mtls_holder)

    with pytest.raises(FhirPermanentError) as refused:
        member_match_run(
            exchange_request=member_request(tenant=hub, former_payer=former, member=member)
        )
    assert refused.value.code == "client_certificate_refused"
    assert refused.value.message.startswith(
        f"{former.name} refused your payer's client certificate (mutual TLS"
    )
    assert "upload a certificate issued by one of them on the integration page" in (
        refused.value.message
    )
