"""What plan administrators change (STYLE.md #1: services write; #7: audited in the same transaction).

Settings services take the values a form has already validated, re-validate them on
the model, save, and record before/after of every non-secret field that changed;
for a secret only the fact that it was replaced is recorded, never a value.
"""

from datetime import date
from typing import Any, TypeVar, cast

from django.db import models, transaction

from hub.audit import audit_record
from hub.fields import EncryptedTextField
from hub.models import (
    DeliveryMode,
    FhirEndpoint,
    IdentityProvider,
    Payer,
    SftpDestination,
    TenantOwned,
    User,
)

_Setting = TypeVar("_Setting", bound=TenantOwned)
INTEGRATION_SETTINGS = (FhirEndpoint, IdentityProvider, SftpDestination)
# The only Payer fields an administrator may change; the rest is the hub operator's.
PAYER_SETTINGS_FIELDS = ("client_jwks_url", "delivery_mode")


class SettingRefused(ValueError):
    """The change cannot be made as asked; the message says why, in plain words."""


def _audit_value(value: Any) -> Any:
    """Return ``value`` as it can be stored in an audit event's JSON."""
    if isinstance(value, date):
        return value.isoformat()
    return value


def _settings_save(
    *,
    instance: models.Model,
    values: dict[str, Any],
    payer: Payer,
    actor: User | None,
    action: str,
    client_address: str | None,
    actor_label: str = "",
) -> None:
    """Apply ``values`` to ``instance``, validate, save and audit; the caller holds the transaction."""
    secret_fields = {
        field.name for field in instance._meta.fields if isinstance(field, EncryptedTextField)
    }
    stored = {name: getattr(instance, name) for name in values}
    # A new row had no values before: every field it is created with is recorded.
    before = {name: None if instance._state.adding else stored[name] for name in values}
    for name, value in values.items():
        setattr(instance, name, value)
    instance.full_clean()
    instance.save()
    audit_record(
        action=action,
        obj=instance,
        payer=payer,
        actor=actor,
        actor_label=actor_label,
        changes={
            "fields": {
                name: {"before": _audit_value(before[name]), "after": _audit_value(value)}
                for name, value in values.items()
                if name not in secret_fields and value != before[name]
            },
            "secrets_replaced": [
                name for name in values if name in secret_fields and values[name] != stored[name]
            ],
        },
        client_address=client_address,
    )


def integration_setting_save(
    *,
    model: type[_Setting],
    payer: Payer,
    actor: User | None,
    values: dict[str, Any],
    client_address: str | None = None,
    actor_label: str = "",
) -> _Setting:
    """Create or change the payer's one row of an integration setting.

    ``model`` is FhirEndpoint, IdentityProvider or SftpDestination: one row per payer
    (by constraint). Its encrypted fields are its secrets, audited as "replaced" only.
    ``actor`` is None (and ``actor_label`` says who) only for the first administrator's
    link, which sets up the identity provider before anyone can sign in.
    """
    if model not in INTEGRATION_SETTINGS:
        raise SettingRefused(f"{model.__name__} is not an integration setting")
    with transaction.atomic():
        instance = cast(
            "_Setting | None", model.objects.for_payer(payer).select_for_update().first()
        )
        action = f"{model._meta.model_name}.{'update' if instance else 'create'}"
        if instance is None:
            instance = model(payer=payer)
        _settings_save(
            instance=instance, values=values, payer=payer, actor=actor, action=action,
            client_address=client_address, actor_label=actor_label,
        )  # fmt: skip
    return instance


def payer_settings_update(
    *, payer: Payer, actor: User, values: dict[str, Any], client_address: str | None = None
) -> Payer:
    """Change the payer's client JWKS URL or delivery mode (nothing else of the payer)."""
    unknown = set(values) - set(PAYER_SETTINGS_FIELDS)
    if unknown:
        raise SettingRefused(f"administrators cannot change {', '.join(sorted(unknown))}")
    with transaction.atomic():
        locked = Payer.objects.select_for_update().get(pk=payer.pk)
        if (
            values.get("delivery_mode") == DeliveryMode.PUSH_SFTP
            and not SftpDestination.objects.for_payer(payer).exists()
        ):
            raise SettingRefused(
                "Save your SFTP destination first: pushing deliveries needs a server to push to."
            )
        _settings_save(
            instance=locked, values=values, payer=locked, actor=actor,
            action="payer.settings_update", client_address=client_address,
        )  # fmt: skip
    return locked
