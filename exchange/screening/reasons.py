"""Why a resource did not leave the hub: stable codes for machines, sentences for people.

The codes appear in ``manifest.json`` and on the member's and the administrator's pages, so
they never change once shipped; a new rule gets a new code.
"""

from enum import StrEnum


class RemovalReason(StrEnum):
    """A rule that screened a resource out, by its stable code."""

    OUTSIDE_FIVE_YEARS = "outside-five-year-window"
    SENSITIVE_UNDER_REGULAR_CONSENT = "sensitive-under-regular-consent"
    PRIOR_AUTHORIZATION_DENIED = "prior-authorization-denied"
    PRIOR_AUTHORIZATION_DRUG = "prior-authorization-drug"
    PRIOR_AUTHORIZATION_NOT_CURRENT = "prior-authorization-not-current"

    @property
    def sentence(self) -> str:
        """Return what the rule did, in words a member understands."""
        return _SENTENCES[self]


_SENTENCES = {
    RemovalReason.OUTSIDE_FIVE_YEARS: (
        "Its date of service is more than five years before the request, "
        "so the rule does not cover it."
    ),
    RemovalReason.SENSITIVE_UNDER_REGULAR_CONSENT: (
        "It is marked as sensitive (for example mental health, substance use or HIV) "
        "and the member chose to share non-sensitive data only."
    ),
    RemovalReason.PRIOR_AUTHORIZATION_DENIED: (
        "It is a denied prior authorization; the rule excludes denied ones."
    ),
    RemovalReason.PRIOR_AUTHORIZATION_DRUG: (
        "It is a prior authorization for a drug; the rule excludes drug ones."
    ),
    RemovalReason.PRIOR_AUTHORIZATION_NOT_CURRENT: (
        "It is a prior authorization that is no longer active and whose status "
        "has not changed in the last 12 months."
    ),
}

# Resources that fail structural validation are not "removed" by a rule: they are kept in
# the hub's quarantine file and reported, under this code.
QUARANTINE_CODE = "invalid-resource"
QUARANTINE_SENTENCE = (
    "It is not a valid FHIR R4 resource; it was kept aside at the hub for review "
    "instead of being delivered."
)
