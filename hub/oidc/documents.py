"""Read a provider's documents (discovery, JWKS, userinfo) through the one vetted client.

Failures are sorted as STYLE.md #6 asks: the network or a 5xx is ``ProviderUnreachable``
(try later); any other wrong answer is ``ProviderMisconfigured`` (someone must fix it).
"""

from typing import Any

import httpx

from hub.json_input import JsonInputRefused, json_input_load
from hub.oidc.errors import ProviderMisconfigured, ProviderUnreachable
from hub.outbound import OutboundError, PayerHttpClient

# Discovery documents, key sets and userinfo answers are small; a megabyte is generous
# and keeps a wrong URL from streaming a large file into memory.
OIDC_MAX_RESPONSE_BYTES = 1024 * 1024


def oidc_http_client() -> PayerHttpClient:
    """Return the outbound client for calls to identity providers and key sets."""
    return PayerHttpClient(max_response_bytes=OIDC_MAX_RESPONSE_BYTES)


def provider_request(http: PayerHttpClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """Send a request to a provider; return its answer unless it failed to come (or was a 5xx)."""
    try:
        response = http.request(method, url, **kwargs)
    except OutboundError as exc:
        error = ProviderMisconfigured if exc.permanent else ProviderUnreachable
        raise error(
            f"Could not reach {url}: {exc}",
            advice="Check the URL, and that the provider is up and reachable from the hub.",
        ) from exc
    if response.status_code >= 500:
        raise ProviderUnreachable(
            f"{url} answered HTTP {response.status_code} instead of 200.",
            advice="The provider failed on its side; try again later, or ask its operators.",
        )
    return response


def document_get(
    http: PayerHttpClient, url: str, *, headers: dict[str, str] | None = None
) -> httpx.Response:
    """GET ``url`` and return its 200 answer; raise why not otherwise."""
    response = provider_request(
        http, "GET", url, headers={"Accept": "application/json", **(headers or {})}
    )
    if response.status_code != 200:
        raise ProviderMisconfigured(f"{url} answered HTTP {response.status_code} instead of 200.")
    return response


def json_object(response: httpx.Response) -> dict[str, Any]:
    """Return the JSON object a response carries; raise ProviderMisconfigured otherwise."""
    try:
        body = json_input_load(response.content, what=f"The answer of {response.url}")
    except JsonInputRefused as exc:
        if exc.not_json:
            raise ProviderMisconfigured(f"{response.url} did not answer with JSON.") from None
        raise ProviderMisconfigured(str(exc)) from None
    if not isinstance(body, dict):
        raise ProviderMisconfigured(f"{response.url} answered JSON, but not an object.")
    return body


def json_document_fetch(http: PayerHttpClient, url: str) -> dict[str, Any]:
    """GET ``url`` and return the JSON object it answers with; raise why not otherwise."""
    return json_object(document_get(http, url))
