"""The consent rule: under a ``#regular`` consent no sensitive-labelled resource leaves.

HRex STU 1.2 Consent, ``policy[0].uri`` ``...hrex-consent.html#regular``: only non-sensitive
data may be shared; ``#sensitive``: everything may be. The data holder recognises sensitive
data by the security labels in ``meta.security`` (SPEC.md, "Consent": "resources labelled
in ``meta.security`` with ``v3-ActCode`` codes such as ETH, HIV, PSY, SDV, SEX, STD, or
42 CFR Part 2 data"). The hub applies the same test again before anything leaves it, so a
former payer that answered a ``#regular`` request with everything is still held to it.

The labels that mark a resource sensitive are in ``SENSITIVE_LABELS`` (HL7 Healthcare
Privacy and Security Classification System, as FHIR R4 §6.1.0.8 "Security Labels" uses it).
A label without a ``system`` whose code is a sensitivity code counts too: under ``#regular``
a doubt is resolved by withholding.
"""

from typing import Any

from exchange.models import ConsentPolicy
from exchange.screening.reasons import RemovalReason

Resource = dict[str, Any]

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ACT_CODE_OID = "urn:oid:2.16.840.1.113883.5.4"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
CONFIDENTIALITY_OID = "urn:oid:2.16.840.1.113883.5.25"
US_PRIVACY_LAW = "http://terminology.hl7.org/CodeSystem/v3-ActUSPrivacyLaw"

SENSITIVE_LABELS: dict[str | None, frozenset[str]] = {
    # v3-ActCode _ActInformationSensitivityPolicy (value set
    # v3-ActInformationSensitivityPolicy): the six SPEC.md names (ETH substance use, HIV,
    # PSY psychiatry, SDV sexual assault / abuse / domestic violence, SEX sexuality and
    # reproductive health, STD) and their neighbours of the same kind (BH behavioral health,
    # ETHUD alcohol use disorder, OPIOIDUD opioid use disorder, SUD substance use disorder,
    # PSYTHPN psychotherapy note, MST military sexual trauma, GDIS genetic disease, SCA
    # sickle cell, TBOO taboo), plus the 42 CFR Part 2 indicators carried in ActCode:
    # 42CFRPart2 (_ActPrivacyLaw) and NORDSCLCD / NORDSCLCDS (no redisclosure without the
    # patient's consent directive, the Part 2 refrain policy).
    ACT_CODE: frozenset(
        [
            "ETH",
            "HIV",
            "PSY",
            "SDV",
            "SEX",
            "STD",
            "BH",
            "ETHUD",
            "OPIOIDUD",
            "SUD",
            "PSYTHPN",
            "MST",
            "GDIS",
            "SCA",
            "TBOO",
            "42CFRPart2",
            "NORDSCLCD",
            "NORDSCLCDS",
        ]
    ),
    # v3-ActUSPrivacyLaw, the older home of the 42 CFR Part 2 code (now in ActCode).
    US_PRIVACY_LAW: frozenset({"42CFRPart2"}),
    # v3-Confidentiality R (restricted: "highly sensitive, potentially stigmatizing
    # information") and V (very restricted): labels that only sensitive data carries.
    CONFIDENTIALITY: frozenset({"R", "V"}),
}
SENSITIVE_LABELS[ACT_CODE_OID] = SENSITIVE_LABELS[ACT_CODE]
SENSITIVE_LABELS[CONFIDENTIALITY_OID] = SENSITIVE_LABELS[CONFIDENTIALITY]
SENSITIVE_LABELS[None] = SENSITIVE_LABELS[ACT_CODE]


def sensitive_label(resource: Resource) -> str | None:
    """Return the first sensitive security label on the resource (``system|code``), or None."""
    meta = resource.get("meta")
    if not isinstance(meta, dict):
        return None
    for label in meta.get("security", []):
        system, code = label.get("system"), label.get("code")
        if code in SENSITIVE_LABELS.get(system, ()):
            return f"{system}|{code}"
    return None


def consent_exclusion(resource: Resource, *, policy: ConsentPolicy) -> RemovalReason | None:
    """Return why the member's consent keeps this resource at the hub, or None."""
    if policy == ConsentPolicy.REGULAR and sensitive_label(resource) is not None:
        return RemovalReason.SENSITIVE_UNDER_REGULAR_CONSENT
    return None
