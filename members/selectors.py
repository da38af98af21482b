"""What a member may read: their own requests and consents at their own payer (STYLE.md #1, #2)."""

from django.db.models import QuerySet

from exchange.models import Consent, Delivery, ExchangeEvent, ExchangeRequest
from exchange.state_machine import ENDED
from hub.models import Payer, User
from hub.tenancy import get_for_payer_or_404


def member_requests(*, payer: Payer, member: User) -> QuerySet[ExchangeRequest]:
    """Return the member's requests, newest first, with their former payers."""
    return (
        ExchangeRequest.objects.for_payer(payer)
        .filter(member=member)
        .select_related("former_payer")
        .order_by("-opted_in_at")
    )


def member_request(*, payer: Payer, member: User, request_id: int) -> ExchangeRequest:
    """Return one of the member's requests; anything else is a 404."""
    return get_for_payer_or_404(
        ExchangeRequest.objects.select_related("former_payer", "consent"),
        payer,
        pk=request_id,
        member=member,
    )


def member_request_timeline(*, exchange_request: ExchangeRequest) -> QuerySet[ExchangeEvent]:
    return ExchangeEvent.objects.for_payer(exchange_request.payer_id).filter(
        exchange_request=exchange_request
    )


def member_consent(*, payer: Payer, member: User, consent_id: int) -> Consent:
    """Return one of the member's consents; anything else is a 404."""
    return get_for_payer_or_404(Consent.objects.all(), payer, pk=consent_id, member=member)


def member_request_progress(*, exchange_request: ExchangeRequest) -> dict[str, object]:
    """Return what the status page shows, as JSON-ready data (polled while work runs)."""
    delivery = (
        Delivery.objects.for_payer(exchange_request.payer_id)
        .filter(exchange_request=exchange_request)
        .first()
    )
    manifest = delivery.manifest if delivery else {}
    return {
        "status": exchange_request.status,
        "status_label": exchange_request.get_status_display(),
        "ended": exchange_request.status in ENDED,
        "reason": exchange_request.reason_message,
        "fetched": sum(exchange_request.resource_counts.values()),
        "resource_counts": exchange_request.resource_counts,
        "screened_out": manifest.get("screenedOut", []),
        "files": [{"name": f["name"], "size": f["size"]} for f in manifest.get("files", [])],
        "kept_counts": manifest.get("resourceCounts", {}),
        "events": [
            {"at": event.created_at.isoformat(), "message": event.message}
            for event in member_request_timeline(exchange_request=exchange_request)
        ],
    }
