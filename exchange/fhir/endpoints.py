"""Find the FHIR endpoint a former payer configured as a data holder."""

from exchange.fhir.errors import FhirPermanentError
from hub.models import FhirEndpoint, Payer


def holder_endpoint_get(*, former_payer: Payer) -> FhirEndpoint:
    """Return the former payer's FHIR endpoint, or fail saying it has none yet.

    The endpoint belongs to the former payer's tenant; the engine reads it on behalf
    of the new payer's request, never shows it to the new payer.
    """
    endpoint = FhirEndpoint.objects.for_payer(former_payer).first()
    if endpoint is None:
        raise FhirPermanentError(
            f"{former_payer.name} has not set up its FHIR endpoint in the hub yet.",
            code="no_endpoint",
        )
    return endpoint
