"""A provider's discovery document (OpenID Connect Discovery 1.0), cached briefly.

The issuer is compared exactly (§4.3): a provider configured as ``https://idp/`` must
announce ``https://idp/``, and one configured as ``https://idp`` must announce
``https://idp``; the hub never adds or strips a slash, because the id_token's ``iss``
must then match the very same string (OIDC Core §3.1.3.7 step 2).
"""

import hashlib
from dataclasses import dataclass, field
from typing import Any

from django.core.cache import cache

from hub.oidc.documents import json_document_fetch
from hub.oidc.errors import IssuerMismatch, MetadataIncomplete
from hub.outbound import PayerHttpClient

WELL_KNOWN_PATH = "/.well-known/openid-configuration"
# Long enough to spare the provider a request per sign-in, short enough that a change at
# the provider is seen soon; a cached copy that fails is re-read at once in any case.
DISCOVERY_CACHE_SECONDS = 10 * 60
# Discovery §3: what a relying party of the code flow cannot do without.
REQUIRED_METADATA = ("authorization_endpoint", "token_endpoint", "jwks_uri")
# Discovery §3: a provider that does not list token_endpoint_auth_methods_supported
# takes client_secret_basic.
DEFAULT_TOKEN_ENDPOINT_AUTH_METHODS = ("client_secret_basic",)


@dataclass(frozen=True)
class ProviderMetadata:
    """What the hub uses of a provider's discovery document (Discovery §3)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str = ""
    end_session_endpoint: str = ""
    token_endpoint_auth_methods: tuple[str, ...] = DEFAULT_TOKEN_ENDPOINT_AUTH_METHODS
    # Empty when the provider does not say (then it SHOULD take RS256, Discovery §3).
    token_endpoint_auth_signing_algs: tuple[str, ...] = ()
    # Whether this copy came from the cache (and so may be stale), not from the provider now.
    from_cache: bool = field(default=False, compare=False)


def discovery_url(issuer: str) -> str:
    """Return where ``issuer`` publishes its discovery document.

    Discovery §4.1: a terminating "/" of the issuer is removed before the well-known path
    is appended; the issuer itself stays as configured (§4.3).
    """
    return issuer.rstrip("/") + WELL_KNOWN_PATH


def _text(document: dict[str, Any], name: str) -> str:
    value = document.get(name)
    return value if isinstance(value, str) else ""


def _texts(document: dict[str, Any], name: str) -> tuple[str, ...] | None:
    value = document.get(name)
    if not isinstance(value, list):
        return None
    return tuple(item for item in value if isinstance(item, str))


def provider_metadata_parse(
    document: dict[str, Any], *, issuer: str, from_cache: bool = False
) -> ProviderMetadata:
    """Return the metadata of a discovery document fetched for ``issuer``; raise if unusable."""
    announced = document.get("issuer")
    if announced != issuer:
        raise IssuerMismatch(
            f"The discovery document names the issuer {announced!r}, but the settings say "
            f"{issuer!r}.",
            advice="Enter the issuer exactly as the discovery document announces it, with or "
            "without its trailing slash (OpenID Connect Discovery §4.3).",
        )
    missing = [name for name in REQUIRED_METADATA if not _text(document, name)]
    if missing:
        raise MetadataIncomplete(
            f"The discovery document does not give {', '.join(missing)}.",
            advice="The provider must publish these endpoints for the authorization code flow.",
        )
    return ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=_text(document, "authorization_endpoint"),
        token_endpoint=_text(document, "token_endpoint"),
        jwks_uri=_text(document, "jwks_uri"),
        userinfo_endpoint=_text(document, "userinfo_endpoint"),
        # OpenID Connect RP-Initiated Logout 1.0 §2.1.
        end_session_endpoint=_text(document, "end_session_endpoint"),
        token_endpoint_auth_methods=_texts(document, "token_endpoint_auth_methods_supported")
        or DEFAULT_TOKEN_ENDPOINT_AUTH_METHODS,
        token_endpoint_auth_signing_algs=_texts(
            document, "token_endpoint_auth_signing_alg_values_supported"
        )
        or (),
        from_cache=from_cache,
    )


def _cache_key(issuer: str) -> str:
    return "hub.oidc.discovery:" + hashlib.sha256(issuer.encode()).hexdigest()


def provider_metadata_read(
    *, issuer: str, http: PayerHttpClient, refresh: bool = False
) -> ProviderMetadata:
    """Return ``issuer``'s metadata: the cached copy, or (``refresh`` or none cached) a fresh one.

    Only a document that passes every check is cached, so a wrong answer is never kept.
    """
    key = _cache_key(issuer)
    if not refresh:
        cached = cache.get(key)
        if cached is not None:
            return provider_metadata_parse(cached, issuer=issuer, from_cache=True)
    document = json_document_fetch(http, discovery_url(issuer))
    metadata = provider_metadata_parse(document, issuer=issuer)
    cache.set(key, document, DISCOVERY_CACHE_SECONDS)
    return metadata
