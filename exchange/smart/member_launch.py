"""The member signs in at the former payer: SMART App Launch 2.x standalone launch.

Authorization code with PKCE S256, ``state`` and ``aud`` (SPEC.md "Authorization",
member-authorized). The hub keeps, per launch, only the SHA-256 of ``state`` (to find the
launch when the member comes back) and the PKCE verifier, encrypted; the tokens it earns
are encrypted at rest and renewed with the refresh token when they end. The member-facing
views (redirect out, callback) belong to members/; these are the services they call.
"""

import base64
import hashlib
import secrets
from datetime import timedelta
from urllib.parse import urlencode

from django.db import transaction
from django.utils import timezone

from exchange.fhir.endpoints import holder_endpoint_get
from exchange.fhir.errors import FhirPermanentError
from exchange.models import ExchangeRequest, HolderRegistration, MemberLaunch
from exchange.smart.backend_services import token_renewal_time
from exchange.smart.discovery import smart_configuration_read
from exchange.smart.oauth import TokenResponse, token_request
from exchange.smart.registration import holder_registration_member
from hub.client_certificates import holder_http_client
from hub.models import Payer, User
from hub.outbound import PayerHttpClient

# A launch not completed within this time is refused: the member starts over.
LAUNCH_LIFETIME = timedelta(minutes=15)


class LaunchStateInvalid(FhirPermanentError):
    """The callback's ``state`` is not one the hub issued, was used already, or is too old."""


