"""Write audit events in the caller's transaction (STYLE.md #7)."""

from collections.abc import Sequence
from typing import Any

from django.db import models
from django.http import HttpRequest

from hub.models import AuditEvent, Payer, User
from hub.request_context import current_request_id

# The actor label of changes the exchange engine (a Celery worker) makes on its own.
ENGINE = "engine"


def client_address(request: HttpRequest) -> str | None:
    """Return the address the request came from, as the web server saw it."""
    return request.META.get("REMOTE_ADDR") or None


def audit_record(
    *,
    action: str,
    obj: models.Model,
    payer: Payer | int | None,
    actor: User | None = None,
    actor_label: str = "",
    changes: dict[str, Any] | None = None,
    client_address: str | None = None,
) -> AuditEvent:
    """Record that ``actor`` (a person) or ``actor_label`` (a system) did ``action`` to ``obj``.

    ``changes`` holds before/after values of non-secret fields only; callers never
    pass secrets or PHI here.
    """
    (event,) = audit_record_many(
        action=action,
        changes_by_object=[(obj, changes or {})],
        payer=payer,
        actor=actor,
        actor_label=actor_label,
        client_address=client_address,
    )
    return event


def audit_record_many(
    *,
    action: str,
    changes_by_object: Sequence[tuple[models.Model, dict[str, Any]]],
    payer: Payer | int | None,
    actor: User | None = None,
    actor_label: str = "",
    client_address: str | None = None,
) -> list[AuditEvent]:
    """Record that ``actor`` or ``actor_label`` did ``action`` to each object, with its own
    ``changes``, one INSERT per thousand: for work on many rows at once (a cohort's members)."""
    return _insert(
        action=action,
        rows=[(payer, obj, changes) for obj, changes in changes_by_object],
        actor=actor,
        actor_label=actor_label,
        client_address=client_address,
    )


def audit_record_per_payer(
    *,
    action: str,
    object_by_payer: Sequence[tuple[Payer | int, models.Model]],
    changes: dict[str, Any],
    actor: User | None = None,
    actor_label: str = "",
    client_address: str | None = None,
) -> list[AuditEvent]:
    """Record that ``actor`` or ``actor_label`` did ``action`` to one object of each payer,
    in that payer's own trail, one INSERT per thousand: for a look across many payers."""
    return _insert(
        action=action,
        rows=[(payer, obj, changes) for payer, obj in object_by_payer],
        actor=actor,
        actor_label=actor_label,
        client_address=client_address,
    )


def _insert(
    *,
    action: str,
    rows: Sequence[tuple[Payer | int | None, models.Model, dict[str, Any]]],
    actor: User | None,
    actor_label: str,
    client_address: str | None,
) -> list[AuditEvent]:
    request_id = current_request_id.get()
    return AuditEvent.objects.bulk_create(
        [
            AuditEvent(
                payer_id=payer.pk if isinstance(payer, Payer) else payer,
                actor=actor,
                actor_label=actor_label or (actor.get_username() if actor else "system"),
                action=action,
                object_type=obj._meta.label,
                object_id=str(obj.pk),
                changes=changes,
                client_address=client_address,
                request_id=request_id if request_id != "-" else "",
            )
            for payer, obj, changes in rows
        ],
        batch_size=1000,
    )
