"""The audit log: who did what to which object, when, from where. Append-only.

Rows are written in the same transaction as the change they describe (STYLE.md #7).
The model refuses updates and deletes, and on PostgreSQL a trigger refuses them
too (migration hub/0002), so not even a raw query can rewrite history.
"""

from typing import Any

from django.conf import settings
from django.db import models

from hub.models.tenancy import Payer, TenantQuerySet


class AuditEventQuerySet(TenantQuerySet["AuditEvent"]):
    """Fail closed like the tenant-owned rows (TenantQuerySet): an event tells who did what
    to which object of a payer, from which address, so reading it needs ``for_payer`` or
    ``across_payers``. Hub-wide operator events (no payer) are read ``across_payers``."""

    def update(self, **kwargs: Any) -> int:
        raise AuditLogIsAppendOnly("audit events cannot be changed")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AuditLogIsAppendOnly("audit events cannot be deleted")


class AuditLogIsAppendOnly(Exception):
    pass


class AuditEvent(models.Model):
    # Null only for hub-wide operator actions (e.g. creating a payer before it exists).
    payer = models.ForeignKey(Payer, on_delete=models.PROTECT, null=True, related_name="+")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    # Who acted when it was not a signed-in person: "system", "worker", "sftp-key:<label>".
    actor_label = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=100)
    object_type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=64)
    changes = models.JSONField(default=dict, blank=True)
    client_address = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    occurred_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [models.Index(fields=["payer", "-occurred_at"], name="audit_payer_time")]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type}:{self.object_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise AuditLogIsAppendOnly("audit events cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AuditLogIsAppendOnly("audit events cannot be deleted")
