"""What can go wrong when the hub calls a former payer, sorted into retry or give up.

STYLE.md #6 (healthchecks ``TransportError(permanent=...)``): network faults, 429 and
5xx are transient and retried (honouring ``Retry-After``); bad credentials, other 4xx
and invalid data are permanent and fail the request with ``message``, a sentence a
member or a plan administrator can read and act on.
"""

from typing import Any

from hub.outbound import (
    ClientCertificateRefused,
    DestinationForbidden,
    OutboundError,
    ResponseTooLarge,
    TransportFailure,
)


class FhirCallError(Exception):
    """A call to a former payer's FHIR server or authorization server failed.

    ``code`` is stable (for reason codes and tests); ``message`` is for people;
    ``retry_after`` (seconds) says when trying again makes sense, when known;
    ``status`` is the HTTP status, when there was one; ``outcome`` the
    OperationOutcome the server sent, when it sent one.
    """

    permanent: bool = True

    def __init__(
        self,
        message: str,
        *,
        code: str,
        retry_after: float | None = None,
        status: int | None = None,
        outcome: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retry_after = retry_after
        self.status = status
        self.outcome = outcome


class FhirTransientError(FhirCallError):
    """Trying again later may succeed (network, 429, 5xx)."""

    permanent = False


class FhirPermanentError(FhirCallError):
    """Trying again will not help until someone changes something."""

    permanent = True


def outbound_failure(exc: OutboundError, *, holder_name: str) -> FhirCallError:
    """Return the FhirCallError of a failure of hub.outbound's client (no HTTP answer at all)."""
    if isinstance(exc, ClientCertificateRefused):
        # Mutual TLS (seed 002): only the payer's administrator can fix this, on the
        # integration page; retrying would be refused the same way.
        if not exc.presented:
            return FhirPermanentError(
                f"{holder_name} requires a client certificate (mutual TLS); upload your "
                "payer's certificate on the integration page.",
                code="client_certificate_required",
            )
        return FhirPermanentError(
            f"{holder_name} refused your payer's client certificate (mutual TLS, TLS alert "
            f"{exc.alert}); ask {holder_name} which certificate authorities it trusts, and "
            "upload a certificate issued by one of them on the integration page.",
            code="client_certificate_refused",
        )
    if isinstance(exc, TransportFailure):
        return FhirTransientError(
            f"{holder_name}'s server could not be reached ({exc}); the hub will try again.",
            code="network",
        )
    if isinstance(exc, ResponseTooLarge):
        return FhirPermanentError(
            f"{holder_name}'s server sent more data in one answer than the hub accepts ({exc}).",
            code="too_large",
        )
    if isinstance(exc, DestinationForbidden):
        return FhirPermanentError(
            f"The hub may not call {holder_name}'s server at that address: {exc}.",
            code="destination_forbidden",
        )
    return FhirPermanentError(f"Calling {holder_name}'s server failed: {exc}.", code="outbound")
