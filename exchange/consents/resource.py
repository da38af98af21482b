"""Build the HRex Consent the hub sends to a former payer (HRex STU 1.2 §Consent; SPEC.md).

Organizations are named by identifier, NPI first (``http://hl7.org/fhir/sid/us-npi``);
a payer without an NPI is named by its payer id under the hub's own system.
"""

from datetime import date
from typing import Any

from fhir.resources.R4B.consent import Consent as FhirConsent

from hub.models import Payer
from hub.validators import NPI_SYSTEM

PAYER_ID_SYSTEM = "urn:payer-hub:payer-id"
POLICY_URI = "http://hl7.org/fhir/us/davinci-hrex/StructureDefinition-hrex-consent.html#{policy}"
HREX_CONSENT_PROFILE = "http://hl7.org/fhir/us/davinci-hrex/StructureDefinition/hrex-consent"


def payer_identifier(payer: Payer) -> dict[str, str]:
    """Return the FHIR Identifier that names ``payer`` in consents and matches."""
    if payer.npi:
        return {"system": NPI_SYSTEM, "value": payer.npi}
    if payer.payer_identifier:
        return {"system": PAYER_ID_SYSTEM, "value": payer.payer_identifier}
    raise ValueError(f"{payer.name} has neither an NPI nor a payer id to be named by")


def _actor(role_system: str, role_code: str, payer: Payer) -> dict[str, Any]:
    return {
        "role": {"coding": [{"system": role_system, "code": role_code}]},
        "reference": {"identifier": payer_identifier(payer), "display": payer.name},
    }


def hrex_consent_resource(
    *,
    patient_id: str,
    former_payer: Payer,
    new_payer: Payer,
    policy: str,
    period_start: date,
    period_end: date,
    source_document_url: str,
) -> dict[str, Any]:
    """Return the HRex Consent JSON: ``former_payer`` may disclose to ``new_payer``.

    ``patient_id`` is the local id of the MemberPatient sent alongside it in
    ``$member-match`` (Consent.patient and .performer are local references).
    """
    member = {"reference": f"Patient/{patient_id}"}
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "meta": {"profile": [HREX_CONSENT_PROFILE]},
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [
            {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IDSCL"}
                ]
            }
        ],
        "patient": member,
        "performer": [member],
        "sourceReference": {"reference": source_document_url},
        "policy": [{"uri": POLICY_URI.format(policy=policy)}],
        "provision": {
            "type": "permit",
            "period": {"start": period_start.isoformat(), "end": period_end.isoformat()},
            "actor": [
                # The source that discloses, and the recipient (IRCP) that receives.
                _actor(
                    "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                    "performer",
                    former_payer,
                ),
                _actor(
                    "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP", new_payer
                ),
            ],
            "action": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/consentaction",
                            "code": "disclose",
                        }
                    ]
                }
            ],
        },
    }
    # Structural check against the R4 model: a malformed consent never leaves the hub.
    FhirConsent.model_validate(resource)
    return resource
