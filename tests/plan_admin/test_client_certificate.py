"""The integration page's *Client certificate (mutual TLS)* card: upload (checked, each
refusal a sentence), replace and remove (audited), the key kept encrypted and never shown,
and another payer's certificate a 404."""

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import dsa, ec
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client

from hub.client_certificates import client_certificate_upload
from hub.models import AuditEvent, ClientCertificate, User
from tests.conftest import Tenant
from tests.plan_admin.conftest import admin_url
from tests.support.pki import CertificateAuthority, Issued, key_pem

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("Payers CA")


@pytest.fixture(scope="module")
def issued(ca: CertificateAuthority) -> Issued:
    return ca.issue("North Star Health")


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
