"""Let demos and tests change the holder between two pulls: give a member new care
(``POST /sandbox/members/<username>/visits``), or withdraw an operation and offer it again
(``POST /sandbox/operations/<name>``)."""

from __future__ import annotations

import json

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


# The operations a test may withdraw: the ones whose loss changes how a client fetches.
WITHDRAWABLE_OPERATIONS = frozenset({"everything"})


def operation_offer(request: HttpRequest, name: str) -> HttpResponse:
    """Withdraw (``{"offered": false}``) or offer again (``{"offered": true}``) an operation;
    answer 200 with the operations withdrawn now."""
    if request.method != "POST":
        return operation_outcome(405, "not-supported", 'POST {"offered": true|false}')
    if name not in WITHDRAWABLE_OPERATIONS:
        return operation_outcome(
            404, "not-found", f"only {', '.join(sorted(WITHDRAWABLE_OPERATIONS))} can be withdrawn"
        )
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("offered"), bool):
        return operation_outcome(400, "invalid", 'send {"offered": true} or {"offered": false}')
    sandbox = current()
    if body["offered"]:
        sandbox.withdrawn_operations.discard(name)
    else:
        sandbox.withdrawn_operations.add(name)
    return JsonResponse({"withdrawn": sorted(sandbox.withdrawn_operations)})
