"""A payer's client certificate for holders that require mutual TLS: check, keep, present.

Seed 002 (the PDex Connectathon page) has the requesting payer open an mTLS connection
and send its RFC 7591 registration and ``$member-match`` over it. PDex has since deprecated
that approach in favour of UDAP (SPEC.md "Authorization"), yet a holder that still requires
a client certificate must be reachable: the engine opens every call to a holder on a payer's
behalf with ``holder_http_client(requesting_payer=...)``, which offers that payer's
certificate (hub/outbound.py explains why offering it to every holder is harmless).

An upload is checked before anything is kept — PEM text, a certificate and a key that
belong together, an RSA or EC key, valid now — and each failure is one sentence saying
what to fix. The key is stored encrypted (hub/fields.py) and never shown again.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404
from django.utils import timezone

from hub.audit import audit_record
from hub.models import ClientCertificate, Payer, User
from hub.outbound import ClientTlsIdentity, PayerHttpClient

# Below this an RSA key is refused by current TLS stacks and CA/Browser Forum rules.
RSA_MIN_BITS = 2048
# A PEM chain or key larger than this is not one (a chain of a few certificates is ~10 KB).
PEM_MAX_BYTES = 64 * 1024
MAX_CHAIN_LENGTH = 10


@dataclass(frozen=True)
class CheckedCertificate:
    """An uploaded certificate chain and key that passed every check, normalized to PEM."""

    certificate_chain_pem: str
    private_key_pem: str
    subject: str
    issuer: str
    serial_number: str
    key_type: str
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str


def _pem_text(data: bytes, *, what: str) -> bytes:
    if len(data) > PEM_MAX_BYTES:
        raise ValidationError(
            f"The {what} file is {len(data) // 1024} KB; a PEM {what} is at most "
            f"{PEM_MAX_BYTES // 1024} KB. Check that you chose the right file.",
            code="too_large",
        )
    try:
        data.decode("ascii")
    except UnicodeDecodeError:
        raise ValidationError(
            f"The {what} file is not PEM text (it may be DER or PKCS#12); convert it to PEM, "
            "for example with `openssl x509 -inform der` or `openssl pkcs12 -nodes`, and "
            "upload that.",
            code="not_pem",
        ) from None
    return data


def _certificates(data: bytes) -> list[x509.Certificate]:
    text = _pem_text(data, what="certificate")
    if b"-----BEGIN CERTIFICATE-----" not in text:
        raise ValidationError(
            "The certificate file holds no PEM certificate (a block starting with "
            "-----BEGIN CERTIFICATE-----); upload your payer's client certificate.",
            code="no_certificate",
        )
    try:
        certificates = x509.load_pem_x509_certificates(text)
    except ValueError:
        raise ValidationError(
            "The certificate file cannot be read as PEM certificates (a block is damaged or "
            "cut short); export the certificate again and upload it.",
            code="bad_certificate",
        ) from None
    if len(certificates) > MAX_CHAIN_LENGTH:
        raise ValidationError(
            f"The certificate file holds {len(certificates)} certificates; give your client "
            f"certificate and at most {MAX_CHAIN_LENGTH - 1} intermediates.",
            code="chain_too_long",
        )
    for position, certificate in enumerate(certificates, start=1):
        _certificate_read_whole(certificate, position=position)
    return certificates


def _certificate_read_whole(certificate: x509.Certificate, *, position: int) -> None:
    """Read now what the hub reads of a certificate later, and refuse it with a sentence if
    that fails: cryptography parses a certificate's public key and names only when asked."""
    which = "Your certificate" if position == 1 else f"Certificate {position} in the file"
    try:
        certificate.public_key()
    except UnsupportedAlgorithm:
        raise ValidationError(
            f"{which} has a public key of a kind the hub does not read; mutual TLS with the "
            "hub takes RSA or EC (ECDSA) keys.",
            code="key_type",
        ) from None
    except ValueError:
        raise ValidationError(
            f"{which} has a damaged public key; export the certificate again and upload it.",
            code="bad_certificate",
        ) from None
    try:
        certificate.subject.rfc4514_string()
        certificate.issuer.rfc4514_string()
        certificate.not_valid_before_utc  # noqa: B018 (read to be checked)
        certificate.not_valid_after_utc  # noqa: B018
    except ValueError:
        raise ValidationError(
            f"{which} has damaged names or validity dates; export the certificate again and "
            "upload it.",
            code="bad_certificate",
        ) from None


def _private_key(data: bytes) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    text = _pem_text(data, what="private key")
    if b"PRIVATE KEY-----" not in text:
        raise ValidationError(
            "The private key file holds no PEM private key (a block starting with "
            "-----BEGIN PRIVATE KEY-----); upload the key the certificate was issued for.",
            code="no_key",
        )
    if b"ENCRYPTED" in text:
        raise ValidationError(
            "The private key is protected by a passphrase; upload it without one (the hub "
            "encrypts it at rest), for example from `openssl pkey -in key.pem -out plain.pem`.",
            code="encrypted_key",
        )
    try:
        key = serialization.load_pem_private_key(text, password=None)
    except (ValueError, TypeError):
        raise ValidationError(
            "The private key file cannot be read as a PEM private key (it is damaged or in a "
            "format the hub does not read); export the key again as PEM and upload it.",
            code="bad_key",
        ) from None
    except Exception:
        raise ValidationError(
            "The private key is of a kind the hub does not read; use an RSA or EC key.",
            code="key_type",
        ) from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < RSA_MIN_BITS:
            raise ValidationError(
                f"The RSA key has {key.key_size} bits; holders refuse keys under "
                f"{RSA_MIN_BITS} bits. Ask your certificate authority for a new certificate "
                "with a longer key.",
                code="key_too_short",
            )
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key
    raise ValidationError(
        f"The private key is a {type(key).__name__.removesuffix('PrivateKey')} key; mutual "
        "TLS with the hub takes RSA or EC (ECDSA) keys.",
        code="key_type",
    )


