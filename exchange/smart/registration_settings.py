"""The plan administrator's side of the hub's registration at each former payer it asks.

Per former payer the administrator chooses *automatic* (RFC 7591, exchange/smart/
registration.py) or *manual*: the client ids the former payer issued out of band, for
which the administrator registered the hub's JWKS URL of this payer (``hub_jwks_url``)
at the former payer (SMART Backend Services §Registering a client). The page shows how
and when the hub is registered and the last error; *Register again* replaces a dynamic
registration and proves the clients with a fresh token.
"""

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.http import Http404
from django.utils import timezone

from directory.selectors import directory_payers_to_ask
from exchange.fhir.endpoints import holder_endpoint_get
from exchange.fhir.errors import FhirCallError
from exchange.models import HolderRegistration, RegistrationChoice, RegistrationMethod
from exchange.smart.backend_services import backend_access_token
from exchange.smart.discovery import smart_configuration_read
from exchange.smart.registration import (
    holder_registration_backend,
    holder_registration_error_record,
)
from hub.audit import audit_record
from hub.client_certificates import holder_http_client
from hub.models import Payer, User
from hub.validators import validate_client_id

# The cached token and the member client belong to the clients being replaced.
_FORGET_TOKEN: dict[str, Any] = {
    "backend_access_token": "",
    "backend_token_scope": "",
    "backend_token_expires_at": None,
}


@dataclass(frozen=True)
class FormerPayerRegistration:
    """One former payer ``payer`` asks, and the hub's registration there (None: not yet)."""

    former_payer: Payer
    registration: HolderRegistration | None

    @property
    def choice(self) -> str:
        return self.registration.choice if self.registration else RegistrationChoice.AUTOMATIC


def holder_registrations_list(*, payer: Payer) -> list[FormerPayerRegistration]:
    """Return every former payer ``payer``'s members can ask, with the hub's registration there."""
    former_payers = directory_payers_to_ask(payer=payer)
    registrations = {
        registration.former_payer_id: registration
        for registration in HolderRegistration.objects.for_payer(payer).filter(
            former_payer__in=former_payers
        )
    }
    return [
        FormerPayerRegistration(former_payer=former, registration=registrations.get(former.pk))
        for former in former_payers
    ]


def holder_registration_get(*, payer: Payer, former_payer_slug: str) -> FormerPayerRegistration:
    """Return one former payer ``payer`` can ask, with its registration; 404 for any other."""
    for entry in holder_registrations_list(payer=payer):
        if entry.former_payer.slug == former_payer_slug:
            return entry
    raise Http404("No such former payer to ask.")


def holder_registration_configure(
    *,
    payer: Payer,
    former_payer: Payer,
    choice: str,
    backend_client_id: str = "",
    member_client_id: str = "",
    member_client_secret: str = "",
    actor: User,
    client_address: str | None = None,
) -> HolderRegistration:
    """Save the administrator's choice of registration at ``former_payer``; audited.

    Manual ids take effect at once (the cached token goes with the old client). Turning
    automatic forgets manual ids, so the next exchange registers by RFC 7591. An empty
    ``member_client_secret`` keeps the one saved (secrets are write-only).
    """
    if choice not in RegistrationChoice.values:
        raise ValueError(f"unknown registration choice {choice!r}")
    for client_id in (backend_client_id, member_client_id):
        validate_client_id(client_id)
    with transaction.atomic():
        registration = (
            HolderRegistration.objects.for_payer(payer)
            .select_for_update()
            .filter(former_payer=former_payer)
            .first()
        )
        if registration is None:
            registration = HolderRegistration(payer=payer, former_payer=former_payer)
        was_manual = registration.method == RegistrationMethod.MANUAL
        registration.choice = choice
        if choice == RegistrationChoice.MANUAL:
            registration.method = RegistrationMethod.MANUAL
            registration.backend_client_id = backend_client_id
            registration.member_client_id = member_client_id
            if member_client_secret or not was_manual or not member_client_id:
                registration.member_client_secret = member_client_secret
            # Set at the holder by the administrator, out of band: nothing the hub registered.
            registration.member_redirect_uri = ""
            registration.registered_at = timezone.now()
            registration.last_error = ""
            registration.last_error_at = None
            _forget_token(registration)
        elif was_manual:
            _forget_clients(registration)
        registration.save()
        audit_record(
            action=f"holder_registration.{choice}",
            obj=registration,
            payer=payer,
            actor=actor,
            client_address=client_address,
            changes={
                "former_payer": former_payer.slug,
                "choice": choice,
                "backend_client_id": registration.backend_client_id,
                "member_client_id": registration.member_client_id,
            },
        )
    return registration


def _forget_token(registration: HolderRegistration) -> None:
    for name, value in _FORGET_TOKEN.items():
        setattr(registration, name, value)


def _forget_clients(registration: HolderRegistration) -> None:
    registration.method = ""
    registration.backend_client_id = ""
    registration.member_client_id = ""
    registration.member_client_secret = ""
    registration.member_redirect_uri = ""
    registration.registered_at = None
    _forget_token(registration)


def holder_registration_register_again(
    *, payer: Payer, former_payer: Payer, actor: User, client_address: str | None = None
) -> HolderRegistration:
    """Register the hub at ``former_payer`` anew (automatic) and prove the clients with a token.

    Automatic: a new RFC 7591 backend client replaces the dynamic one, and the member
    client is forgotten (the next member sign-in registers one for the hub's redirect
    URI). Manual: the administrator's ids are tried with a fresh token. Either way the
    outcome lands in ``last_error`` (cleared on success); the request is audited.
    """
    endpoint = holder_endpoint_get(former_payer=former_payer)
    with transaction.atomic():
        registration, _ = HolderRegistration.objects.for_payer(payer).get_or_create(
            payer=payer, former_payer=former_payer
        )
        if registration.choice == RegistrationChoice.AUTOMATIC and registration.method in (
            RegistrationMethod.DYNAMIC,
            RegistrationMethod.CONFIGURED,
        ):
            previous = registration.backend_client_id
            _forget_clients(registration)
            registration.save()
        else:
            previous = registration.backend_client_id
        audit_record(
            action="holder_registration.register_again",
            obj=registration,
            payer=payer,
            actor=actor,
            client_address=client_address,
            changes={
                "former_payer": former_payer.slug,
                "choice": registration.choice,
                "backend_client_id": previous,
            },
        )
    try:
        if endpoint.offers_backend_services:
            if registration.choice == RegistrationChoice.AUTOMATIC:
                with holder_http_client(requesting_payer=payer) as http:
                    configuration = smart_configuration_read(endpoint=endpoint, http=http)
                    holder_registration_backend(
                        payer=payer,
                        endpoint=endpoint,
                        configuration=configuration,
                        http=http,
                        renew=True,
                    )
            backend_access_token(payer=payer, former_payer=former_payer, force_refresh=True)
    except FhirCallError as exc:
        holder_registration_error_record(
            payer=payer, former_payer=former_payer, message=exc.message
        )
    return HolderRegistration.objects.for_payer(payer).get(former_payer=former_payer)