def _digest(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


def _scopes(*, v2: bool) -> str:
    # launch/patient: the token names the member's Patient; offline_access: a refresh
    # token, because retrieval may outlast the access token (SMART App Launch §Scopes).
    resources = "patient/*.rs" if v2 else "patient/*.read"
    return f"launch/patient openid fhirUser offline_access {resources}"


def member_launch_begin(*, exchange_request: ExchangeRequest, redirect_uri: str) -> str:
    """Return the former payer's authorize URL to send the member to; remember the launch."""
    former_payer = exchange_request.former_payer
    endpoint = holder_endpoint_get(former_payer=former_payer)
    if not endpoint.offers_member_authorization:
        raise FhirPermanentError(
            f"{former_payer.name} does not offer member sign-in (SMART App Launch).",
            code="member_authorization_not_offered",
        )
    with holder_http_client(requesting_payer=exchange_request.payer_id) as http:
        configuration = smart_configuration_read(endpoint=endpoint, http=http)
        if not configuration.authorization_endpoint:
            raise FhirPermanentError(
                f"{former_payer.name} names no authorization endpoint for member sign-in.",
                code="no_authorization_endpoint",
            )
        registration = holder_registration_member(
            payer=exchange_request.payer,
            endpoint=endpoint,
            configuration=configuration,
            http=http,
            redirect_uri=redirect_uri,
        )
    state = secrets.token_urlsafe(32)
    # RFC 7636 §4.1: 43 to 128 characters; 64 random bytes give 86.
    verifier = secrets.token_urlsafe(64)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest())
        .rstrip(b"=")
        .decode("ascii")
    )
    MemberLaunch.objects.create(
        payer=exchange_request.payer,
        exchange_request=exchange_request,
        state_digest=_digest(state),
        code_verifier=verifier,
        redirect_uri=redirect_uri,
        started_at=timezone.now(),
    )
    query = urlencode(
        {
            "response_type": "code",
            "client_id": registration.member_client_id,
            "redirect_uri": redirect_uri,
            "scope": _scopes(v2=configuration.speaks_v2_scopes),
            "state": state,
            # SMART App Launch §Standalone: aud is the FHIR base the token is for.
            "aud": endpoint.base_url,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    separator = "&" if "?" in configuration.authorization_endpoint else "?"
    return f"{configuration.authorization_endpoint}{separator}{query}"


def _client_auth(registration: HolderRegistration) -> tuple[dict[str, str], tuple[str, str] | None]:
    """Return the form fields and Basic credentials that name the member client."""
    if registration.member_client_secret:
        return {}, (registration.member_client_id, registration.member_client_secret)
    return {"client_id": registration.member_client_id}, None


def _member_registration(exchange_request: ExchangeRequest) -> HolderRegistration:
    registration = (
        HolderRegistration.objects.for_payer(exchange_request.payer_id)
        .filter(former_payer_id=exchange_request.former_payer_id)
        .first()
    )
    if registration is None or not registration.member_client_id:
        raise FhirPermanentError(
            f"The hub has no member sign-in client at {exchange_request.former_payer.name}; "
            "start the authorization again.",
            code="no_client",
        )
    return registration


def _token_url(exchange_request: ExchangeRequest, http: PayerHttpClient) -> str:
    endpoint = holder_endpoint_get(former_payer=exchange_request.former_payer)
    return smart_configuration_read(endpoint=endpoint, http=http).token_endpoint


def _store_tokens(launch: MemberLaunch, token: TokenResponse) -> None:
    launch.access_token = token.access_token
    # Refresh tokens may rotate (RFC 6749 §6); keep the old one when no new one came.
    launch.refresh_token = token.refresh_token or launch.refresh_token
    launch.access_token_expires_at = timezone.now() + token_renewal_time(token.expires_in)
    launch.scope = token.scope or launch.scope


def _open_launch(*, payer: Payer, member: User, state: str, redirect_uri: str) -> MemberLaunch:
    """Return the launch ``state`` names, locked; refuse forged, used, old or misdirected ones,
    and one another member started (a state is only good in the hands of its own member).

    Call inside a transaction: the row stays locked until the code is redeemed, so a
    double-submitted callback waits and then finds the launch completed.
    """
    launch = (
        MemberLaunch.objects.for_payer(payer)
        .select_for_update()
        .select_related("exchange_request__former_payer")
        .filter(state_digest=_digest(state), exchange_request__member=member)
        .first()
    )
    if launch is None:
        raise LaunchStateInvalid(
            "This sign-in answer does not belong to any authorization the hub started. "
            "Start the authorization again from your request page.",
            code="state_unknown",
        )
    if launch.completed_at is not None:
        raise LaunchStateInvalid(
            "This sign-in answer was already used. Start the authorization again from your "
            "request page if your records are not on their way.",
            code="state_used",
        )
    if timezone.now() - launch.started_at > LAUNCH_LIFETIME:
        raise LaunchStateInvalid(
            "This sign-in took too long and has expired. Start the authorization again.",
            code="state_expired",
        )
    if redirect_uri != launch.redirect_uri:
        raise LaunchStateInvalid(
            "This sign-in answer came back to another address than the one it left from.",
            code="redirect_uri_mismatch",
        )
    return launch


def _member_token(exchange_request: ExchangeRequest, form: dict[str, str]) -> TokenResponse:
    """Ask the former payer's token endpoint for the member's tokens (code or refresh grant)."""
    fields, basic_auth = _client_auth(_member_registration(exchange_request))
    with holder_http_client(requesting_payer=exchange_request.payer_id) as http:
        return token_request(
            http=http,
            token_url=_token_url(exchange_request, http),
            holder_name=exchange_request.former_payer.name,
            form={**form, **fields},
            basic_auth=basic_auth,
        )


def member_launch_complete(
    *, payer: Payer, member: User, state: str, code: str, redirect_uri: str
) -> ExchangeRequest:
    """Exchange the callback's code for tokens; return the request the launch belongs to.

    Raises LaunchStateInvalid for a ``state`` the hub did not issue to ``payer``, one used
    before, or one too old — a forged or replayed callback changes nothing.
    """
    with transaction.atomic():
        launch = _open_launch(payer=payer, member=member, state=state, redirect_uri=redirect_uri)
        exchange_request = launch.exchange_request
        token = _member_token(
            exchange_request,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": launch.code_verifier,
            },
        )
        if not token.patient:
            raise FhirPermanentError(
                f"{exchange_request.former_payer.name} did not say which patient record you "
                "shared (its token answer has no patient, or one that is not a FHIR id), so the "
                "hub cannot fetch it.",
                code="patient_missing",
            )
        _store_tokens(launch, token)
        launch.completed_at = timezone.now()
        launch.save()
        exchange_request.matched_patient_id = token.patient
        exchange_request.save(update_fields=["matched_patient_id"])
    return exchange_request


def member_launch_refused(
    *, payer: Payer, member: User, state: str, redirect_uri: str
) -> ExchangeRequest:
    """The member said no at the former payer (``error=access_denied``): close the launch and
    return its request, which the caller ends ``authorization_denied``."""
    with transaction.atomic():
        launch = _open_launch(payer=payer, member=member, state=state, redirect_uri=redirect_uri)
        launch.completed_at = timezone.now()
        launch.save(update_fields=["completed_at"])
    return launch.exchange_request


def member_access_token(*, exchange_request: ExchangeRequest, force_refresh: bool = False) -> str:
    """Return the member's access token at the former payer, refreshed when it has ended."""
    with transaction.atomic():
        # Locked while refreshing: refresh tokens rotate, so two workers must not both
        # spend the same one.
        launch = (
            MemberLaunch.objects.for_payer(exchange_request.payer_id)
            .select_for_update()
            .filter(exchange_request=exchange_request, completed_at__isnull=False)
            .order_by("-completed_at")
            .first()
        )
        former_name = exchange_request.former_payer.name
        if launch is None:
            raise FhirPermanentError(
                f"You have not signed in at {former_name} to share your records yet.",
                code="not_authorized",
            )
        expires_at = launch.access_token_expires_at
        if not force_refresh and expires_at is not None and expires_at > timezone.now():
            return launch.access_token
        if not launch.refresh_token:
            raise FhirPermanentError(
                f"Your permission at {former_name} has ended; sign in there again to continue.",
                code="authorization_expired",
            )
        token = _member_token(
            exchange_request,
            {"grant_type": "refresh_token", "refresh_token": launch.refresh_token},
        )
        _store_tokens(launch, token)
        launch.save(
            update_fields=["access_token", "refresh_token", "access_token_expires_at", "scope"]
        )
    return token.access_token
