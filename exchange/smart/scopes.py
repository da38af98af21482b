"""Scopes the hub asks a holder for beyond its endpoint's own (SPEC.md "Authorization")."""

PDEX = "http://hl7.org/fhir/us/davinci-pdex"
MATCH_RESULT_SYSTEM = f"{PDEX}/CodeSystem/PdexMultiMemberMatchResultCS"
# PDex STU 2.2 §pdex-142, bulk member match: the operation's URL (CamelCase since 2.2,
# FHIR-56185), and leave to update the matched Groups it creates.
BULK_MATCH_SCOPES = (
    f"{PDEX}/OperationDefinition/BulkMemberMatch",
    f"system/Group.u?code={MATCH_RESULT_SYSTEM}|match",
)
