"""Write audit events in the caller's transaction (STYLE.md #7)."""

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
    return AuditEvent.objects.create(
        payer_id=payer.pk if isinstance(payer, Payer) else payer,
        actor=actor,
        actor_label=actor_label or (actor.get_username() if actor else "system"),
        action=action,
        object_type=obj._meta.label,
        object_id=str(obj.pk),
        changes=changes or {},
        client_address=client_address,
        request_id=current_request_id.get() if current_request_id.get() != "-" else "",
    )
