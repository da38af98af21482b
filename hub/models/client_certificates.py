"""The client certificate a payer presents to data holders that require mutual TLS.

PDex's Connectathon page (seed 002) has the requesting payer open an mTLS connection,
then register (RFC 7591) and run ``$member-match`` over it. PDex has since deprecated that
approach in favour of UDAP (SPEC.md "Authorization"), but holders that still ask for a
client certificate must be reachable. The private key is encrypted at rest like every
secret and never rendered back; what the pages show is the certificate's subject, issuer,
validity and SHA-256 fingerprint. One certificate per payer: an upload replaces it.
"""

from django.db import models

from hub.fields import EncryptedTextField
from hub.models.tenancy import TenantOwned


class ClientCertificate(TenantOwned):
    # The leaf certificate first, then any intermediates the holder needs to build the chain.
    certificate_chain_pem = models.TextField()
    private_key_pem = EncryptedTextField()
    subject = models.CharField(max_length=500)
    issuer = models.CharField(max_length=500)
    serial_number = models.CharField(max_length=100)
    key_type = models.CharField(max_length=40)
    not_before = models.DateTimeField()
    not_after = models.DateTimeField()
    fingerprint_sha256 = models.CharField("SHA-256 fingerprint", max_length=64)
    uploaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["payer"], name="client_certificate_one_per_payer")
        ]

    def __str__(self) -> str:
        return f"{self.subject} (SHA-256 {self.fingerprint_sha256[:16]}…)"

    @property
    def fingerprint_display(self) -> str:
        """Return the fingerprint as openssl prints it (``AB:CD:…``), to compare by eye."""
        hex_digits = self.fingerprint_sha256.upper()
        return ":".join(hex_digits[i : i + 2] for i in range(0, len(hex_digits), 2))
