"""A request's progress as a member follows it: a few steps, status names in plain words.

The state machine (exchange/state_machine.py) has sixteen states; a member sees six steps
and, for a request that stopped, why it stopped.
"""

from exchange.models import ExchangeStatus

S = ExchangeStatus

STEPS = (
    "Asked",
    "Finding you",
    "Collecting records",
    "Checking what may be shared",
    "Sending",
    "Delivered",
)
STEP_OF_STATUS: dict[str, int] = {
    S.CONSENTED: 0,
    S.AWAITING_AUTHORIZATION: 1,
    S.AUTHORIZED: 1,
    S.MATCHING: 1,
    S.MATCHED: 1,
    S.RETRIEVING: 2,
    S.SCREENING: 3,
    S.PACKAGING: 3,
    S.DELIVERING: 4,
    S.DELIVERED: 5,
}

# What the member reads in the status tag and hears when it changes.
STATUS_WORDS: dict[str, str] = {
    S.CONSENTED: "Asked",
    S.AWAITING_AUTHORIZATION: "Waiting for you to sign in",
    S.AUTHORIZED: "You allowed the transfer",
    S.MATCHING: "Finding you at your former plan",
    S.MATCHED: "Found you at your former plan",
    S.RETRIEVING: "Collecting your records",
    S.SCREENING: "Checking what may be shared",
    S.PACKAGING: "Checking what may be shared",
    S.DELIVERING: "Sending your records",
    S.DELIVERED: "Delivered",
    S.NO_MATCH: "Your former plan could not find you",
    S.CONSENT_CONSTRAINED: "Your former plan cannot honour your choice",
    S.AUTHORIZATION_DENIED: "The transfer was not allowed",
    S.FAILED: "Stopped by a problem",
    S.CANCELLED: "Cancelled by your plan",
    S.REVOKED: "You withdrew your consent",
}

# USWDS tag colours (utility classes); each keeps white text above 4.5:1 contrast.
_TAG_CLASSES: dict[str, str] = {
    S.DELIVERED: "bg-green",
    S.REVOKED: "bg-base-darkest",
    S.CANCELLED: "bg-base-darkest",
}
_STOPPED_TAG = "bg-secondary-dark"


def status_words(status: str) -> str:
    return STATUS_WORDS.get(status, status)


def status_tag_class(status: str) -> str:
    """Return the tag colour: green delivered, dark ended by a person, red stopped, grey running."""
    if status in _TAG_CLASSES:
        return _TAG_CLASSES[status]
    return "" if status in STEP_OF_STATUS else _STOPPED_TAG
