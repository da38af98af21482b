"""Register the hub at a data holder as a client of one new payer (RFC 7591).

Why per (new payer, former payer): the holder binds a backend-services client to the
organization it acts for, and honours an HRex Consent only for the client whose
organization is the Consent's recipient (IRCP actor, SPEC.md "Consent"). So the hub
registers once per new payer, naming it by the same identifier the Consent uses
(``exchange.consents.resource.payer_identifier``: NPI, else payer id).

Keys: the registration gives ``jwks_uri`` — the new payer's JWKS the hub publishes at
``{HUB_PUBLIC_URL}/p/<slug>/.well-known/jwks.json`` — rather than inline ``jwks``, so a
key rotation (hub.signing_keys) needs no re-registration at any holder (SMART Backend
Services §Registering a client: a JWKS URL is the recommended way). The holder must be
able to reach the hub at HUB_PUBLIC_URL.

Which clients: the new payer's administrator chooses per former payer
(``HolderRegistration.choice``, exchange/smart/registration_settings.py). *Manual* — the
client ids the holder issued out of band — is honoured even where the holder advertises
a ``registration_endpoint`` (SPEC.md "Authorization": out of band, RFC 7591 or UDAP; some
holders, like the SMART reference bulk-data-server, take only their own registration
form). *Automatic* registers by RFC 7591 when the holder advertises an endpoint, and
otherwise uses the client ids entered in the holder's FHIR endpoint settings.

A failed registration is recorded on the row (``last_error``) for the administrator's page.
"""

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from exchange.consents.resource import payer_identifier
from exchange.fhir.errors import FhirCallError, FhirPermanentError
from exchange.models import HolderRegistration, RegistrationChoice, RegistrationMethod
from exchange.smart.discovery import SmartConfiguration
from exchange.smart.oauth import client_register
from exchange.smart.scopes import BULK_MATCH_SCOPES
from hub.audit import audit_record
from hub.models import FhirEndpoint, Payer
from hub.outbound import PayerHttpClient
from hub.validators import CLIENT_ID_MAX_LENGTH, validate_client_id

# Forget a cached backend token whenever the client it was issued to changes.
_NO_TOKEN: dict[str, Any] = {
    "backend_access_token": "",
    "backend_token_scope": "",
    "backend_token_expires_at": None,
}


def hub_jwks_url(*, payer: Payer) -> str:
    """Return the public URL of the JWKS the hub signs ``payer``'s client assertions with."""
    path = reverse("payer-jwks", kwargs={"payer_slug": payer.slug})
    return f"{settings.HUB_PUBLIC_URL.rstrip('/')}{path}"


def _save(
    *, payer: Payer, former_payer: Payer, method: str, values: dict[str, Any], action: str
) -> HolderRegistration:
    with transaction.atomic():
        registration, created = HolderRegistration.objects.update_or_create(
            payer=payer,
            former_payer=former_payer,
            defaults={
                "method": method,
                "registered_at": timezone.now(),
                "last_error": "",
                "last_error_at": None,
                **values,
            },
        )
        changes = {
            name: value for name, value in values.items() if name.endswith(("client_id", "_uri"))
        }
        audit_record(
            action=action if not created else "holder_registration.create",
            obj=registration,
            payer=payer,
            actor_label="system",
            changes={"former_payer": former_payer.slug, "method": method, **changes},
        )
    return registration


def _configured(
    *, payer: Payer, endpoint: FhirEndpoint, registration: HolderRegistration | None, field: str
) -> HolderRegistration:
    """Return the registration that uses the client ids configured in the endpoint settings."""
    former_payer = endpoint.payer
    values: dict[str, Any] = {
        "backend_client_id": endpoint.backend_client_id,
        "member_client_id": endpoint.member_client_id,
        "member_client_secret": endpoint.member_client_secret,
    }
    if not values[field]:
        what = "payer-to-payer" if field == "backend_client_id" else "member sign-in"
        raise FhirPermanentError(
            f"{former_payer.name} offers no client registration, and no {what} client id is set "
            "in its FHIR endpoint settings; ask it for one and enter it, with manual registration, "
            "on the Former payers we ask page.",
            code="no_client",
        )
    if (
        registration is not None
        and registration.method == RegistrationMethod.CONFIGURED
        and all(getattr(registration, name) == value for name, value in values.items())
    ):
        return registration
    return _save(
        payer=payer,
        former_payer=former_payer,
        method=RegistrationMethod.CONFIGURED,
        values={**values, "member_redirect_uri": "", **_NO_TOKEN},
        action="holder_registration.configure",
    )


def _reset_unless_dynamic(
    registration: HolderRegistration | None, fields: tuple[str, ...]
) -> dict[str, Any]:
    """Return the other client's fields to clear when a registration turns dynamic."""
    if registration is not None and registration.method == RegistrationMethod.DYNAMIC:
        return {}
    return dict.fromkeys(fields, "")


def _existing(*, payer: Payer, former_payer: Payer) -> HolderRegistration | None:
    return HolderRegistration.objects.for_payer(payer).filter(former_payer=former_payer).first()


def holder_registration_error_record(*, payer: Payer, former_payer: Payer, message: str) -> None:
    """Keep why the hub's registration or token request at ``former_payer`` last failed.

    Written on its own (not in the caller's transaction's fate): the failure is what the
    administrator needs to see, and the work that failed is rolled back or retried anyway.
    """
    HolderRegistration.objects.update_or_create(
        payer=payer,
        former_payer=former_payer,
        defaults={"last_error": message, "last_error_at": timezone.now()},
    )


