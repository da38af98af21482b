"""The cohort manifest: every member's outcome, and where its files went."""

from datetime import UTC, datetime
from typing import Any

from exchange.fhir.instants import fhir_instant
from exchange.models import (
    Cohort,
    CohortMember,
    Delivery,
    ExchangeStatus,
)

S = ExchangeStatus


def cohort_manifest(cohort: Cohort) -> dict[str, Any]:
    """Return the cohort manifest: every member's outcome, and where its files went."""
    rows = (
        CohortMember.objects.for_payer(cohort.payer_id)
        .filter(cohort=cohort)
        .select_related("exchange_request", "exchange_request__member")
        .order_by("line")
    )
    deliveries = {
        d.exchange_request_id: d
        for d in Delivery.objects.for_payer(cohort.payer_id).filter(
            exchange_request__cohort_member__cohort=cohort
        )
    }
    members = []
    outcomes: dict[str, int] = {}
    for row in rows.iterator(chunk_size=1000):
        request = row.exchange_request
        outcomes[request.status] = outcomes.get(request.status, 0) + 1
        entry: dict[str, Any] = {
            "line": row.line,
            "memberId": request.member.plan_member_id,
            "requestId": request.pk,
            "status": request.status,
            "matchOutcome": row.match_outcome or None,
        }
        if request.reason_code:
            entry["reason"] = {"code": request.reason_code, "message": request.reason_message}
        delivery = deliveries.get(request.pk)
        if delivery is not None and request.status == S.DELIVERED:
            entry["folder"] = delivery.remote_directory
            entry["files"] = [*delivery.manifest.get("files", []), {"name": "manifest.json"}]
        members.append(entry)
    return {
        "cohortId": cohort.pk,
        "name": cohort.name,
        "generatedAt": fhir_instant(datetime.now(UTC)),
        "newPayer": {"name": cohort.payer.name, "npi": cohort.payer.npi},
        "formerPayer": {"name": cohort.former_payer.name, "npi": cohort.former_payer.npi},
        "path": cohort.path,
        "memberCount": len(members),
        "outcomes": dict(sorted(outcomes.items())),
        "members": members,
    }
