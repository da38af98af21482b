"""The integration page's *Client certificate (mutual TLS)* card: upload (checked, each
refusal a sentence), replace and remove (audited), the key kept encrypted and never shown,
and another payer's certificate a 404; and any two files posted (hypothesis, issue 15 item 4)."""

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from hypothesis import event, given
from hypothesis import strategies as st

from hub.client_certificates import PEM_MAX_BYTES, client_certificate_upload
from hub.models import AuditEvent, ClientCertificate, User
from tests.conftest import Tenant
from tests.plan_admin.conftest import admin_url
from tests.support.every_payer import rows_of_every_payer
from tests.support.fuzz import fuzz_requests, hostile_text
from tests.support.pki import CertificateAuthority, Issued, cert_pem, key_pem

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("Payers CA")


@pytest.fixture(scope="module")
def issued(ca: CertificateAuthority) -> Issued:
    return ca.issue("North Star Health")


@pytest.fixture(scope="module")
def other(ca: CertificateAuthority) -> Issued:
    return ca.issue("Someone else")


def upload(client: Client, certificate: bytes, key: bytes, slug: str = "north") -> str:
    response = client.post(
        admin_url("client-certificate-upload", slug),
        {
            "certificate": SimpleUploadedFile("north.pem", certificate),
            "private_key": SimpleUploadedFile("north.key", key),
        },
        follow=True,
    )
    return response.content.decode()


def body_of(response: Any) -> str:
    return str(response.content.decode())


def test_an_uploaded_certificate_is_shown_without_its_key_and_kept_encrypted(
    north: Tenant, signed_in: Callable[[User], Client], issued: Issued
) -> None:
    client = signed_in(north.admin)
    page = upload(client, issued.cert_pem, issued.key_pem)

    certificate = ClientCertificate.objects.for_payer(north.payer).get()
    assert certificate.subject in page
    assert certificate.issuer in page
    assert certificate.fingerprint_display in page
    assert certificate.key_type == "EC secp256r1"
    key_body = issued.key_pem.decode().splitlines()[1]
    assert key_body not in page
    assert key_body not in body_of(client.get(admin_url("settings")))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT private_key_pem FROM hub_clientcertificate WHERE id = %s", [certificate.pk]
        )
        (stored,) = cursor.fetchone()
    assert "PRIVATE KEY" not in stored
    assert certificate.private_key_pem.startswith("-----BEGIN PRIVATE KEY-----")
    event = AuditEvent.objects.for_payer(north.payer).get(action="client_certificate.upload")
    assert event.actor == north.admin
    assert event.changes["after"]["fingerprint_sha256"] == certificate.fingerprint_sha256
    assert key_body not in str(event.changes)


def test_a_new_upload_replaces_the_certificate_and_removal_is_audited(
    north: Tenant, signed_in: Callable[[User], Client], ca: CertificateAuthority, issued: Issued
) -> None:
    client = signed_in(north.admin)
    upload(client, issued.cert_pem, issued.key_pem)
    renewed = ca.issue("North Star Health", key=ec.generate_private_key(ec.SECP384R1()))
    upload(client, renewed.cert_pem + ca.cert_pem, renewed.key_pem)

    certificate = ClientCertificate.objects.for_payer(north.payer).get()
    assert certificate.key_type == "EC secp384r1"
    assert certificate.certificate_chain_pem.count("BEGIN CERTIFICATE") == 2
    replaced = AuditEvent.objects.for_payer(north.payer).get(action="client_certificate.replace")
    assert replaced.changes["before"]["fingerprint_sha256"] != certificate.fingerprint_sha256

    response = client.post(
        admin_url("client-certificate-remove", certificate_id=certificate.pk), follow=True
    )
    assert "Client certificate removed" in body_of(response)
    assert "No client certificate uploaded" in body_of(response)
    assert not ClientCertificate.objects.for_payer(north.payer).exists()
    assert (
        AuditEvent.objects.for_payer(north.payer)
        .filter(action="client_certificate.remove", actor=north.admin)
        .exists()
    )


def _refusal(client: Client, certificate: bytes, key: bytes) -> str:
    response = client.post(
        admin_url("client-certificate-upload"),
        {
            "certificate": SimpleUploadedFile("c.pem", certificate),
            "private_key": SimpleUploadedFile("k.pem", key),
        },
    )
    assert response.status_code == 400
    return body_of(response)


# The OID of the curve P-256 (1.2.840.10045.3.1.7) as DER.
P256 = bytes.fromhex("06082a8648ce3d030107")


def _public_key_spoilt(issued: Issued, spoil: Callable[[bytes], bytes]) -> bytes:
    """Return the certificate with its public key info passed through ``spoil``: it still
    loads, and fails only when its key is read."""
    der = issued.certificate.public_bytes(serialization.Encoding.DER)
    info = issued.key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return cert_pem(x509.load_der_x509_certificate(der.replace(info, spoil(info), 1)))


