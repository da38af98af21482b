"""The hub's signing keys per payer: it signs SMART Backend Services assertions as that payer.

The private key is encrypted at rest; the public half is published as a JWKS at a
stable URL (``/p/<slug>/.well-known/jwks.json``) that the payer registers at
former payers. A rotated key stays published for SIGNING_KEY_GRACE_DAYS so that
tokens and caches keyed to it keep working (SMART Backend Services §key rotation).
"""

from django.db import models
from django.db.models import Q

from hub.fields import EncryptedTextField
from hub.models.tenancy import TenantOwned


class SigningAlgorithm(models.TextChoices):
    # SMART Backend Services: servers SHALL support RS384 and ES384.
    RS384 = "RS384", "RS384 (RSA 3072)"
    ES384 = "ES384", "ES384 (ECDSA P-384)"


class SigningKeyStatus(models.TextChoices):
    ACTIVE = "active", "Active — signs new assertions"
    PREVIOUS = "previous", "Previous — still published during the grace period"
    RETIRED = "retired", "Retired — no longer published"


class SigningKey(TenantOwned):
    kid = models.CharField(max_length=64, unique=True)
    algorithm = models.CharField(max_length=8, choices=SigningAlgorithm.choices)
    private_key_pem = EncryptedTextField()
    public_jwk = models.JSONField()
    status = models.CharField(max_length=10, choices=SigningKeyStatus.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, blank=True)
    retire_after = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["payer", "algorithm"],
                condition=Q(status="active"),
                name="signing_key_one_active_per_payer_and_algorithm",
            )
        ]

    def __str__(self) -> str:
        return f"{self.algorithm} {self.kid} ({self.status})"
