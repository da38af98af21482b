"""SMART Backend Services access tokens the hub obtains as a new payer (SPEC.md "Authorization").

``client_credentials`` with a client assertion (SMART App Launch 2.x, Backend Services
§Authenticating: a JWT signed RS384 or ES384 with ``kid`` in the header, ``iss`` = ``sub``
= client_id, ``aud`` = the token URL, ``exp`` at most five minutes ahead, a unique
``jti``), made by hub.signing_keys with the new payer's active signing key, whose public
half the holder fetches from the JWKS URL given at registration.
"""

from datetime import timedelta
from functools import partial

from django.utils import timezone

from exchange.fhir.endpoints import holder_endpoint_get
from exchange.fhir.errors import FhirPermanentError
from exchange.models import HolderRegistration, RegistrationMethod
from exchange.smart.discovery import SmartConfiguration, smart_configuration_read
from exchange.smart.oauth import TokenResponse, token_request
from exchange.smart.registration import (
    holder_registration_backend,
    holder_registration_error_record,
)
from hub.client_certificates import holder_http_client
from hub.models import FhirEndpoint, Payer
from hub.outbound import PayerHttpClient
from hub.signing_keys import CLIENT_ASSERTION_TYPE, client_assertion_sign

# Renew a cached token this long before it ends (a fifth of a short token's life at most),
# so a call never starts with a token about to lapse.
RENEW_BEFORE_SECONDS = 30
# When a holder does not say how long its token lives (expires_in is only RECOMMENDED).
ASSUMED_LIFETIME_SECONDS = 300


def token_renewal_time(expires_in: int | None) -> timedelta:
    """Return how long from now a token of ``expires_in`` seconds may still be used."""
    lifetime = float(expires_in) if expires_in else ASSUMED_LIFETIME_SECONDS
    return timedelta(seconds=lifetime - min(RENEW_BEFORE_SECONDS, lifetime / 5))


def _request_token(
    *,
    payer: Payer,
    endpoint: FhirEndpoint,
    configuration: SmartConfiguration,
    registration: HolderRegistration,
    http: PayerHttpClient,
    scope: str,
) -> TokenResponse:
    return token_request(
        http=http,
        token_url=configuration.token_endpoint,
        holder_name=endpoint.payer.name,
        form={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            # Both algorithms are ones servers SHALL accept; RS384 is the more widely deployed.
            "client_assertion": client_assertion_sign(
                payer=payer,
                client_id=registration.backend_client_id,
                audience=configuration.token_endpoint,
            ),
        },
    )


def backend_access_token(
    *,
    payer: Payer,
    former_payer: Payer,
    force_refresh: bool = False,
    extra_scopes: tuple[str, ...] = (),
) -> str:
    """Return an access token at ``former_payer`` for ``payer``, cached until shortly before it ends.

    ``force_refresh`` (after a 401) ignores the cached token. Registers the hub at the
    holder first when needed, and once more when the holder no longer knows the client.
    ``extra_scopes`` are asked for besides the endpoint's (the bulk match scopes, PDex
    STU 2.2 §pdex-142).
    """
    endpoint = holder_endpoint_get(former_payer=former_payer)
    if not endpoint.offers_backend_services:
        raise FhirPermanentError(
            f"{former_payer.name} does not offer payer-to-payer access (SMART Backend Services).",
            code="backend_services_not_offered",
        )
    scope = " ".join(dict.fromkeys([*endpoint.scopes.split(), *extra_scopes]))
    cached = HolderRegistration.objects.for_payer(payer).filter(former_payer=former_payer).first()
    if (
        cached is not None
        and not force_refresh
        and cached.backend_access_token
        and cached.backend_token_scope == scope
        and cached.backend_token_expires_at is not None
        and cached.backend_token_expires_at > timezone.now()
    ):
        return cached.backend_access_token
    try:
        with holder_http_client(requesting_payer=payer) as http:
            configuration = smart_configuration_read(endpoint=endpoint, http=http)
            registration = holder_registration_backend(
                payer=payer, endpoint=endpoint, configuration=configuration, http=http
            )
            request_token = partial(
                _request_token,
                payer=payer,
                endpoint=endpoint,
                configuration=configuration,
                http=http,
                scope=scope,
            )
            try:
                token = request_token(registration=registration)
            except FhirPermanentError as exc:
                # A holder that lost its registrations (restarted, purged) answers invalid_client.
                if (
                    exc.code != "client_refused"
                    or registration.method != RegistrationMethod.DYNAMIC
                ):
                    raise
                registration = holder_registration_backend(
                    payer=payer,
                    endpoint=endpoint,
                    configuration=configuration,
                    http=http,
                    renew=True,
                )
                token = request_token(registration=registration)
    except FhirPermanentError as exc:
        # The administrator's page shows why the clients stopped working (a manual id the
        # holder does not know, a registration it refused); transient faults are retried.
        holder_registration_error_record(
            payer=payer, former_payer=former_payer, message=exc.message
        )
        raise
    registration.backend_access_token = token.access_token
    registration.backend_token_scope = scope
    registration.backend_token_expires_at = timezone.now() + token_renewal_time(token.expires_in)
    registration.last_error = ""
    registration.last_error_at = None
    registration.save(
        update_fields=[
            "backend_access_token",
            "backend_token_scope",
            "backend_token_expires_at",
            "last_error",
            "last_error_at",
        ]
    )
    return token.access_token
