"""Sign-in through each payer's own OpenID Connect provider (multi-tenant mozilla-django-oidc).

mozilla-django-oidc reads one provider from settings; the hub has one per payer. So the
tenant comes from the URL at the start (``/p/<slug>/sign-in/``) and is carried in the
session next to the ``state`` it belongs to; the callback (one URL, ``/oidc/callback/``,
registered at every payer's IdP) takes it back from there. A forged or replayed ``state``
finds nothing and is refused.

What the library does for us: state, nonce, PKCE (S256), the code exchange, session
login. What we add: the provider's endpoints from its discovery document, every call
through ``hub.outbound`` (the one vetted client), ``iss``/``aud``/``exp`` checks on the
id_token (OpenID Connect Core §3.1.3.7), and users bound to (payer, subject).
"""

import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
from django.contrib.auth import logout
from django.core.cache import cache
from django.core.exceptions import SuspiciousOperation
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.dateparse import parse_date
from django.views.decorators.http import require_POST
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from hub.audit import audit_record
from hub.models import IdentityProvider, Payer, Role, User
from hub.outbound import OutboundError, PayerHttpClient

# Asymmetric algorithms only: "none" and HS* (keyed with the client secret) are refused.
ID_TOKEN_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "PS384"]
_DISCOVERY_CACHE_SECONDS = 15 * 60
_PAYER_OF_STATE = "payer"


class SignInUnavailable(Exception):
    """The payer's identity provider cannot be used now; the message says why, in plain words."""


@dataclass(frozen=True)
class ProviderEndpoints:
    """What the hub needs from a provider's discovery document (OIDC Discovery §3)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str
    end_session_endpoint: str


def provider_endpoints(provider: IdentityProvider) -> ProviderEndpoints:
    """Return the provider's endpoints from its discovery document (cached briefly)."""
    cache_key = "oidc-discovery:" + hashlib.sha256(provider.issuer.encode()).hexdigest()
    document = cache.get(cache_key)
    if document is None:
        url = provider.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            with PayerHttpClient() as client:
                response = client.get(url)
            response.raise_for_status()
            document = response.json()
        except OutboundError as exc:
            raise SignInUnavailable(
                f"the sign-in service of {provider.payer.name} could not be reached ({exc})"
            ) from exc
        except (httpx.HTTPError, ValueError) as exc:
            raise SignInUnavailable(
                f"the sign-in service of {provider.payer.name} did not answer as expected ({exc})"
            ) from exc
        if not isinstance(document, dict) or document.get("issuer") != provider.issuer.rstrip("/"):
            raise SignInUnavailable(
                f"the sign-in service of {provider.payer.name} is misconfigured: its discovery "
                f"document names another issuer than {provider.issuer}"
            )
        cache.set(cache_key, document, _DISCOVERY_CACHE_SECONDS)
    missing = [
        name
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri")
        if not document.get(name)
    ]
    if missing:
        raise SignInUnavailable(
            f"the sign-in service of {provider.payer.name} is misconfigured: its discovery "
            f"document lacks {', '.join(missing)}"
        )
    return ProviderEndpoints(
        issuer=document["issuer"],
        authorization_endpoint=document["authorization_endpoint"],
        token_endpoint=document["token_endpoint"],
        jwks_uri=document["jwks_uri"],
        userinfo_endpoint=document.get("userinfo_endpoint", ""),
        end_session_endpoint=document.get("end_session_endpoint", ""),
    )


def _identity_provider(payer: Payer) -> IdentityProvider:
    provider = IdentityProvider.objects.for_payer(payer).first()
    if provider is None:
        raise SignInUnavailable(f"{payer.name} has not set up sign-in with the hub yet")
    return provider


def _unavailable(request: HttpRequest, payer: Payer | None, reason: str) -> HttpResponse:
    return render(
        request, "members/sign_in_problem.html", {"payer": payer, "reason": reason}, status=503
    )


