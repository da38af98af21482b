"""Call the hub's Consent endpoint as a SMART Backend Services client (seed 000 step 5).

The hub sends its Consent in ``$member-match`` with ``sourceReference`` = the Consent's URL
on its Consent endpoint, ``{HUB}/p/<new payer>/fhir/Consent/<id>``. That URL gives the FHIR
base to subscribe at (``{HUB}/p/<new payer>/fhir``) and the hub's token endpoint
(``{HUB}/fhir/auth/token``). Tokens come from ``client_credentials`` with a private_key_jwt
assertion (SMART App Launch 2.x, Backend Services: RS384, ``iss`` = ``sub`` = client id,
``aud`` = the token URL, ``exp`` at most five minutes ahead, a fresh ``jti``).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx

from sandbox.auth.backend_services import ASSERTION_TYPE
from sandbox.auth.keys import SigningKey

CONSENT_URL = re.compile(
    r"(?P<hub>https?://[^/?#@\s]+(?:/[^?#\s]*?)?)"
    r"/p/(?P<tenant>[A-Za-z0-9_-]+)/fhir/Consent/(?P<consent_id>[A-Za-z0-9.-]{1,64})"
)
HUB_SCOPES = "system/Consent.rs system/Subscription.cruds"
FHIR_JSON = "application/fhir+json"
ASSERTION_LIFETIME_S = 240
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class HubConsent:
    """A Consent on the hub's Consent endpoint, and the URLs derived from its address."""

    url: str
    hub: str
    tenant: str
    consent_id: str

    @property
    def fhir_base(self) -> str:
        """Return the FHIR base the Consent lives under (where Subscriptions are created)."""
        return f"{self.hub}/p/{self.tenant}/fhir"

    @property
    def token_url(self) -> str:
        """Return the hub's token endpoint (also the ``aud`` of client assertions)."""
        return f"{self.hub}/fhir/auth/token"


def hub_consent_of(reference: str) -> HubConsent | None:
    """Return the hub Consent a ``sourceReference`` names, or None if it names none."""
    found = CONSENT_URL.fullmatch(reference)
    if found is None:
        return None
    return HubConsent(url=reference, **found.groupdict())


class HubCallFailed(Exception):
    """A call to the hub failed; transient failures (network, 429, 5xx) are worth retrying."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def _failure(what: str, response: httpx.Response, *, idempotent: bool = True) -> HubCallFailed:
    try:
        body = response.json()
    except ValueError:
        body = {}
    detail = ""
    if isinstance(body, dict):
        issues = body.get("issue") or [{}]
        detail = str(body.get("error_description") or issues[0].get("diagnostics") or "")
    status = response.status_code
    # A 500 may come after the hub acted; only a request that is safe to repeat is retried then.
    retry_statuses = (429, 500, 502, 503, 504) if idempotent else (429, 502, 503, 504)
    return HubCallFailed(
        f"{what} answered HTTP {status}" + (f": {detail}" if detail else ""),
        transient=status in retry_statuses,
    )


def _json_object(what: str, response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise HubCallFailed(f"{what} did not answer with a JSON object", transient=False)
    return body


class HubClient:
    """This sandbox payer as a client of the hub: client id (its slug there) and RS384 key."""

    def __init__(self, *, client_id: str, key: SigningKey) -> None:
        self.client_id = client_id
        self.key = key

    def _request(
        self, method: str, url: str, *, idempotent: bool = True, **kwargs: Any
    ) -> httpx.Response:
        try:
            return httpx.request(method, url, timeout=TIMEOUT_S, **kwargs)
        except httpx.HTTPError as exc:
            # Repeating a create is safe only if the request never reached the hub.
            never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
            raise HubCallFailed(
                f"{method} {url} failed: {exc}", transient=idempotent or never_sent
            ) from None

    def access_token(self, consent: HubConsent) -> str:
        """Return a bearer token for the hub's Consent endpoint, or raise HubCallFailed."""
        now = int(time.time())
        assertion = self.key.sign(
            {
                "iss": self.client_id,
                "sub": self.client_id,
                "aud": consent.token_url,
                "iat": now,
                "exp": now + ASSERTION_LIFETIME_S,
                "jti": secrets.token_hex(16),
            }
        )
        response = self._request(
            "POST",
            consent.token_url,
            data={
                "grant_type": "client_credentials",
                "scope": HUB_SCOPES,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion,
            },
        )
        if response.status_code != 200:
            raise _failure(f"the hub's token endpoint {consent.token_url}", response)
        token = _json_object("the hub's token endpoint", response).get("access_token")
        if not isinstance(token, str) or not token:
            raise HubCallFailed("the hub's token response has no access_token", transient=False)
        return token

    def read_consent(self, consent: HubConsent, *, token: str) -> dict[str, Any]:
        """Return the Consent as the hub holds it now, or raise HubCallFailed."""
        response = self._request(
            "GET",
            consent.url,
            headers={"Authorization": f"Bearer {token}", "Accept": FHIR_JSON},
        )
        if response.status_code != 200:
            raise _failure(f"GET {consent.url}", response)
        resource = _json_object(f"GET {consent.url}", response)
        if resource.get("resourceType") != "Consent" or resource.get("id") != consent.consent_id:
            raise HubCallFailed(
                f"GET {consent.url} did not return Consent/{consent.consent_id}", transient=False
            )
        return resource

    def subscribe(
        self, consent: HubConsent, *, token: str, endpoint: str, secret: str, end: str | None
    ) -> tuple[str, dict[str, Any]]:
        """Create a rest-hook Subscription to the Consent; return its URL and resource.

        Seed 000 step 5: criteria ``Consent?_id=<id>``, the whole Consent posted to
        ``endpoint`` as application/fhir+json with our bearer secret in the header.
        """
        subscription: dict[str, Any] = {
            "resourceType": "Subscription",
            # FHIR R4 Subscription.status: a client asks with "requested"; the server activates.
            "status": "requested",
            "reason": "Stop disclosing when the member withdraws this consent",
            "criteria": f"Consent?_id={consent.consent_id}",
            "channel": {
                "type": "rest-hook",
                "endpoint": endpoint,
                "payload": FHIR_JSON,
                "header": [f"Authorization: Bearer {secret}"],
            },
        }
        if end:
            subscription["end"] = end
        url = f"{consent.fhir_base}/Subscription"
        response = self._request(
            "POST",
            url,
            idempotent=False,
            content=json.dumps(subscription),
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": FHIR_JSON,
                "Content-Type": FHIR_JSON,
            },
        )
        if response.status_code not in (200, 201):
            raise _failure(f"POST {url}", response, idempotent=False)
        created = _json_object(f"POST {url}", response)
        location = response.headers.get("Location") or f"{url}/{created.get('id', '')}"
        return location, created