def _public_der(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_type(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return f"RSA {key.key_size}"
    return f"EC {key.curve.name}"


def client_certificate_check(
    *, certificate_pem: bytes, private_key_pem: bytes, now: datetime | None = None
) -> CheckedCertificate:
    """Return the upload checked and normalized, or raise ValidationError with one sentence."""
    certificates = _certificates(certificate_pem)
    key = _private_key(private_key_pem)
    leaf = certificates[0]
    if _public_der(leaf.public_key()) != _public_der(key.public_key()):
        raise ValidationError(
            "The private key does not belong to the certificate (their public keys differ); "
            "upload the key the certificate was issued for, and put your own certificate "
            "first in the certificate file.",
            code="key_mismatch",
        )
    now = now or datetime.now(UTC)
    if leaf.not_valid_after_utc <= now:
        raise ValidationError(
            f"The certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; holders "
            "refuse it. Upload a current certificate.",
            code="expired",
        )
    if leaf.not_valid_before_utc > now:
        raise ValidationError(
            f"The certificate is not valid until {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC; "
            "upload it from then on, or upload one that is valid now.",
            code="not_yet_valid",
        )
    chain = "".join(
        certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
        for certificate in certificates
    )
    normalized_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    return CheckedCertificate(
        certificate_chain_pem=chain,
        private_key_pem=normalized_key,
        subject=leaf.subject.rfc4514_string()[:500],
        issuer=leaf.issuer.rfc4514_string()[:500],
        serial_number=format(leaf.serial_number, "x")[:100],
        key_type=_key_type(key),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        fingerprint_sha256=leaf.fingerprint(hashes.SHA256()).hex(),
    )


def _described(certificate: ClientCertificate | None) -> dict[str, str]:
    if certificate is None:
        return {}
    return {
        "subject": certificate.subject,
        "issuer": certificate.issuer,
        "not_after": certificate.not_after.isoformat(),
        "fingerprint_sha256": certificate.fingerprint_sha256,
    }


def client_certificate_upload(
    *,
    payer: Payer,
    certificate_pem: bytes,
    private_key_pem: bytes,
    actor: User,
    client_address: str | None = None,
) -> ClientCertificate:
    """Check the upload and make it ``payer``'s client certificate, replacing any; audited."""
    checked = client_certificate_check(
        certificate_pem=certificate_pem, private_key_pem=private_key_pem
    )
    with transaction.atomic():
        previous = ClientCertificate.objects.for_payer(payer).select_for_update().first()
        before = _described(previous)
        if previous is not None:
            previous.delete()
        certificate = ClientCertificate.objects.create(
            payer=payer,
            certificate_chain_pem=checked.certificate_chain_pem,
            private_key_pem=checked.private_key_pem,
            subject=checked.subject,
            issuer=checked.issuer,
            serial_number=checked.serial_number,
            key_type=checked.key_type,
            not_before=checked.not_before,
            not_after=checked.not_after,
            fingerprint_sha256=checked.fingerprint_sha256,
        )
        audit_record(
            action="client_certificate.replace" if previous else "client_certificate.upload",
            obj=certificate,
            payer=payer,
            actor=actor,
            client_address=client_address,
            changes={"before": before, "after": _described(certificate)},
        )
    return certificate


def client_certificate_remove(
    *, payer: Payer, certificate_id: int, actor: User, client_address: str | None = None
) -> None:
    """Remove ``payer``'s client certificate; another payer's (or none) is a 404. Audited."""
    with transaction.atomic():
        certificate = (
            ClientCertificate.objects.for_payer(payer)
            .select_for_update()
            .filter(pk=certificate_id)
            .first()
        )
        if certificate is None:
            raise Http404("No such client certificate.")
        audit_record(
            action="client_certificate.remove",
            obj=certificate,
            payer=payer,
            actor=actor,
            client_address=client_address,
            changes={"before": _described(certificate)},
        )
        certificate.delete()


def client_certificate_of(*, payer: Payer | int) -> ClientCertificate | None:
    """Return ``payer``'s client certificate, or None."""
    return ClientCertificate.objects.for_payer(payer).first()


def client_certificate_expired(certificate: ClientCertificate) -> bool:
    """Return whether the certificate's validity has ended (holders will refuse it)."""
    return certificate.not_after <= timezone.now()


def holder_http_client(
    *, requesting_payer: Payer | int, max_response_bytes: int | None = None
) -> PayerHttpClient:
    """Return the HTTP client for calls to a holder on ``requesting_payer``'s behalf: it
    offers the payer's client certificate to a holder that asks for one (mutual TLS)."""
    certificate = client_certificate_of(payer=requesting_payer)
    identity = (
        ClientTlsIdentity(
            fingerprint_sha256=certificate.fingerprint_sha256,
            certificate_chain_pem=certificate.certificate_chain_pem,
            private_key_pem=certificate.private_key_pem,
        )
        if certificate is not None
        else None
    )
    return PayerHttpClient(max_response_bytes=max_response_bytes, client_identity=identity)
