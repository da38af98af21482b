"""Decide what a bearer token may reach: scopes, its patient, or members matched under consent."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest

from sandbox.auth.scopes import grants
from sandbox.auth.tokens import CONTEXT_PATIENT, CONTEXT_SYSTEM, Grant
from sandbox.fhir.consents import POLICY_REGULAR, consent_problem
from sandbox.fhir.outcomes import FhirError
from sandbox.runtime import MemberRecord, Sandbox


@dataclass(frozen=True)
class MemberAccess:
    """A member the caller may see, and whether sensitive data is withheld from it."""

    record: MemberRecord
    withhold_sensitive: bool


def bearer_grant(request: HttpRequest, sandbox: Sandbox) -> Grant:
    """Return the grant of the request's bearer token, or raise 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="sandbox"'}
    if scheme.lower() != "bearer" or not token.strip():
        raise FhirError(401, "login", "a bearer access token is required", headers=challenge)
    grant = sandbox.tokens.lookup(token.strip())
    if grant is None:
        challenge["WWW-Authenticate"] += ', error="invalid_token"'
        raise FhirError(401, "login", "the access token is unknown or expired", headers=challenge)
    if grant.context not in (CONTEXT_SYSTEM, CONTEXT_PATIENT):
        raise FhirError(403, "forbidden", "this token carries no FHIR scopes")
    return grant


def require_scope(grant: Grant, resource_type: str, permission: str) -> None:
    """Raise 403 unless grant's scopes allow permission ('r' read, 's' search) on the type."""
    if not grants(grant.scopes, grant.context, resource_type, permission):
        action = {"r": "read", "s": "search"}.get(permission, permission)
        raise FhirError(
            403,
            "forbidden",
            f"the token's scopes ({grant.scope_text}) do not allow {action} of {resource_type}",
        )


def member_access(
    sandbox: Sandbox, grant: Grant, patient_id: str, *, cached: bool = True
) -> MemberAccess:
    """Return the caller's access to a member, or raise 404 (unknown to it) / 403 (consent).

    cached=False generates the record without keeping it (a bulk export reads each
    member once and should not evict the records interactive reads keep coming back to).
    """
    record_of = sandbox.record if cached else sandbox.build_record
    unknown = FhirError(404, "not-found", f"Patient/{patient_id} is not known")
    if grant.context == CONTEXT_PATIENT:
        if grant.patient_id != patient_id:
            raise unknown
        record = sandbox.record(patient_id)
        if record is None:
            raise unknown
        return MemberAccess(record=record, withhold_sensitive=False)
    consent = sandbox.consents.for_client(grant.client_id, patient_id)
    record = record_of(patient_id) if consent else None
    if consent is None or record is None:
        raise unknown
    # HRex consent evaluation is repeated at every data request, not only at match time.
    problem = consent_problem(
        consent,
        client=sandbox.clients.get(grant.client_id),
        today=sandbox.today(),
        can_segment=sandbox.config.can_segment,
    )
    if problem:
        raise FhirError(403, "forbidden", f"the consent no longer allows access: {problem}")
    return MemberAccess(record=record, withhold_sensitive=consent.policy == POLICY_REGULAR)


def visible_patient_ids(sandbox: Sandbox, grant: Grant) -> list[str]:
    """Return the ids of every member the caller may currently see."""
    if grant.context == CONTEXT_PATIENT:
        return [grant.patient_id] if grant.patient_id else []
    visible = []
    for patient_id in sandbox.consents.patients_of(grant.client_id):
        try:
            member_access(sandbox, grant, patient_id)
        except FhirError:
            continue
        visible.append(patient_id)
    return visible
