"""SMART Backend Services at the hub: payers' systems get tokens to call the Consent endpoint
(former payers) and the payer-system API under ``/api/v1/`` (new payers' enrollment systems).

A payer's client id is its slug. Its systems sign the client assertion with a key published
at the JWKS URL its administrators registered (``Payer.client_jwks_url``); the hub reads
that JWKS through the one vetted client (a copy kept briefly, client_keys.py), so key
rotation at the payer needs nothing at the hub (SMART App Launch 2.x, Backend Services
§Authenticating). Refused requests lock the address they came from out for a while; only
assertions the client's own key signed wrongly lock that client out too, so a stranger
naming a client cannot (token_limits.py).
"""

import re
import time
from datetime import UTC, datetime, timedelta

import jwt
from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from exchange.consents.endpoint.client_keys import client_verification_key
from exchange.consents.endpoint.token_limits import (
    assertion_client_id,
    token_lockout_description,
    token_lockout_read,
    token_refusal_record,
)
from exchange.models import UsedClientAssertion
from hub.audit import client_address
from hub.models import Payer, PayerStatus
from hub.oidc.errors import (
    IdentityNotConfirmed,
    ProviderMisconfigured,
    ProviderUnreachable,
    SignatureInvalid,
    TokenExpired,
    TokenForAnother,
)
from hub.oidc.keys import BACKEND_SERVICES_ALGORITHMS, jwt_header, jwt_verify
from hub.signing_keys import CLIENT_ASSERTION_TYPE

# Backend Services: the assertion's exp SHALL be no more than five minutes in the future.
MAX_ASSERTION_LIFETIME = timedelta(minutes=5)
# Allowance for the client's clock running ahead of the hub's when judging that limit.
ASSERTION_CLOCK_SKEW = timedelta(seconds=30)
# The jti is kept (UsedClientAssertion.jti) until the assertion expires; SMART gives no
# length, a UUID has 36 characters, and nothing longer than the column is stored.
MAX_JTI_LENGTH = 255
# A client id is the payer's slug (Payer.slug, a Django slug of at most 60 characters).
_CLIENT_ID = re.compile(r"[-a-zA-Z0-9_]{1,60}")
ACCESS_TOKEN_SECONDS = 300
# The payer-system API's scopes, one per capability, and what each allows (the API's
# OpenAPI document shows them). The hub's own names: SMART's ``system/<Resource>.<perm>``
# scopes are for FHIR resources, which these endpoints are not.
PAYER_API_SCOPES = {
    "hub/opt-ins.write": "Post members' opt-ins and withdraw them (opt-outs).",
    "hub/opt-ins.read": "Read the payer's opt-ins and the requests each opened.",
    "hub/requests.read": "List the payer's requests and read each one's state and timeline.",
    "hub/deliveries.read": "Read a request's deliveries and their files' sizes and checksums.",
    "hub/cohorts.write": "Post cohorts: many members' opt-ins asked of one former payer in bulk.",
    "hub/cohorts.read": "List the payer's cohorts and read each one's progress and jobs.",
}
GRANTABLE_SCOPES = frozenset(
    {
        "system/Consent.read",
        "system/Consent.rs",
        "system/Subscription.cruds",
        "system/Subscription.write",
        *PAYER_API_SCOPES,
    }
)
_TOKEN_SALT = "hub.consent-endpoint.access-token"  # noqa: S105 - a namespace, not a secret


class ClientRefused(Exception):
    """The client may not have a token; the message says why (RFC 6749 §5.2 error).

    ``signer`` is the client id when the refusal is that client's own doing: the assertion's
    signature verified with the client's key, and what is wrong only the key's holder could
    have signed. Otherwise (a forgery, an expired or replayed copy) it is "": anyone could
    have sent it.
    """

    def __init__(self, error: str, description: str, *, signer: str = "") -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.signer = signer


def token_endpoint_url() -> str:
    """The ``aud`` every client assertion must carry."""
    return f"{settings.HUB_PUBLIC_URL}/fhir/auth/token"


