"""Re-encrypt every stored secret with the first key of FIELD_ENCRYPTION_KEYS.

Key rotation: put the new key first (keeping the old ones after it), deploy, run
this command, then drop the old keys. Rows are rewritten in batches, each in its
own transaction, so the command can be stopped and run again at any time.
"""

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction

from hub.fields import EncryptedTextField

BATCH_SIZE = 500


class Command(BaseCommand):
    help = "Re-encrypt all encrypted fields with the primary FIELD_ENCRYPTION_KEYS key."

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        for model in apps.get_models():
            names = [
                field.name
                for field in model._meta.concrete_fields
                if isinstance(field, EncryptedTextField)
            ]
            if not names:
                continue
            # Every model's rows, each payer's alike: the base manager, not a tenant's view
            # (TenantQuerySet would refuse a read across payers without a reason).
            manager = model._base_manager
            pks = list(manager.order_by("pk").values_list("pk", flat=True))
            for start in range(0, len(pks), BATCH_SIZE):
                with transaction.atomic():
                    for instance in manager.filter(pk__in=pks[start : start + BATCH_SIZE]).only(
                        *names
                    ):
                        # Reading decrypts with any listed key; writing encrypts with the first.
                        manager.filter(pk=instance.pk).update(
                            **{name: getattr(instance, name) for name in names}
                        )
            total += len(pks)
            self.stdout.write(f"{model._meta.label}: {len(pks)} rows re-encrypted")
        self.stdout.write(self.style.SUCCESS(f"{total} rows re-encrypted with the primary key"))
