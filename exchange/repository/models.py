"""Who may sign in to the repository (keys per payer) and what lies in it (files per payer)."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from hub.models import TenantOwned


class RepositoryKey(TenantOwned):
    """An SSH public key one of the payer's systems signs in to the repository with.

    The SSH user name is the payer's slug; the key decides the rest. Keys are never
    deleted, only revoked, so the audit log's fingerprints keep pointing at a row.
    """

    label = models.CharField(max_length=100, help_text="Which system holds the key.")
    public_key = models.TextField(help_text="The OpenSSH public key line, without its comment.")
    # As OpenSSH prints it (``SHA256:...``): how the key is looked up at sign-in and named in audits.
    fingerprint = models.CharField(max_length=100)
    # CIDR networks the key may sign in from; empty means from anywhere.
    allowed_sources = models.JSONField(default=list, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["payer", "fingerprint"], name="repository_key_unique_per_payer"
            )
        ]

    def __str__(self) -> str:
        return f"{self.label} ({self.fingerprint})"

    def is_active(self) -> bool:
        """Return whether the key may sign in now (not revoked, not expired)."""
        return self.revoked_at is None and (
            self.expires_at is None or self.expires_at > timezone.now()
        )


class RepositoryFile(TenantOwned):
    """A file delivered into the payer's folder, until it is removed or purged.

    ``path`` is relative to the payer's folder (what the payer's system sees, less the
    leading slash). ``collected_at`` is set when a system has read the file completely;
    the retention task purges collected files and those older than the retention period.
    """

    path = models.CharField(max_length=500)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    delivered_at = models.DateTimeField()
    collected_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["path"]
        constraints = [
            models.UniqueConstraint(fields=["payer", "path"], name="repository_file_unique_path")
        ]
        indexes = [
            models.Index(
                fields=["delivered_at"],
                condition=Q(collected_at__isnull=True),
                name="repository_file_uncollected",
            )
        ]

    def __str__(self) -> str:
        return self.path
