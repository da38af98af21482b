"""The sandbox's side of consent subscriptions over HTTP (README "Consent notifications").

``GET /sandbox/client-jwks.json``: the public key of its client assertions at the hub;
``POST /sandbox/consent-notifications``: the rest-hook endpoint its Subscriptions name;
``GET /sandbox/consent-notifications.json``: what it subscribed to and what it received.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse

from sandbox.fhir.outcomes import FhirError, error_response, operation_outcome
from sandbox.fhir.request_parsing import json_body, require_method
from sandbox.runtime import current


def client_jwks(request: HttpRequest) -> HttpResponse:
    """Return the JWKS the hub verifies this payer's client assertions with."""
    try:
        require_method(request, "GET")
    except FhirError as error:
        return error_response(error)
    return JsonResponse(current().client_key.jwks())


def consent_notifications(request: HttpRequest) -> HttpResponse:
    """Take one rest-hook notification: the Consent a Subscription of ours is about."""
    sandbox = current()
    try:
        require_method(request, "POST")
        scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
        subscription = (
            sandbox.consent_subscriber.subscription_for(secret.strip())
            if scheme.lower() == "bearer" and secret.strip()
            else None
        )
        if subscription is None:
            raise FhirError(
                401,
                "login",
                "a notification must carry the bearer secret of one of our Subscriptions",
                headers={"WWW-Authenticate": 'Bearer realm="sandbox-consent-notifications"'},
            )
        body = json_body(request) if request.body else None
        received = sandbox.consent_subscriber.notification_receive(subscription, body)
    except FhirError as error:
        return error_response(error)
    revoked = len(received.revoked_consents)
    return operation_outcome(
        200,
        "informational",
        f"notification for Consent/{received.consent_id} received"
        + (f"; {revoked} consent(s) held under it revoked" if revoked else ""),
        severity="information",
    )


def consent_notifications_json(request: HttpRequest) -> HttpResponse:
    """Return this payer's client identity at the hub, its Subscriptions and notifications."""
    try:
        require_method(request, "GET")
    except FhirError as error:
        return error_response(error)
    sandbox = current()
    return JsonResponse(
        {
            "hub_client_id": sandbox.config.hub_client_id,
            "client_jwks_url": sandbox.config.client_jwks_url,
            "notification_endpoint": sandbox.config.consent_notification_url,
        }
        | sandbox.consent_subscriber.published()
    )
