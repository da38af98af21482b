"""Sign-in through each payer's own OpenID Connect provider (multi-tenant mozilla-django-oidc).

mozilla-django-oidc reads one provider from settings; the hub has one per payer. So the
tenant comes from the URL at the start (``/p/<slug>/sign-in/``) and is carried in the
session next to the ``state`` it belongs to; the callback (one URL, ``/oidc/callback/``,
registered at every payer's IdP) takes it back from there. A forged or replayed ``state``
finds nothing and is refused.

What the library does for us: state, nonce, PKCE (S256), session login. What ``hub.oidc``
does: discovery, the code exchange with the client authentication the provider takes,
the id_token checks (OpenID Connect Core §3.1.3.7), userinfo. What this module adds:
people bound to (payer, subject), their role from the payer's role claim, RP-Initiated
Logout, and a page for every refusal: a plain sentence for the person, and for the
payer's administrator what went wrong and what to check (never a secret, a token or a
claim about the person).
"""

import hashlib
import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.contrib.auth import logout
from django.contrib.auth.backends import BaseBackend
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from mozilla_django_oidc.utils import absolutify
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from hub.audit import audit_record
from hub.iso_dates import iso_day
from hub.models import IdentityProvider, Payer, Role, User
from hub.oidc.errors import (
    IdentityNotConfirmed,
    OidcError,
    ProviderMisconfigured,
    ProviderUnreachable,
    TokenRequestRefused,
)
from hub.oidc.relying_party import end_session_url, provider_metadata_current, sign_in_complete
from hub.request_context import current_request_id
from members.role_claim import RoleRefused, role_from_claims

logger = logging.getLogger(__name__)

_PAYER_OF_STATE = "payer"
# RP-Initiated Logout 1.0 §2: the id_token of the sign-in is the hint at sign-out.
_ID_TOKEN_SESSION_KEY = "oidc_id_token"  # noqa: S105 - a session key, not a secret
_PROBLEM_TEMPLATE = "members/sign_in_problem.html"


class SignInNotSetUp(Exception):
    """The payer has saved no identity provider."""

    advice = "Save your identity provider in the hub's integration settings, then test it."


SignInProblem = OidcError | RoleRefused | SignInNotSetUp

# What the person is told, most specific first; the administrator's part comes from the error.
_PLAIN_WORDS: tuple[tuple[type[Exception], int, str], ...] = (
    (SignInNotSetUp, 503, "{payer} has not set up sign-in with the hub yet."),
    (
        ProviderUnreachable,
        503,
        "{payer}'s sign-in service could not be reached. Please try again in a few minutes.",
    ),
    (
        TokenRequestRefused,
        503,
        "{payer}'s sign-in service refused to complete the sign-in. Please try again later; "
        "if it keeps happening, tell {payer}.",
    ),
    (
        ProviderMisconfigured,
        503,
        "{payer}'s sign-in service is not set up correctly with the hub. Please try again "
        "later; if it keeps happening, tell {payer}.",
    ),
    (
        IdentityNotConfirmed,
        403,
        "{payer}'s sign-in service did not confirm who you are, so you are not signed in.",
    ),
    (
        RoleRefused,
        403,
        "Your account at {payer} is not set up for this service yet. Please contact {payer}.",
    ),
)


def _problem_page(request: HttpRequest, payer: Payer, problem: SignInProblem) -> HttpResponse:
    """Render the page of a refused sign-in, and log why (without anything about the person)."""
    status, words = next(
        (status, words) for kind, status, words in _PLAIN_WORDS if isinstance(problem, kind)
    )
    detail = str(problem)
    logger.warning(
        "sign-in refused",
        extra={"payer": payer.slug, "problem": type(problem).__name__, "detail": detail},
    )
    return render(
        request,
        _PROBLEM_TEMPLATE,
        {
            "payer": payer,
            "reason": words.format(payer=payer.name),
            "detail": detail,
            "advice": problem.advice,
            "reference": current_request_id.get(),
        },
        status=status,
    )


def _identity_provider(payer: Payer) -> IdentityProvider:
    provider = IdentityProvider.objects.for_payer(payer).first()
    if provider is None:
        raise SignInNotSetUp(f"No identity provider is saved for {payer.name} at the hub.")
    return provider


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
            metadata = provider_metadata_current(identity_provider=self.provider)
        except (SignInNotSetUp, OidcError) as exc:
            return _problem_page(request, payer, exc)
        self.OIDC_OP_AUTH_ENDPOINT = metadata.authorization_endpoint
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
                _PROBLEM_TEMPLATE,
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
                _PROBLEM_TEMPLATE,
                {"payer": payer, "reason": f"{payer.name}'s sign-in service said: {description}"},
                status=400,
            )
        try:
            return super().get(request)
        except (SignInNotSetUp, OidcError, RoleRefused) as exc:
            return _problem_page(request, payer, exc)

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
            _PROBLEM_TEMPLATE,
            {
                "payer": getattr(self, "payer", None),
                "reason": "Your plan's sign-in service did not confirm who you are.",
            },
            status=403,
        )


# OpenID Connect Core §2: sub is a case-sensitive string of at most 255 characters.
SUBJECT_MAX_LENGTH = 255


