"""The outbound client and mutual TLS: a holder requiring a client certificate (a sandbox
started with TLS and client-certificate verification) is reached only with one its CA signed;
a private CA is trusted through OUTBOUND_CA_FILE, in addition to the system's."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from django.core.exceptions import ImproperlyConfigured

from hub import outbound
from hub.env import env_readable_file
from hub.outbound import (
    ClientCertificateRefused,
    ClientTlsIdentity,
    PayerHttpClient,
    TransportFailure,
)
from tests.sandbox.harness import FORMER, RunningSandbox, running_sandbox
from tests.support.pki import CertificateAuthority, Issued, client_context, mutual_tls_files


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pki")


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("Holder test CA")


@pytest.fixture(scope="module")
def mtls_holder(ca: CertificateAuthority, pki_dir: Path) -> Iterator[RunningSandbox]:
    files = mutual_tls_files(ca, pki_dir)
    own_client = client_context(ca.issue("test itself"), pki_dir)
    with running_sandbox(
        FORMER, "--members", "3", *files.sandbox_args(), verify=own_client
    ) as sandbox:
        yield sandbox


@pytest.fixture(autouse=True)
def trusted_ca(settings: Any, mtls_holder: RunningSandbox, pki_dir: Path) -> None:
    """The hub trusts the holder's CA for outbound TLS (OUTBOUND_CA_FILE)."""
    settings.OUTBOUND_CA_FILE = str(pki_dir / "ca.pem")


def identity(issued: Issued) -> ClientTlsIdentity:
    return ClientTlsIdentity(
        fingerprint_sha256=issued.certificate.fingerprint(hashes.SHA256()).hex(),
        certificate_chain_pem=issued.cert_pem.decode(),
        private_key_pem=issued.key_pem.decode(),
    )


def metadata_status(sandbox: RunningSandbox, client_identity: ClientTlsIdentity | None) -> int:
    with PayerHttpClient(client_identity=client_identity) as http:
        return http.get(f"{sandbox.fhir}/metadata").status_code


def test_the_holder_is_reached_with_a_certificate_its_ca_signed(
    mtls_holder: RunningSandbox, ca: CertificateAuthority, pki_dir: Path
) -> None:
    assert metadata_status(mtls_holder, identity(ca.issue("North Health Plan"))) == 200


def test_without_a_certificate_the_holder_refuses_and_the_failure_says_so(
    mtls_holder: RunningSandbox, pki_dir: Path
) -> None:
    with pytest.raises(ClientCertificateRefused) as refused:
        metadata_status(mtls_holder, None)
    assert refused.value.presented is False
    assert refused.value.permanent is True
    assert "requires a client certificate" in str(refused.value)


def test_a_certificate_from_another_ca_is_refused(
    mtls_holder: RunningSandbox, pki_dir: Path
) -> None:
    stranger = CertificateAuthority.create("Some other CA").issue("North Health Plan")
    with pytest.raises(ClientCertificateRefused) as refused:
        metadata_status(mtls_holder, identity(stranger))
    assert refused.value.presented is True
    assert refused.value.alert == "TLSV1_ALERT_UNKNOWN_CA"


def test_a_private_ca_is_trusted_only_through_outbound_ca_file(
    mtls_holder: RunningSandbox, ca: CertificateAuthority, settings: Any
) -> None:
    settings.OUTBOUND_CA_FILE = ""
    with pytest.raises(TransportFailure, match="CERTIFICATE_VERIFY_FAILED"):
        metadata_status(mtls_holder, identity(ca.issue("North Health Plan")))


def test_the_key_is_loaded_without_a_file_and_the_context_is_built_once_per_certificate(
    ca: CertificateAuthority, pki_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_files(*args: object, **kwargs: object) -> None:
        raise AssertionError("the private key must not be written to a file")

    monkeypatch.setattr(outbound.tempfile, "mkstemp", no_files)
    issued = identity(ca.issue("Cached Health Plan"))
    ca_file = str(pki_dir / "ca.pem")
    first = outbound._identity_tls_context(issued, ca_file)
    assert outbound._identity_tls_context(issued, ca_file) is first
    other = identity(ca.issue("Cached Health Plan"))
    assert outbound._identity_tls_context(other, ca_file) is not first


def test_outbound_ca_file_must_be_readable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTBOUND_CA_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(ImproperlyConfigured, match="OUTBOUND_CA_FILE: cannot read"):
        env_readable_file("OUTBOUND_CA_FILE")
    monkeypatch.delenv("OUTBOUND_CA_FILE")
    assert env_readable_file("OUTBOUND_CA_FILE") == ""