class PayerSignInView(OIDCAuthenticationRequestView):
    """``/p/<slug>/sign-in/``: send the person to their payer's identity provider."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The parent reads a single provider from settings here; ours is chosen per request.
        super(OIDCAuthenticationRequestView, self).__init__(*args, **kwargs)

    def get_settings(self, attr: str, *args: Any) -> Any:
        payer_settings = {
            "OIDC_RP_SCOPES": self.provider.scopes,
            "OIDC_USE_PKCE": True,
            "OIDC_PKCE_CODE_CHALLENGE_METHOD": "S256",
            "OIDC_USE_NONCE": True,
        }
        if attr in payer_settings:
            return payer_settings[attr]
        return super().get_settings(attr, *args)

    def get(self, request: HttpRequest, payer_slug: str) -> HttpResponseBase:
        payer = get_object_or_404(Payer, slug=payer_slug)
        try:
            self.provider = _identity_provider(payer)
            endpoints = provider_endpoints(self.provider)
        except SignInUnavailable as exc:
            return _unavailable(request, payer, str(exc))
        self.OIDC_OP_AUTH_ENDPOINT = endpoints.authorization_endpoint
        self.OIDC_RP_CLIENT_ID = self.provider.client_id
        response = super().get(request)
        # Remember which payer this sign-in (this state) is for; the callback reads it back.
        state = _state_of(response)
        request.session["oidc_states"][state][_PAYER_OF_STATE] = payer.pk
        request.session.modified = True
        return response


def _state_of(response: HttpResponseBase) -> str:
    return parse_qs(urlsplit(response["Location"]).query)["state"][0]


class PayerCallbackView(OIDCAuthenticationCallbackView):
    """``/oidc/callback/``: finish the sign-in for the payer the ``state`` was issued for."""

    def get(self, request: HttpRequest) -> HttpResponseBase:
        state = request.GET.get("state", "")
        pending = request.session.get("oidc_states", {}).get(state)
        payer = Payer.objects.filter(pk=pending[_PAYER_OF_STATE]).first() if pending else None
        if payer is None:
            # Unknown state (forged, replayed, from a session that has ended), or its payer
            # has left the hub since.
            return render(
                request,
                "members/sign_in_problem.html",
                {
                    "reason": "This sign-in link is not valid any more. "
                    "Please start signing in again from your plan's page."
                },
                status=400,
            )
        self.payer = payer
        request.oidc_payer = payer  # type: ignore[attr-defined]
        if request.GET.get("error"):
            super().get(request)
            description = request.GET.get("error_description") or request.GET["error"]
            return render(
                request,
                "members/sign_in_problem.html",
                {"payer": payer, "reason": f"{payer.name}'s sign-in service said: {description}"},
                status=400,
            )
        try:
            return super().get(request)
        except SignInUnavailable as exc:
            return _unavailable(request, payer, str(exc))

    @property
    def success_url(self) -> str:
        next_url = self.request.session.get("oidc_login_next")
        if next_url:
            return str(next_url)
        user = self.user
        if isinstance(user, User) and user.role == Role.PLAN_ADMIN:
            return f"/p/{self.payer.slug}/admin/"
        return reverse("members:home", kwargs={"payer_slug": self.payer.slug})

    def login_failure(self) -> HttpResponse:
        return render(
            self.request,
            "members/sign_in_problem.html",
            {
                "payer": getattr(self, "payer", None),
                "reason": "Your plan's sign-in service did not confirm who you are.",
            },
            status=403,
        )


class PayerOidcBackend(OIDCAuthenticationBackend):
    """Authenticate against the identity provider of the payer the callback resolved."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Settings-free: the provider is the payer's, set in authenticate().
        self.UserModel = User

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> User | None:
        payer = getattr(request, "oidc_payer", None)
        if request is None or payer is None:
            return None  # Not an OIDC callback: leave it to the other backends.
        self.payer = payer
        self.provider = _identity_provider(payer)
        endpoints = provider_endpoints(self.provider)
        self.endpoints = endpoints
        self.OIDC_OP_TOKEN_ENDPOINT = endpoints.token_endpoint
        self.OIDC_OP_USER_ENDPOINT = endpoints.userinfo_endpoint
        self.OIDC_OP_JWKS_ENDPOINT = endpoints.jwks_uri
        self.OIDC_RP_CLIENT_ID = self.provider.client_id
        self.OIDC_RP_CLIENT_SECRET = self.provider.client_secret
        self.OIDC_RP_IDP_SIGN_KEY = None
        self.OIDC_RP_SIGN_ALGO = "RS256"
        return super().authenticate(request, **kwargs)

    def get_user(self, user_id: Any) -> User | None:
        """Return the session's person while they may still sign in (as ModelBackend does):
        switching someone off ends the sessions they already have, not only their next sign-in."""
        user = User.objects.filter(pk=user_id).first()
        return user if user is not None and user.is_active else None

    def _post(self, url: str, data: dict[str, Any]) -> Any:
        try:
            with PayerHttpClient() as client:
                response = client.post(url, data=data, headers={"Accept": "application/json"})
        except OutboundError as exc:
            raise SignInUnavailable(
                f"the sign-in service of {self.payer.name} could not be reached ({exc})"
            ) from exc
        if response.status_code != 200:
            raise SignInUnavailable(
                f"the sign-in service of {self.payer.name} refused to complete the sign-in "
                f"(HTTP {response.status_code})"
            )
        return response.json()

    def _get_json(self, url: str, headers: dict[str, str] | None = None) -> Any:
        try:
            with PayerHttpClient() as client:
                response = client.get(url, headers=headers or {})
            response.raise_for_status()
            return response.json()
        except (OutboundError, httpx.HTTPError, ValueError) as exc:
            raise SignInUnavailable(
                f"the sign-in service of {self.payer.name} did not answer as expected ({exc})"
            ) from exc

    def get_token(self, payload: dict[str, Any]) -> Any:
        return self._post(self.OIDC_OP_TOKEN_ENDPOINT, payload)

    def retrieve_matching_jwk(self, token: str) -> jwt.PyJWK:
        header = jwt.get_unverified_header(token)
        for key in self._get_json(self.OIDC_OP_JWKS_ENDPOINT).get("keys", []):
            if (
                key.get("kid") == header.get("kid")
                and key.get("alg", header["alg"]) == header["alg"]
            ):
                return jwt.PyJWK(key)
        raise SuspiciousOperation(
            "the id_token was signed with a key the provider does not publish"
        )

    def _verify_jws(self, payload: str, key: Any) -> Any:
        """Check signature, ``iss``, ``aud`` and ``exp`` (OIDC Core §3.1.3.7)."""
        try:
            return jwt.decode(
                payload,
                key,
                algorithms=ID_TOKEN_ALGORITHMS,
                audience=self.provider.client_id,
                issuer=self.endpoints.issuer,
                options={"require": ["iss", "aud", "exp", "sub"]},
                leeway=30,
            )
        except jwt.PyJWTError as exc:
            raise SuspiciousOperation(f"id_token rejected: {exc}") from exc

    def get_userinfo(self, access_token: str, id_token: str, payload: dict[str, Any]) -> Any:
        claims = dict(payload)
        if self.OIDC_OP_USER_ENDPOINT:
            userinfo = self._get_json(
                self.OIDC_OP_USER_ENDPOINT, {"Authorization": f"Bearer {access_token}"}
            )
            # OIDC Core §5.3.2: a userinfo answer about another subject must not be used.
            if userinfo.get("sub") != payload.get("sub"):
                raise SuspiciousOperation("userinfo names another subject than the id_token")
            claims.update(userinfo)
        return claims

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        return bool(claims.get("sub"))

    def filter_users_by_claims(self, claims: dict[str, Any]) -> Any:
        # Bound to (payer, subject): the same subject at another payer is another person.
        return User.objects.filter(payer=self.payer, oidc_subject=claims["sub"])

    def create_user(self, claims: dict[str, Any]) -> User:
        digest = hashlib.sha256(f"{self.payer.pk}:{claims['sub']}".encode()).hexdigest()[:20]
        user = User(
            username=f"{self.payer.slug}-{digest}",
            payer=self.payer,
            oidc_subject=claims["sub"],
            role=Role.MEMBER,
        )
        user.set_unusable_password()
        return self.update_user(user, claims)

    def update_user(self, user: User, claims: dict[str, Any]) -> User:
        """Refresh role and demographics from the provider's claims at every sign-in."""
        provider = self.provider
        role = (
            Role.PLAN_ADMIN
            if claims.get(provider.claim_role) == Role.PLAN_ADMIN.value
            else Role.MEMBER
        )
        user.role = role
        user.first_name = str(claims.get(provider.claim_given_name, ""))[:150]
        user.last_name = str(claims.get(provider.claim_family_name, ""))[:150]
        user.email = str(claims.get("email", ""))[:254]
        user.birth_date = parse_date(str(claims.get(provider.claim_birth_date, ""))) or None
        user.gender = str(claims.get(provider.claim_gender, ""))[:10]
        user.plan_member_id = str(claims.get(provider.claim_member_id, ""))[:100]
        with transaction.atomic():
            user.save()
            audit_record(
                action="user.sign_in",
                obj=user,
                payer=self.payer,
                actor=user,
                changes={"role": role, "issuer": self.endpoints.issuer},
            )
        return user


@require_POST
def sign_out(request: HttpRequest, payer_slug: str) -> HttpResponse:
    """End the hub session; then, when the provider offers it, its session too."""
    payer = get_object_or_404(Payer, slug=payer_slug)
    logout(request)
    signed_out = request.build_absolute_uri(
        reverse("members:signed-out", kwargs={"payer_slug": payer.slug})
    )
    try:
        provider = _identity_provider(payer)
        end_session = provider_endpoints(provider).end_session_endpoint
    except SignInUnavailable:
        end_session = ""
    if not end_session:
        return HttpResponseRedirect(signed_out)
    # OIDC RP-Initiated Logout 1.0 §2: the provider ends its session and sends the person back.
    query = urlencode({"client_id": provider.client_id, "post_logout_redirect_uri": signed_out})
    return HttpResponseRedirect(f"{end_session}?{query}")
