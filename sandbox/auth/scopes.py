"""Parse SMART App Launch 2.x scopes (v1 `.read` and v2 `.rs` forms) and check them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_RESOURCE_SCOPE = re.compile(
    r"^(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]+)\.(?P<perm>read|write|\*|c?r?u?d?s?)$"
)
# SMART 2 §Scopes: v1 "read" is v2 "rs", v1 "write" is "cud", "*" is all.
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
PATIENT_LAUNCH_SCOPES = frozenset(
    {"launch/patient", "openid", "fhirUser", "profile", "offline_access", "online_access"}
)
OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
MATCH_RESULT_SYSTEM = "http://hl7.org/fhir/us/davinci-pdex/CodeSystem/PdexMultiMemberMatchResultCS"
# PDex STU 2.2 §Bulk member match: the operation's URL, or leave to update matched Groups.
BULK_MEMBER_MATCH_SCOPES = frozenset(
    {
        "http://hl7.org/fhir/us/davinci-pdex/OperationDefinition/BulkMemberMatch",
        f"system/Group.u?code={MATCH_RESULT_SYSTEM}|match",
    }
)


@dataclass(frozen=True)
class ResourceScope:
    """One parsed resource scope such as system/*.rs."""

    context: str
    resource_type: str
    permissions: frozenset[str]

    def allows(self, context: str, resource_type: str, permission: str) -> bool:
        """Return whether this scope grants permission on resource_type in context."""
        return (
            self.context == context
            and self.resource_type in ("*", resource_type)
            and permission in self.permissions
        )


def parse_resource_scope(scope: str) -> ResourceScope | None:
    """Return the parsed resource scope, or None for anything else (incl. granular v2 queries)."""
    match = _RESOURCE_SCOPE.match(scope)
    if not match or not match.group("perm"):
        return None
    perm = match.group("perm")
    return ResourceScope(
        context=match.group("context"),
        resource_type=match.group("type"),
        permissions=frozenset(_V1.get(perm, perm)),
    )


def split_scopes(text: str | None) -> list[str]:
    """Return the scopes of a space-separated scope parameter, in order, without repeats."""
    seen: list[str] = []
    for scope in (text or "").split():
        if scope not in seen:
            seen.append(scope)
    return seen


def grants(scopes: Iterable[str], context: str, resource_type: str, permission: str) -> bool:
    """Return whether any scope grants permission on resource_type in context."""
    for scope in scopes:
        parsed = parse_resource_scope(scope)
        if parsed and parsed.allows(context, resource_type, permission):
            return True
    return False


def is_grantable_to_system_client(scope: str) -> bool:
    """Return whether a backend-services client may be granted scope."""
    parsed = parse_resource_scope(scope)
    return scope in BULK_MEMBER_MATCH_SCOPES or (parsed is not None and parsed.context == "system")


def allows_bulk_member_match(scopes: Iterable[str]) -> bool:
    """Return whether scopes allow Group/$bulk-member-match (PDex STU 2.2)."""
    scopes = list(scopes)
    return bool(BULK_MEMBER_MATCH_SCOPES.intersection(scopes)) or grants(
        scopes, "system", "Group", "u"
    )
