"""A throwaway public key infrastructure for mutual TLS tests: CAs, server and client certificates.

Everything is generated in memory with ``cryptography`` when a test asks; nothing with a key
is committed. EC P-256 keys, so generating a handful costs milliseconds.
"""

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def key_pem(key: Any) -> bytes:
    """Return a private key as unencrypted PKCS#8 PEM."""
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def cert_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, as PEM."""

    certificate: x509.Certificate
    key: Any

    @property
    def cert_pem(self) -> bytes:
        return cert_pem(self.certificate)

    @property
    def key_pem(self) -> bytes:
        return key_pem(self.key)


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA that issues server and client certificates."""

    name: str
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, name: str) -> "CertificateAuthority":
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(days=1))
            .not_valid_after(_now() + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(name=name, certificate=certificate, key=key)

    @property
    def cert_pem(self) -> bytes:
        return cert_pem(self.certificate)

    def issue(
        self,
        common_name: str,
        *,
        server: bool = False,
        key: Any = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> Issued:
        """Return a certificate for ``common_name``: a server one for 127.0.0.1, else a client one."""
        key = key or ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Hub tests"),
                        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                    ]
                )
            )
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or _now() - dt.timedelta(days=1))
            .not_valid_after(not_after or _now() + dt.timedelta(days=10))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
        return Issued(certificate=builder.sign(self.key, hashes.SHA256()), key=key)


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@dataclass(frozen=True)
class MutualTlsFiles:
    """What a sandbox started with TLS and client-certificate verification is given."""

    ca_file: Path
    server_cert: Path
    server_key: Path

    def sandbox_args(self) -> tuple[str, ...]:
        return (
            "--tls-cert", str(self.server_cert), "--tls-key", str(self.server_key),
            "--client-ca", str(self.ca_file),
        )  # fmt: skip


def mutual_tls_files(ca: CertificateAuthority, directory: Path) -> MutualTlsFiles:
    """Write the CA certificate and a server certificate for 127.0.0.1 into ``directory``."""
    server = ca.issue("127.0.0.1", server=True)
    files = MutualTlsFiles(
        ca_file=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
    )
    files.ca_file.write_bytes(ca.cert_pem)
    files.server_cert.write_bytes(server.cert_pem)
    files.server_key.write_bytes(server.key_pem)
    files.server_key.chmod(0o600)
    return files


def client_context(client: Issued, directory: Path) -> ssl.SSLContext:
    """Return a TLS context that trusts the CA in ``directory`` and presents ``client``."""
    context = ssl.create_default_context(cafile=str(directory / "ca.pem"))
    chain = directory / f"client-{client.certificate.serial_number}.pem"
    chain.write_bytes(client.cert_pem + client.key_pem)
    chain.chmod(0o600)
    context.load_cert_chain(chain)
    return context