def client_assertion_verify(assertion: str) -> Payer:
    """Return the payer whose system signed ``assertion``, or raise ClientRefused."""
    try:
        header = jwt_header(assertion, what="client assertion")
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except (IdentityNotConfirmed, jwt.PyJWTError) as exc:
        raise ClientRefused("invalid_client", f"the client assertion is not a JWT ({exc})") from exc
    issuer = unverified.get("iss")
    if not isinstance(issuer, str) or not _CLIENT_ID.fullmatch(issuer):
        # Looked up only once it could be a slug: a NUL or a megabyte never reaches the
        # database (PostgreSQL text refuses U+0000).
        raise ClientRefused(
            "invalid_client", "the assertion's iss is not the client id of any client at the hub"
        )
    client_id = issuer
    payer = Payer.objects.filter(slug=client_id).first()
    if payer is not None and payer.status == PayerStatus.SUSPENDED:
        # Suspended by the hub's team (operator console): say so, rather than "unknown".
        raise ClientRefused("invalid_client", payer.exchange_suspended_sentence)
    if payer is None or payer.status != PayerStatus.PARTICIPATING or not payer.client_jwks_url:
        raise ClientRefused("invalid_client", f"no client {client_id!r} is registered at the hub")
    if header.get("alg") not in BACKEND_SERVICES_ALGORITHMS:
        raise ClientRefused("invalid_client", "the assertion must be signed with RS384 or ES384")
    try:
        key = client_verification_key(url=payer.client_jwks_url, header=header)
    except (ProviderUnreachable, ProviderMisconfigured) as exc:
        raise ClientRefused(
            "invalid_client", f"the JWKS at {payer.client_jwks_url} could not be read ({exc})"
        ) from exc
    except IdentityNotConfirmed as exc:
        raise ClientRefused("invalid_client", str(exc)) from exc
    try:
        claims = jwt_verify(
            assertion,
            key,
            what="client assertion",
            audience=token_endpoint_url(),
            issuer=client_id,
            required=("iss", "sub", "aud", "exp", "jti"),
            leeway_seconds=0,
        )
    except (SignatureInvalid, TokenExpired, TokenForAnother) as exc:
        # Anyone can forge a signature; anyone who ever saw one of the client's assertions
        # can present it again once expired; and the server an assertion was addressed to
        # (the client's key may sign for other token endpoints too) can present it here.
        # None of them is the client's doing.
        raise ClientRefused("invalid_client", str(exc)) from exc
    except IdentityNotConfirmed as exc:
        # Addressed to the hub and signed with the client's key: only its holder can have
        # signed a wrong sub, a missing claim or a time not yet valid.
        raise ClientRefused("invalid_client", str(exc), signer=client_id) from exc
    if claims["sub"] != client_id:
        raise ClientRefused(
            "invalid_client",
            "the assertion's sub must equal its iss (the client id)",
            signer=client_id,
        )
    # Compared as numbers first: an exp centuries ahead is past what a datetime can hold.
    # PyJWT has checked that int() reads it (RFC 7519 §2 NumericDate).
    exp = int(claims["exp"])
    if exp - time.time() > (MAX_ASSERTION_LIFETIME + ASSERTION_CLOCK_SKEW).total_seconds():
        raise ClientRefused(
            "invalid_client",
            "the assertion's exp is more than five minutes ahead",
            signer=client_id,
        )
    expires = datetime.fromtimestamp(exp, tz=UTC)
    jti = claims["jti"]
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH or "\x00" in jti:
        raise ClientRefused(
            "invalid_client",
            f"the assertion's jti must be a string of 1 to {MAX_JTI_LENGTH} characters",
            signer=client_id,
        )
    # Spent jtis are kept only while their assertion could still be presented.
    UsedClientAssertion.objects.filter(expires_at__lt=timezone.now()).delete()
    try:
        with transaction.atomic():
            UsedClientAssertion.objects.create(issuer=client_id, jti=jti, expires_at=expires)
    except IntegrityError:
        # Not counted against the client: a replay is what anyone who saw the assertion can send.
        raise ClientRefused(
            "invalid_client", "this client assertion was already used (jti replay)"
        ) from None
    return payer


def access_token_issue(*, payer: Payer, scopes: list[str]) -> str:
    return signing.dumps({"payer": payer.pk, "scopes": scopes}, salt=_TOKEN_SALT)


def access_token_check(token: str) -> tuple[Payer, list[str]]:
    """Return the payer and scopes of a live access token; raise ClientRefused otherwise."""
    try:
        data = signing.loads(token, salt=_TOKEN_SALT, max_age=ACCESS_TOKEN_SECONDS)
    except signing.SignatureExpired:
        raise ClientRefused("invalid_token", "the access token has expired") from None
    except signing.BadSignature:
        raise ClientRefused("invalid_token", "the access token is not valid") from None
    payer = Payer.objects.filter(pk=data["payer"]).first()
    if payer is not None and payer.status == PayerStatus.SUSPENDED:
        raise ClientRefused("invalid_token", payer.exchange_suspended_sentence)
    if payer is None or payer.status != PayerStatus.PARTICIPATING:
        raise ClientRefused("invalid_token", "the client is no longer registered")
    return payer, list(data["scopes"])


@csrf_exempt
@require_POST
def token(request: HttpRequest) -> JsonResponse:
    """The hub's token endpoint: client_credentials with a private_key_jwt assertion."""
    form = request.POST
    client_id = assertion_client_id(form.get("client_assertion", ""))
    address = client_address(request)
    if held := token_lockout_read(client_id=client_id, address=address):
        return JsonResponse(
            {"error": "invalid_client", "error_description": token_lockout_description(held)},
            status=429,
            headers={"Retry-After": str(held.retry_after_seconds), "Cache-Control": "no-store"},
        )
    try:
        if form.get("grant_type") != "client_credentials":
            raise ClientRefused("unsupported_grant_type", "grant_type must be client_credentials")
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            raise ClientRefused(
                "invalid_request", f"client_assertion_type must be {CLIENT_ASSERTION_TYPE}"
            )
        if not form.get("client_assertion"):
            raise ClientRefused("invalid_request", "client_assertion is missing")
        requested = form.get("scope", "").split()
        if not requested or not set(requested) <= GRANTABLE_SCOPES:
            raise ClientRefused(
                "invalid_scope", f"ask for one or more of: {', '.join(sorted(GRANTABLE_SCOPES))}"
            )
        payer = client_assertion_verify(form["client_assertion"])
    except ClientRefused as exc:
        token_refusal_record(signer=exc.signer, address=address)
        status = 401 if exc.error == "invalid_client" else 400
        return JsonResponse(
            {"error": exc.error, "error_description": exc.description}, status=status
        )
    return JsonResponse(
        {
            "access_token": access_token_issue(payer=payer, scopes=requested),
            "token_type": "bearer",
            "expires_in": ACCESS_TOKEN_SECONDS,
            "scope": " ".join(requested),
        },
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )
