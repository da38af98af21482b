"""The administrator's words for the codes the engine stores: one mapping for every page.

The request list, its filter, the detail page, the charts and the CSV export all name a
status, a reason or a delivery mode through these functions, so they never disagree. The
codes themselves stay stable (they are in audit records and manifests) and are shown only
as secondary text.
"""

from django.db import models

from exchange.models import BulkJobKind, BulkJobState, CohortStatus, ExchangeStatus, MatchOutcome
from exchange.screening.reasons import QUARANTINE_CODE, RemovalReason
from exchange.state_machine import ENDED
from hub.models import DeliveryMode

# Why a request ended or failed, by the reason code the engine stored (exchange/*.py).
_REASONS = {
    "authorization_denied": "The member declined to authorize at the former payer",
    "authorization_expired": "The member's authorization expired",
    "authorization_server_unavailable": "The former payer's authorization server was unavailable",
    "backend_services_not_offered": "The former payer does not offer SMART Backend Services",
    "cancelled_by_payer": "Cancelled by an administrator",
    "client_refused": "The former payer refused the hub's client credentials",
    "consent_inactive": "The member's consent is no longer active",
    "consent_not_honoured": "The former payer cannot honour the member's consent",
    "consent_withdrawn": "Member withdrew consent",
    "destination_forbidden": "The destination address is not allowed",
    "forbidden": "The former payer refused access (403)",
    "foreign_link": "The former payer's paging link pointed to another server",
    "gave_up_retrying": "Gave up after repeated temporary failures",
    "interrupted": "The transfer was interrupted",
    "invalid_match_request": "The former payer rejected the member-match request",
    "malformed_bundle": "The former payer returned an invalid FHIR bundle",
    "malformed_json": "The former payer returned invalid JSON",
    "malformed_match_answer": "The former payer's member-match answer was invalid",
    "malformed_token": "The former payer returned an invalid access token",
    "member_authorization_not_offered": "The former payer does not offer member sign-in",
    "member_demographics_invalid": "The member's demographics are invalid",
    "member_demographics_missing": "The member's demographics are incomplete",
    "multiple_matches": "Several members matched at the former payer",
    "network": "The former payer could not be reached",
    "no_authorization_endpoint": "The former payer publishes no authorization endpoint",
    "no_client": "The hub has no client registered at the former payer",
    "no_endpoint": "The former payer has no FHIR endpoint",
    "no_match": "Member not found at the former payer",
    "no_patient": "The former payer returned no patient record",
    "no_retrieval_method": "No way to retrieve the records (no member sign-in nor backend access)",
    "no_smart_configuration": "The former payer publishes no SMART configuration",
    "no_token_endpoint": "The former payer publishes no token endpoint",
    "not_authorized": "The former payer refused the access token",
    "not_found": "The former payer answered 'not found'",
    "outbound": "The hub refused to connect to that address",
    "paging_loop": "The former payer's pages looped",
    "patient_missing": "The former payer returned no patient",
    "redirect_uri_mismatch": "The former payer does not accept the hub's redirect URI",
    "rejected": "The destination rejected the delivery",
    "state_expired": "The member's sign-in took too long",
    "state_unknown": "The member's sign-in could not be matched to the request",
    "state_used": "The member's sign-in link was used twice",
    "stopped": "The hub stopped the transfer",
    "stuck": "The request made no progress and was stopped",
    "throttled": "The former payer kept refusing for too many requests (429)",
    "too_large": "The former payer's answer was too large",
    "unauthorized": "The former payer refused the credentials (401)",
    "unavailable": "The former payer was unavailable",
    "wrong_bundle_type": "The former payer returned the wrong kind of bundle",
    "wrong_resource_type": "The former payer returned the wrong resource type",
}

_REMOVAL_REASONS = {
    RemovalReason.OUTSIDE_FIVE_YEARS: "Date of service more than five years back",
    RemovalReason.SENSITIVE_UNDER_REGULAR_CONSENT: "Sensitive, and the member shares non-sensitive data only",
    RemovalReason.PRIOR_AUTHORIZATION_DENIED: "Denied prior authorization",
    RemovalReason.PRIOR_AUTHORIZATION_DRUG: "Prior authorization for a drug",
    RemovalReason.PRIOR_AUTHORIZATION_NOT_CURRENT: "Prior authorization no longer current",
    QUARANTINE_CODE: "Not a valid FHIR R4 resource (kept aside for review)",
}  # fmt: skip

# How a status looks as a tag: delivered, ended without data, failed, or under way.
_SUCCESS = {ExchangeStatus.DELIVERED}
_PROBLEMS = {ExchangeStatus.FAILED}


def _spelled_out(code: str) -> str:
    """Return a code nobody has named yet as words, rather than as a bare code."""
    words = code.replace("_", " ").replace("-", " ").strip()
    return words[:1].upper() + words[1:]


def _choice_label(choices: type[models.TextChoices], code: str) -> str:
    """Return the label of ``code`` among ``choices``, or the code in words."""
    labels: dict[str, str] = dict(choices.choices)
    return labels.get(code, _spelled_out(code))


def status_label(status: str) -> str:
    """Return a request status as the administrator reads it everywhere."""
    return _choice_label(ExchangeStatus, status)


def status_tone(status: str) -> str:
    """Return how the status's tag is coloured: success, problem, ended or active."""
    if status in _SUCCESS:
        return "success"
    if status in _PROBLEMS:
        return "problem"
    return "ended" if status in ENDED else "active"


def reason_label(code: str) -> str:
    """Return why a request stopped where it did, in words (empty for no reason)."""
    if not code:
        return ""
    return _REASONS.get(code, _spelled_out(code))


def removal_reason_label(code: str) -> str:
    """Return why resources were screened out (exchange/screening/reasons.py), in words."""
    return _REMOVAL_REASONS.get(code, _spelled_out(code))


def delivery_mode_label(mode: str) -> str:
    """Return how a delivery reaches the payer, in words."""
    return _choice_label(DeliveryMode, mode)


def match_outcome_label(code: str) -> str:
    """Return the Group the former payer put a cohort member in, in words ("" before)."""
    return _choice_label(MatchOutcome, code) if code else ""


def cohort_status_label(status: str) -> str:
    return _choice_label(CohortStatus, status)


def cohort_status_tone(status: str) -> str:
    if status == CohortStatus.COMPLETED:
        return "success"
    return "ended" if status == CohortStatus.CANCELLED else "active"


def bulk_job_kind_label(kind: str) -> str:
    return _choice_label(BulkJobKind, kind)


def bulk_job_state_label(state: str) -> str:
    return _choice_label(BulkJobState, state)


def bulk_job_state_tone(state: str) -> str:
    if state == BulkJobState.DONE:
        return "success"
    if state == BulkJobState.FAILED:
        return "problem"
    return "ended" if state == BulkJobState.CANCELLED else "active"
