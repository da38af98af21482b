"""Read a former payer's SMART configuration (SMART App Launch 2.x §Discovery).

``[base]/.well-known/smart-configuration`` names the authorization, token and (RFC 7591)
registration endpoints. A holder without it can still be used with the URLs its plan
administrators entered in the hub (``FhirEndpoint.authorize_url`` / ``token_url``).
"""

from dataclasses import dataclass

from exchange.fhir.client import FhirClient
from exchange.fhir.errors import FhirCallError, FhirPermanentError
from hub.models import FhirEndpoint
from hub.outbound import PayerHttpClient

WELL_KNOWN = ".well-known/smart-configuration"


@dataclass(frozen=True)
class SmartConfiguration:
    """The endpoints and features of one holder's authorization server."""

    token_endpoint: str
    authorization_endpoint: str = ""
    registration_endpoint: str = ""
    capabilities: tuple[str, ...] = ()
    discovered: bool = True

    @property
    def speaks_v2_scopes(self) -> bool:
        """Return whether the holder takes SMART v2 scopes (``.rs``) rather than v1 (``.read``)."""
        return "permission-v2" in self.capabilities or not self.capabilities


def _url(value: object) -> str:
    return value if isinstance(value, str) else ""


def smart_configuration_read(
    *, endpoint: FhirEndpoint, http: PayerHttpClient
) -> SmartConfiguration:
    """Return the holder's SMART configuration, or its configured URLs when it publishes none."""
    holder_name = endpoint.payer.name
    fhir = FhirClient(base_url=endpoint.base_url, holder_name=holder_name, http=http)
    try:
        document = fhir.read_json(WELL_KNOWN)
    except FhirCallError as exc:
        if exc.code != "not_found":
            raise
        document = None
    if document is None:
        if not endpoint.token_url:
            raise FhirPermanentError(
                f"{holder_name} publishes no SMART configuration at {endpoint.base_url}/{WELL_KNOWN}"
                " and no token URL is set in its FHIR endpoint settings.",
                code="no_smart_configuration",
            )
        return SmartConfiguration(
            token_endpoint=endpoint.token_url,
            authorization_endpoint=endpoint.authorize_url,
            discovered=False,
        )
    token_endpoint = _url(document.get("token_endpoint")) or endpoint.token_url
    if not token_endpoint:
        raise FhirPermanentError(
            f"{holder_name}'s SMART configuration names no token_endpoint.",
            code="no_token_endpoint",
        )
    capabilities = document.get("capabilities")
    return SmartConfiguration(
        token_endpoint=token_endpoint,
        authorization_endpoint=_url(document.get("authorization_endpoint"))
        or endpoint.authorize_url,
        registration_endpoint=_url(document.get("registration_endpoint")),
        capabilities=tuple(c for c in capabilities if isinstance(c, str))
        if isinstance(capabilities, list)
        else (),
    )
