"""Map the sandbox payer's URLs (documented in sandbox/README.md) to views."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path, re_path

from sandbox.auth import views as auth_views
from sandbox.consent_subscriptions import views as subscription_views
from sandbox.fhir.outcomes import operation_outcome
from sandbox.fhir.views import fhir_endpoint
from sandbox.member_care import operation_offer, visit_add
from sandbox.member_list import members_json
from sandbox.oidc import views as oidc_views
from sandbox.runtime import current


def oidc_token(request: HttpRequest) -> HttpResponse:
    """Serve the shared token endpoint under the issuer, unless the IdP is down."""
    if current().config.faults.idp_down:
        return auth_views.idp_unavailable()
    return auth_views.token(request)


def oidc_register(request: HttpRequest) -> HttpResponse:
    """Serve RFC 7591 registration under the issuer, unless the IdP is down."""
    if current().config.faults.idp_down:
        return auth_views.idp_unavailable()
    return auth_views.register(request)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Answer unknown URLs with an OperationOutcome, not an HTML page."""
    return operation_outcome(404, "not-found", f"nothing is served at {request.path}")


handler404 = not_found

urlpatterns = [
    path("fhir/.well-known/smart-configuration", auth_views.smart_configuration),
    re_path(r"^fhir(?:/(?P<path>.*))?$", fhir_endpoint),
    path("auth/token", auth_views.token),
    path("auth/register", auth_views.register),
    path("auth/authorize", auth_views.authorize_smart),
    path(".well-known/openid-configuration", oidc_views.discovery),
    path("oidc/.well-known/openid-configuration", oidc_views.discovery),
    path("oidc/authorize", auth_views.authorize_oidc),
    path("oidc/token", oidc_token),
    path("oidc/register", oidc_register),
    path("oidc/userinfo", oidc_views.userinfo),
    path("oidc/jwks", oidc_views.jwks),
    path("sandbox/clients", auth_views.register_out_of_band),
    path("sandbox/members.json", members_json),
    path("sandbox/members/<str:username>/visits", visit_add),
    path("sandbox/operations/<str:name>", operation_offer),
    path("sandbox/client-jwks.json", subscription_views.client_jwks),
    path("sandbox/consent-notifications", subscription_views.consent_notifications),
    path("sandbox/consent-notifications.json", subscription_views.consent_notifications_json),
]
