"""What plan administrators change (STYLE.md #1: services write; #7: audited in the same transaction).

Settings services take the values a form has already validated, re-validate them on
the model, save, and record before/after of every non-secret field that changed;
for a secret only the fact that it was replaced is recorded, never a value.
"""

from datetime import date
from typing import Any, TypeVar, cast

from django.db import models, transaction

from exchange.models import ExchangeRequest, ExchangeStatus
from exchange.payloads.storage import PayloadStorage
from exchange.retrieval import records_retrieval_reset
from exchange.services import enqueue_next_step
from exchange.state_machine import ENDED, exchange_request_transition
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
from hub.tenancy import get_for_payer_or_404

_Setting = TypeVar("_Setting", bound=TenantOwned)
INTEGRATION_SETTINGS = (FhirEndpoint, IdentityProvider, SftpDestination)
# The only Payer fields an administrator may change; the rest is the hub operator's.
PAYER_SETTINGS_FIELDS = ("client_jwks_url", "delivery_mode")


class SettingRefused(ValueError):
    """The change cannot be made as asked; the message says why, in plain words."""


class ExchangeRequestActionRefused(ValueError):
    """The request is not in a state that allows this action; the message says why."""


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
    actor: User,
    action: str,
    client_address: str | None,
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
    actor: User,
    values: dict[str, Any],
    client_address: str | None = None,
) -> _Setting:
    """Create or change the payer's one row of an integration setting.

    ``model`` is FhirEndpoint, IdentityProvider or SftpDestination: one row per payer
    (by constraint). Its encrypted fields are its secrets, audited as "replaced" only.
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
            client_address=client_address,
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


def exchange_request_retry(
    *, payer: Payer, request_id: int, actor: User, client_address: str | None = None
) -> ExchangeRequest:
    """Start a failed request over from its consent and hand it back to the engine."""
    exchange_request = get_for_payer_or_404(ExchangeRequest.objects.all(), payer, pk=request_id)
    if exchange_request.status != ExchangeStatus.FAILED:
        raise ExchangeRequestActionRefused("Only a failed request can be retried.")
    with transaction.atomic():
        moved = exchange_request_transition(
            payer=payer,
            exchange_request_id=exchange_request.pk,
            from_status=ExchangeStatus.FAILED,
            to_status=ExchangeStatus.CONSENTED,
            message=f"Retried by the plan administrator {actor.get_username()}.",
        )
        if not moved:
            raise ExchangeRequestActionRefused(
                "The request changed while you were looking at it; reload the page."
            )
        audit_record(
            action="exchange_request.retry", obj=exchange_request, payer=payer, actor=actor,
            changes={"status": {"before": ExchangeStatus.FAILED, "after": ExchangeStatus.CONSENTED}},
            client_address=client_address,
        )  # fmt: skip
        # The retry starts over: nothing staged by the failed attempt may mix in.
        records_retrieval_reset(exchange_request=exchange_request, storage=PayloadStorage())
        ExchangeRequest.objects.for_payer(payer).filter(pk=exchange_request.pk).update(
            screened_out_counts={}, resume_count=0
        )
        transaction.on_commit(lambda: enqueue_next_step(exchange_request))
    exchange_request.refresh_from_db()
    return exchange_request


def exchange_request_cancel(
    *, payer: Payer, request_id: int, actor: User, client_address: str | None = None
) -> ExchangeRequest:
    """Stop a request that has not ended; the member sees it cancelled on their timeline."""
    exchange_request = get_for_payer_or_404(ExchangeRequest.objects.all(), payer, pk=request_id)
    current = exchange_request.status
    if current in ENDED:
        raise ExchangeRequestActionRefused(
            f"The request has already ended ({exchange_request.get_status_display().lower()})."
        )
    with transaction.atomic():
        moved = exchange_request_transition(
            payer=payer,
            exchange_request_id=exchange_request.pk,
            from_status=current,
            to_status=ExchangeStatus.CANCELLED,
            message=f"Cancelled by the plan administrator {actor.get_username()}.",
            reason_code="cancelled_by_payer",
            reason_message="Your health plan cancelled this request.",
        )
        if not moved:
            raise ExchangeRequestActionRefused(
                "The request changed while you were looking at it; reload the page."
            )
        audit_record(
            action="exchange_request.cancel", obj=exchange_request, payer=payer, actor=actor,
            changes={"status": {"before": current, "after": ExchangeStatus.CANCELLED}},
            client_address=client_address,
        )  # fmt: skip
    exchange_request.refresh_from_db()
    return exchange_request