def person_signed_in(
    *, identity_provider: IdentityProvider, claims: dict[str, Any], role: Role
) -> User:
    """Find or create the person of (payer, subject); refresh role and demographics; audit.

    Raise IdentityNotConfirmed when ``sub`` is not a subject the hub can bind a person to.
    The other claims are the payer's word about the person, taken as they come: text cut to
    its column, a birth date the hub cannot read left empty (the request says what is
    missing, exchange/member_match.py).
    """
    payer = identity_provider.payer
    provider = identity_provider
    subject = claims.get("sub")
    if (
        not isinstance(subject, str)
        or not 0 < len(subject) <= SUBJECT_MAX_LENGTH
        or not subject.isprintable()
    ):
        raise IdentityNotConfirmed(
            f"The id_token's sub is not a subject identifier: it must be text of 1 to "
            f"{SUBJECT_MAX_LENGTH} printable characters (OpenID Connect Core §2).",
            advice="Check which attribute the provider sends as the subject of its tokens.",
        )
    plan_member_id = _claim_text(claims, provider.claim_member_id, limit=100)
    with transaction.atomic():
        user = User.objects.filter(payer=payer, oidc_subject=subject).first()
        claimed = False
        if user is None and role == Role.MEMBER:
            user = _roster_member_claim(payer=payer, subject=subject, plan_member_id=plan_member_id)
            claimed = user is not None
        if user is None:
            digest = hashlib.sha256(f"{payer.pk}:{subject}".encode()).hexdigest()[:20]
            user = User(username=f"{payer.slug}-{digest}", payer=payer, oidc_subject=subject)
            user.set_unusable_password()
        user.role = role
        user.first_name = _claim_text(claims, provider.claim_given_name, limit=150)
        user.last_name = _claim_text(claims, provider.claim_family_name, limit=150)
        user.email = _claim_text(claims, "email", limit=254)
        # OIDC Core §5.1 also allows a year alone, or the year 0000 for one omitted: no day.
        user.birth_date = iso_day(claims.get(provider.claim_birth_date))
        user.gender = _claim_text(claims, provider.claim_gender, limit=10)
        user.plan_member_id = plan_member_id
        user.save()
        changes: dict[str, Any] = {"role": role, "issuer": provider.issuer}
        if claimed:
            changes["claimed_roster_member"] = True
        audit_record(action="user.sign_in", obj=user, payer=payer, actor=user, changes=changes)
    return user


def _claim_text(claims: dict[str, Any], name: str, *, limit: int) -> str:
    """Return the claim as text cut to ``limit`` characters; '' when absent or null. NUL,
    which PostgreSQL cannot store in text, is dropped."""
    value = claims.get(name)
    return "" if value is None else str(value).replace("\x00", "")[:limit]


def _roster_member_claim(*, payer: Payer, subject: str, plan_member_id: str) -> User | None:
    """Bind ``subject`` to the member a roster made for ``plan_member_id`` who has never
    signed in (exchange/bulk/services.py), so their portal shows the requests made for them;
    return that member, or None unless exactly one such member is waiting."""
    if not plan_member_id:
        return None
    waiting = User.objects.filter(
        payer=payer, role=Role.MEMBER, oidc_subject="", plan_member_id=plan_member_id
    )
    candidates = list(waiting[:2])
    if len(candidates) != 1:
        return None
    # Conditional: of two first sign-ins racing for one member, only one binds it (STYLE.md #4).
    if not waiting.filter(pk=candidates[0].pk).update(oidc_subject=subject):
        return None
    candidates[0].oidc_subject = subject
    return candidates[0]


class PayerOidcBackend(BaseBackend):
    """Authenticate against the identity provider of the payer the callback resolved."""

    def authenticate(
        self,
        request: HttpRequest | None,
        nonce: str | None = None,
        code_verifier: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        payer = getattr(request, "oidc_payer", None)
        if request is None or payer is None or not request.GET.get("code"):
            return None  # Not an OIDC callback: leave it to the other backends.
        identity_provider = _identity_provider(payer)
        signed_in = sign_in_complete(
            identity_provider=identity_provider,
            code=request.GET["code"],
            redirect_uri=absolutify(request, reverse("oidc_authentication_callback")),
            code_verifier=code_verifier or "",
            nonce=nonce,
            response_issuer=request.GET.get("iss"),
        )
        role = role_from_claims(identity_provider=identity_provider, claims=signed_in.claims)
        user = person_signed_in(
            identity_provider=identity_provider, claims=signed_in.claims, role=role
        )
        request.session[_ID_TOKEN_SESSION_KEY] = signed_in.id_token
        return user

    def get_user(self, user_id: Any) -> User | None:
        """Return the session's person while they may still sign in (as ModelBackend does):
        switching someone off ends the sessions they already have, not only their next sign-in."""
        user = User.objects.filter(pk=user_id).first()
        return user if user is not None and user.is_active else None


@require_POST
def sign_out(request: HttpRequest, payer_slug: str) -> HttpResponse:
    """End the hub session; then, when the provider offers it, its session too."""
    payer = get_object_or_404(Payer, slug=payer_slug)
    signed_in_here = isinstance(request.user, User) and request.user.payer_id == payer.pk
    id_token = str(request.session.get(_ID_TOKEN_SESSION_KEY, "")) if signed_in_here else ""
    logout(request)
    signed_out = request.build_absolute_uri(
        reverse("members:signed-out", kwargs={"payer_slug": payer.slug})
    )
    try:
        identity_provider = _identity_provider(payer)
        end_session = end_session_url(
            metadata=provider_metadata_current(identity_provider=identity_provider),
            client_id=identity_provider.client_id,
            id_token_hint=id_token,
            post_logout_redirect_uri=signed_out,
        )
    except (SignInNotSetUp, OidcError):
        # The hub session has ended; the provider's could not be reached to end it too.
        end_session = ""
    return HttpResponseRedirect(end_session or signed_out)
