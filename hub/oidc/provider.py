"""One OpenID Provider as the hub uses it: its metadata and its keys, cached briefly.

A cached copy can be stale: the provider rotated its signing key, or moved an endpoint.
So when a cached copy fails (a token names a kid the cached key set lacks; the token
endpoint of a cached document fails) it is read again once, straight from the provider.
"""

from typing import Any

from hub.oidc.discovery import ProviderMetadata, provider_metadata_read
from hub.oidc.errors import SigningKeyUnknown
from hub.oidc.keys import (
    ACCEPTED_SIGNING_ALGORITHMS,
    KeySet,
    jwt_header,
    jwt_verify,
    key_set_read,
)
from hub.outbound import PayerHttpClient


class OpenIdProvider:
    """The provider of ``issuer``, reached through ``http`` for one piece of work."""

    def __init__(self, *, issuer: str, http: PayerHttpClient) -> None:
        self.issuer = issuer
        self.http = http
        self._metadata: ProviderMetadata | None = None
        self._key_set: KeySet | None = None

    @property
    def metadata(self) -> ProviderMetadata:
        """Return the provider's metadata (from the cache when there is a copy)."""
        if self._metadata is None:
            self._metadata = provider_metadata_read(issuer=self.issuer, http=self.http)
        return self._metadata

    def refresh(self) -> bool:
        """Re-read the discovery document from the provider; return whether it had changed."""
        before = self._metadata
        self._metadata = provider_metadata_read(issuer=self.issuer, http=self.http, refresh=True)
        if before is not None and before.jwks_uri != self._metadata.jwks_uri:
            self._key_set = None
        return before != self._metadata

    def key_set(self) -> KeySet:
        """Return the provider's signing keys (from the cache when there is a copy)."""
        if self._key_set is None:
            self._key_set = key_set_read(url=self.metadata.jwks_uri, http=self.http)
        return self._key_set

    def _cached_copies_reread(self) -> bool:
        """Read metadata and keys afresh if either came from the cache; return whether they did."""
        if not (self.metadata.from_cache or self.key_set().from_cache):
            return False
        self.refresh()
        self._key_set = key_set_read(url=self.metadata.jwks_uri, http=self.http, refresh=True)
        return True

    def jwt_verify(
        self, token: str, *, what: str, audience: str, required: tuple[str, ...]
    ) -> dict[str, Any]:
        """Return the claims of a JWT the provider signed, checked against its keys and issuer.

        A kid the cached key set lacks is looked up once more in a fresh copy: providers
        rotate keys and publish the new one before signing with it (OIDC Core §10.1.1).
        """
        header = jwt_header(token, what=what)
        try:
            key = self.key_set().verification_key(
                header, algorithms=ACCEPTED_SIGNING_ALGORITHMS, what=what
            )
        except SigningKeyUnknown:
            if not self._cached_copies_reread():
                raise
            key = self.key_set().verification_key(
                header, algorithms=ACCEPTED_SIGNING_ALGORITHMS, what=what
            )
        return jwt_verify(
            token, key, what=what, audience=audience, issuer=self.issuer, required=required
        )
