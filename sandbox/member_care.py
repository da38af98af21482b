"""Let demos and tests give a member new care, as a holder's record changes between two pulls
(``POST /sandbox/members/<username>/visits``)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse

from sandbox.fhir.outcomes import operation_outcome
from sandbox.runtime import current


def visit_add(request: HttpRequest, username: str) -> HttpResponse:
    """Record an office visit today for the member who signs in as ``username``; answer 201
    with the resources added (type, id, lastUpdated)."""
    if request.method != "POST":
        return operation_outcome(405, "not-supported", "POST to add a visit")
    sandbox = current()
    member = sandbox.population.by_username(username)
    if member is None:
        return operation_outcome(404, "not-found", f"no member signs in here as {username!r}")
    added = sandbox.visit_add(member)
    return JsonResponse(
        {
            "patient_id": member.patient_id,
            "added": [
                {
                    "resourceType": r["resourceType"],
                    "id": r["id"],
                    "lastUpdated": r["meta"]["lastUpdated"],
                }
                for r in added
            ],
        },
        status=201,
    )