def _manual(*, payer: Payer, registration: HolderRegistration, field: str) -> HolderRegistration:
    """Return the administrator's manual registration, or fail naming the missing client id."""
    if getattr(registration, field):
        return registration
    what = "payer-to-payer" if field == "backend_client_id" else "member sign-in"
    message = (
        f"Registration at {registration.former_payer.name} is set to manual, but no {what} "
        "client id is entered; enter the one the former payer issued on the Former payers "
        "we ask page."
    )
    holder_registration_error_record(
        payer=payer, former_payer=registration.former_payer, message=message
    )
    raise FhirPermanentError(message, code="no_client")


def _client_ensure(
    *,
    payer: Payer,
    endpoint: FhirEndpoint,
    configuration: SmartConfiguration,
    http: PayerHttpClient,
    field: str,
    still_usable: Callable[[HolderRegistration], bool],
    metadata: dict[str, Any],
    values: Callable[[dict[str, Any]], dict[str, Any]],
    other_fields: tuple[str, ...],
    action: str,
) -> HolderRegistration:
    """Return the registration with a usable ``field`` client, registering one when needed."""
    former_payer = endpoint.payer
    registration = _existing(payer=payer, former_payer=former_payer)
    if registration is not None and registration.choice == RegistrationChoice.MANUAL:
        return _manual(payer=payer, registration=registration, field=field)
    if not configuration.registration_endpoint:
        return _configured(payer=payer, endpoint=endpoint, registration=registration, field=field)
    if (
        registration is not None
        and registration.method == RegistrationMethod.DYNAMIC
        and getattr(registration, field)
        and still_usable(registration)
    ):
        return registration
    try:
        answer = client_register(
            http=http,
            registration_endpoint=configuration.registration_endpoint,
            holder_name=former_payer.name,
            metadata=metadata,
        )
        # validate_client_id: an id the hub could not send back unchanged is refused now,
        # not at every token request (RFC 6749 Appendix A.1).
        validate_client_id(answer["client_id"])
        if len(answer["client_id"]) > CLIENT_ID_MAX_LENGTH:
            raise ValidationError(f"longer than {CLIENT_ID_MAX_LENGTH} characters")
    except ValidationError as exc:
        message = (
            f"{former_payer.name} issued a client id the hub cannot use ({' '.join(exc.messages)}); "
            "ask them for another, or register manually."
        )
        holder_registration_error_record(payer=payer, former_payer=former_payer, message=message)
        raise FhirPermanentError(message, code="malformed_json") from None
    except FhirCallError as exc:
        holder_registration_error_record(
            payer=payer, former_payer=former_payer, message=exc.message
        )
        raise
    return _save(
        payer=payer,
        former_payer=former_payer,
        method=RegistrationMethod.DYNAMIC,
        values={**values(answer), **_reset_unless_dynamic(registration, other_fields)},
        action=action,
    )


def holder_registration_backend(
    *,
    payer: Payer,
    endpoint: FhirEndpoint,
    configuration: SmartConfiguration,
    http: PayerHttpClient,
    renew: bool = False,
) -> HolderRegistration:
    """Return ``payer``'s registration at the endpoint's holder with a backend-services client.

    Registers one when there is none (or when ``renew``: the holder forgot the client).
    """
    return _client_ensure(
        payer=payer,
        endpoint=endpoint,
        configuration=configuration,
        http=http,
        field="backend_client_id",
        still_usable=lambda registration: not renew,
        metadata={
            "client_name": f"{payer.name} (payer-to-payer hub)",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks_uri": hub_jwks_url(payer=payer),
            "organization_identifier": payer_identifier(payer),
            # A client registers for all it may ask: cohorts need the bulk match scopes.
            "scope": " ".join([*endpoint.scopes.split(), *BULK_MATCH_SCOPES]),
        },
        values=lambda answer: {"backend_client_id": answer["client_id"], **_NO_TOKEN},
        other_fields=("member_client_id", "member_client_secret", "member_redirect_uri"),
        action="holder_registration.backend_client",
    )


def holder_registration_member(
    *,
    payer: Payer,
    endpoint: FhirEndpoint,
    configuration: SmartConfiguration,
    http: PayerHttpClient,
    redirect_uri: str,
) -> HolderRegistration:
    """Return ``payer``'s registration at the holder with a member-launch client for ``redirect_uri``.

    The member client is registered public (``token_endpoint_auth_method`` none): PKCE
    (SMART App Launch 2.x requires S256) binds the code to the hub, and there is no client
    secret to keep. A holder that issues a secret anyway has it stored encrypted.
    """
    return _client_ensure(
        payer=payer,
        endpoint=endpoint,
        configuration=configuration,
        http=http,
        field="member_client_id",
        still_usable=lambda registration: registration.member_redirect_uri == redirect_uri,
        metadata={
            "client_name": payer.name,
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
            "redirect_uris": [redirect_uri],
        },
        values=lambda answer: {
            "member_client_id": answer["client_id"],
            "member_client_secret": str(answer.get("client_secret") or ""),
            "member_redirect_uri": redirect_uri,
        },
        other_fields=("backend_client_id",),
        action="holder_registration.member_client",
    )
