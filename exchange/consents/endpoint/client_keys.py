"""The keys payers' systems sign client assertions with, read from their JWKS URLs.

A copy is kept for as long as an access token lives: a key the payer withdraws stops
working within that time, as the tokens it already obtained do, and a flood of refused
assertions for one client is answered from the copy instead of becoming a flood of
fetches at the payer (issue 15). A kid the copy lacks is looked up in a fresh copy, so a
key the payer rotates in works at once (SMART App Launch 2.x, Backend Services
§Authenticating; as OIDC Core §10.1.1 does for providers: publish first, then sign); but
at most once a minute per key set, since anyone may send assertions naming any kid: a
flood of made-up kids costs the payer one fetch a minute, and a key rotated in meanwhile
works when that minute is up.
"""

import hashlib
from typing import Any

import jwt
from django.core.cache import cache

from hub.oidc.documents import oidc_http_client
from hub.oidc.errors import SigningKeyUnknown
from hub.oidc.keys import BACKEND_SERVICES_ALGORITHMS, key_set_read

# As long as the hub's access tokens (auth.py ACCESS_TOKEN_SECONDS).
CLIENT_JWKS_CACHE_SECONDS = 300
# The least time between two fresh reads of one key set for kids its copy lacks.
CLIENT_JWKS_REFRESH_SECONDS = 60


def _refresh_claimed(url: str) -> bool:
    """Return whether this process may read ``url`` afresh now, and if so hold the next off.

    The mark is kept in the cache the copy is kept in (each process's own): a process
    whose copy was refreshed is the one that waits, and one whose copy is older is not.
    """
    mark = "exchange.client-jwks.refreshed:" + hashlib.sha256(url.encode()).hexdigest()
    return cache.add(mark, True, CLIENT_JWKS_REFRESH_SECONDS)


def client_verification_key(*, url: str, header: dict[str, Any]) -> jwt.PyJWK:
    """Return the key at ``url`` that verifies a client assertion with this JOSE ``header``.

    Raises the errors of hub/oidc: ProviderUnreachable or ProviderMisconfigured when the
    JWKS cannot be read, IdentityNotConfirmed (SigningKeyUnknown) when no key fits.
    """
    with oidc_http_client() as http:
        key_set = key_set_read(url=url, http=http, cache_seconds=CLIENT_JWKS_CACHE_SECONDS)
        try:
            return key_set.verification_key(
                header, algorithms=BACKEND_SERVICES_ALGORITHMS, what="client assertion"
            )
        except SigningKeyUnknown:
            if not key_set.from_cache or not _refresh_claimed(url):
                raise
        key_set = key_set_read(
            url=url, http=http, refresh=True, cache_seconds=CLIENT_JWKS_CACHE_SECONDS
        )
    return key_set.verification_key(
        header, algorithms=BACKEND_SERVICES_ALGORITHMS, what="client assertion"
    )
