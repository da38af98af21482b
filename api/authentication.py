"""Payer systems sign in with the hub's SMART Backend Services access tokens; scopes gate
each capability (exchange/consents/endpoint/auth.py issues both).

A token names one payer, and that payer is the tenant of every call made with it: there
is no payer in the URL to get wrong, and every read and action is scoped to it (STYLE.md
#2). A missing, expired or foreign token is a 401; a token without the operation's scope
is a 403.
"""

from dataclasses import dataclass
from typing import Any, ClassVar

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from exchange.consents.endpoint.auth import PAYER_API_SCOPES, ClientRefused, access_token_check
from hub.models import Payer


@dataclass(frozen=True)
class PayerSystem:
    """The payer system a token was issued to, and the scopes it was granted."""

    payer: Payer
    scopes: frozenset[str]

    # DRF's IsAuthenticated and throttles read request.user.is_authenticated.
    is_authenticated = True

    @property
    def actor_label(self) -> str:
        """How audit events name this system: its client id (the payer's slug)."""
        return f"payer-system:{self.payer.slug}"


class PayerSystemAuthentication(BaseAuthentication):
    """``Authorization: Bearer <access token from /fhir/auth/token>``."""

    def authenticate(self, request: Request) -> tuple[PayerSystem, PayerSystem] | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        try:
            payer, scopes = access_token_check(token.strip())
        except ClientRefused as exc:
            raise exceptions.AuthenticationFailed(exc.description) from None
        system = PayerSystem(payer=payer, scopes=frozenset(scopes))
        return system, system

    def authenticate_header(self, request: Request) -> str:
        # RFC 6750 §3: the challenge makes a refusal a 401 rather than a 403.
        return 'Bearer realm="payer-hub"'


def payer_system(request: Request) -> PayerSystem:
    """Return the payer system of an authenticated request."""
    system = request.auth
    if not isinstance(system, PayerSystem):
        raise exceptions.NotAuthenticated()
    return system


class ScopeRequired(BasePermission):
    """Let through a token granted ``scope``; a 403 naming the scope otherwise."""

    scope: ClassVar[str]
    message = "This token lacks the operation's scope."

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.scope not in PAYER_API_SCOPES:
            raise ValueError(f"{cls.scope} is not a scope the token endpoint grants")
        cls.message = f"This token lacks the scope {cls.scope}; ask the token endpoint for it."

    def has_permission(self, request: Request, view: Any) -> bool:
        system = request.auth
        return isinstance(system, PayerSystem) and self.scope in system.scopes


class OptInsWrite(ScopeRequired):
    scope = "hub/opt-ins.write"


class OptInsRead(ScopeRequired):
    scope = "hub/opt-ins.read"


class RequestsRead(ScopeRequired):
    scope = "hub/requests.read"


class DeliveriesRead(ScopeRequired):
    scope = "hub/deliveries.read"


class CohortsWrite(ScopeRequired):
    scope = "hub/cohorts.write"


class CohortsRead(ScopeRequired):
    scope = "hub/cohorts.read"