def test_bad_uploads_are_refused_each_with_a_sentence_and_nothing_is_kept(
    north: Tenant, signed_in: Callable[[User], Client], ca: CertificateAuthority, issued: Issued
) -> None:
    client = signed_in(north.admin)
    now = dt.datetime.now(dt.UTC)
    other = ca.issue("Someone else")
    expired = ca.issue(
        "North Star Health",
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    future = ca.issue("North Star Health", not_before=now + dt.timedelta(days=3))
    dsa_key = dsa.generate_private_key(key_size=2048)
    cases = [
        (issued.cert_pem, other.key_pem, "The private key does not belong to the certificate"),
        (expired.cert_pem, expired.key_pem, "The certificate expired on"),
        (future.cert_pem, future.key_pem, "The certificate is not valid until"),
        (b"garbage", issued.key_pem, "The certificate file holds no PEM certificate"),
        (b"\x30\x82\x01\x0a\xff\xfe", issued.key_pem, "is not PEM text"),
        (
            b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
            issued.key_pem,
            "cannot be read as PEM certificates",
        ),
        # An EC point must start 0x04 (uncompressed, SEC 1 §2.3.3); another curve's name.
        (
            _public_key_spoilt(issued, lambda info: info[:-65] + b"\x05" + info[-64:]),
            issued.key_pem,
            "has a damaged public key",
        ),
        (
            _public_key_spoilt(issued, lambda info: info.replace(P256, P256[:-1] + b"\x09")),
            issued.key_pem,
            "has a public key of a kind the hub does not read",
        ),
        (issued.cert_pem, b"garbage", "holds no PEM private key"),
        (issued.cert_pem, key_pem(dsa_key), "mutual TLS with the hub takes RSA or EC"),
    ]
    for certificate, key, sentence in cases:
        page = _refusal(client, certificate, key)
        assert sentence in page, sentence
        assert issued.key_pem.decode().splitlines()[1] not in page
    assert not ClientCertificate.objects.for_payer(north.payer).exists()
    assert (
        not AuditEvent.objects.for_payer(north.payer)
        .filter(action__startswith="client_certificate.")
        .exists()
    )


def test_another_payers_certificate_is_a_404(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client], issued: Issued
) -> None:
    theirs = client_certificate_upload(
        payer=south.payer,
        certificate_pem=issued.cert_pem,
        private_key_pem=issued.key_pem,
        actor=south.admin,
    )
    nora = signed_in(north.admin)
    response = nora.post(admin_url("client-certificate-remove", certificate_id=theirs.pk))
    assert response.status_code == 404
    assert ClientCertificate.objects.for_payer(south.payer).filter(pk=theirs.pk).exists()
    assert theirs.subject not in body_of(nora.get(admin_url("settings")))
    # South's own pages are not North's administrator's either.
    assert nora.get(admin_url("settings", "south")).status_code == 404
    assert (
        nora.post(admin_url("client-certificate-remove", "south", certificate_id=theirs.pk))
    ).status_code == 404
    assert (
        upload(nora, issued.cert_pem, issued.key_pem, slug="south").find("Client certificate saved")
        == -1
    )
    # A member of North never reaches the card.
    assert signed_in(north.member).get(admin_url("settings")).status_code == 404


def _variants(good: bytes, others: list[bytes]) -> st.SearchStrategy[bytes]:
    """Return ``good`` as is, or spoilt as a careless or hostile upload spoils a PEM file."""
    at = st.integers(min_value=0, max_value=len(good))
    return st.one_of(
        st.just(good),
        # a byte changed, the file cut short, something pasted in
        st.tuples(at, st.integers(0, 255)).map(
            lambda p: good[: p[0]] + bytes([p[1]]) + good[p[0] + 1 :]
        ),
        at.map(lambda cut: good[:cut]),
        st.tuples(at, st.binary(max_size=40) | hostile_text.map(str.encode)).map(
            lambda p: good[: p[0]] + p[1] + good[p[0] :]
        ),
        # the wrong file, two files at once, far too much, anything at all
        st.sampled_from(others),
        st.sampled_from(others).map(lambda other: good + other),
        st.just(good * (PEM_MAX_BYTES // len(good) + 1)),
        st.binary(max_size=300),
    )


@fuzz_requests
@given(data=st.data())
def test_any_upload_is_stored_as_the_certificate_reads_or_refused_leaving_nothing(
    north: Tenant,
    signed_in: Callable[[User], Client],
    ca: CertificateAuthority,
    issued: Issued,
    other: Issued,
    data: st.DataObject,
) -> None:
    """Whatever two files are posted: never a 5xx; a refusal changes no certificate of any
    payer and writes no audit event; an acceptance keeps the first certificate of the file
    posted, with a key that belongs to it."""
    der = issued.certificate.public_bytes(serialization.Encoding.DER)
    others = [issued.key_pem, other.cert_pem, other.key_pem, ca.cert_pem, der]
    certificate = data.draw(_variants(issued.cert_pem, others), label="certificate")
    key = data.draw(_variants(issued.key_pem, others), label="private key")
    before = (
        list(rows_of_every_payer(ClientCertificate).order_by("pk").values()),
        rows_of_every_payer(AuditEvent).count(),
    )

    response = signed_in(north.admin).post(
        admin_url("client-certificate-upload"),
        {
            "certificate": SimpleUploadedFile("c.pem", certificate),
            "private_key": SimpleUploadedFile("k.pem", key),
        },
    )

    assert response.status_code in (302, 400), response.content[:2000]
    event(f"{'stored' if response.status_code == 302 else 'refused'}")
    if response.status_code == 400:
        assert "error" in body_of(response)
        assert (
            list(rows_of_every_payer(ClientCertificate).order_by("pk").values()),
            rows_of_every_payer(AuditEvent).count(),
        ) == before
        return
    stored = ClientCertificate.objects.for_payer(north.payer).get()
    leaf = x509.load_pem_x509_certificates(certificate)[0]
    assert stored.fingerprint_sha256 == leaf.fingerprint(hashes.SHA256()).hex()
    stored_key = serialization.load_pem_private_key(stored.private_key_pem.encode(), None)
    assert stored_key.public_key() == leaf.public_key()
    assert rows_of_every_payer(AuditEvent).count() == before[1] + 1
