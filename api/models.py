"""What the payer-system API keeps of its own: the idempotency keys of POSTs."""

from django.db import models

from hub.models import TenantOwned


class IdempotencyKey(TenantOwned):
    """A POST's ``Idempotency-Key`` and the response it got, kept per payer, so a payer
    system that sends the request again (a timeout, a retry) gets that response replayed
    and nothing is created twice (IETF draft-ietf-httpapi-idempotency-key-header §2)."""

    key = models.CharField(max_length=255)
    # sha256 of the method, path and canonical JSON body: the same key with another request
    # is refused rather than replayed (draft §2.2, "idempotency fingerprint").
    fingerprint = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["payer", "key"], name="api_idempotency_payer_key")
        ]
        # The hourly purge finds expired keys by age (api/idempotency.py).
        indexes = [models.Index(fields=["created_at"], name="api_idempotency_created")]

    def __str__(self) -> str:
        return f"Idempotency key {self.pk}"
