"""What the exchange's pages read about a request, whoever shows it (STYLE.md #1, #13)."""

from typing import Any

from exchange.models import Delivery, ExchangeRequest


def exchange_request_manifest(*, exchange_request: ExchangeRequest) -> dict[str, Any]:
    """Return the request's delivery manifest, or an empty one before packaging."""
    delivery = (
        Delivery.objects.for_payer(exchange_request.payer_id)
        .filter(exchange_request=exchange_request)
        .first()
    )
    return delivery.manifest if delivery else {}


def exchange_request_record_counts(
    *, exchange_request: ExchangeRequest, manifest: dict[str, Any]
) -> dict[str, int]:
    """Return the request's records by FHIR type, as every page must show them.

    Once packaged, the manifest's counts: what screening kept plus the hub's own Provenance
    of the package (exchange/packaging.py), so a page agrees with the delivered manifest.
    Before that, what has arrived from the former payer so far.
    """
    counts: dict[str, int] = manifest.get("resourceCounts") or exchange_request.resource_counts
    return counts
