"""What can go wrong talking OpenID Connect, sorted by what a person can do about it.

Every error says what happened in a sentence an administrator can read (``str(error)``)
and what they should check (``advice``). Neither ever carries a secret, a token or a
claim value about a person: they are shown on pages and written to logs.
"""


class OidcError(Exception):
    """An OpenID Connect step failed; ``str()`` says what, ``advice`` what to check."""

    def __init__(self, message: str, *, advice: str = "") -> None:
        super().__init__(message)
        self.advice = advice


class ProviderUnreachable(OidcError):
    """The provider could not be reached, or failed on its side (5xx): worth trying later."""


class ProviderMisconfigured(OidcError):
    """The provider answered, but not as the standards say, or not for this client."""


class IssuerMismatch(ProviderMisconfigured):
    """The discovery document names another issuer than the one configured (Discovery §4.3)."""


class MetadataIncomplete(ProviderMisconfigured):
    """The discovery document lacks an endpoint the hub needs (Discovery §3)."""


class KeySetInvalid(ProviderMisconfigured):
    """A JWK Set holds no key the hub can verify with (RFC 7517 §5)."""


class TokenRequestRefused(ProviderMisconfigured):
    """The token endpoint refused the request (RFC 6749 §5.2); ``error`` is its error code."""

    def __init__(self, message: str, *, error: str, advice: str = "") -> None:
        super().__init__(message, advice=advice)
        self.error = error


class IdentityNotConfirmed(OidcError):
    """A signed statement about the person (id_token, signed userinfo, assertion) was refused."""


class SigningKeyUnknown(IdentityNotConfirmed):
    """A token names a key (kid) the key set does not hold; a fresher key set may."""


class SignatureInvalid(IdentityNotConfirmed):
    """A JWT's signature does not verify with its signer's key: anyone could have sent it."""


class TokenExpired(IdentityNotConfirmed):
    """A JWT's exp has passed: whoever ever held a copy of it can present it again."""


class TokenForAnother(IdentityNotConfirmed):
    """A JWT's aud names another party: whoever it was sent to can present it here."""
