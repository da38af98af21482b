"""Generate the practitioners and organizations a sandbox payer works with."""

from __future__ import annotations

import random
from dataclasses import dataclass

from sandbox.data.codes import FACILITY_TAXONOMIES, NUCC, TAXONOMIES
from sandbox.organizations import NPI_SYSTEM, PayerIdentity, derive_npi

PAYER_ORGANIZATION_ID = "payer"
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition"

_GIVEN = [
    "Alan",
    "Beth",
    "Chidi",
    "Dana",
    "Elena",
    "Farid",
    "Grace",
    "Hana",
    "Ines",
    "Jorge",
    "Kofi",
    "Lena",
    "Mateo",
    "Nadia",
    "Owen",
]
_FAMILY = [
    "Abbott",
    "Brennan",
    "Castillo",
    "Dubois",
    "Eriksen",
    "Fujita",
    "Gallo",
    "Hughes",
    "Iqbal",
    "Jensen",
    "Kaur",
]
_CLINICS = (
    "Family Health Clinic",
    "General Hospital",
    "Community Pharmacy",
    "Dental Group",
    "Behavioral Health Center",
)


@dataclass(frozen=True)
class Directory:
    """The shared (non-member) resources of one sandbox payer, by type and id."""

    practitioners: dict[str, dict[str, object]]
    organizations: dict[str, dict[str, object]]

    def get(self, resource_type: str, resource_id: str) -> dict[str, object] | None:
        """Return the Practitioner or Organization with this id."""
        if resource_type == "Practitioner":
            return self.practitioners.get(resource_id)
        if resource_type == "Organization":
            return self.organizations.get(resource_id)
        return None


def _meta(profile: str) -> dict[str, object]:
    return {"lastUpdated": "2020-01-01T00:00:00Z", "profile": [f"{US_CORE}/{profile}"]}


def _practitioner_name(rng: random.Random, *, physician: bool) -> dict[str, object]:
    name: dict[str, object] = {"family": rng.choice(_FAMILY), "given": [rng.choice(_GIVEN)]}
    if physician:
        name["prefix"] = ["Dr."]
    return name


def build_directory(identity: PayerIdentity) -> Directory:
    """Return the practitioners (by NUCC taxonomy) and organizations of the payer's network."""
    rng = random.Random(f"directory:{identity.name}")  # noqa: S311 - synthetic data only
    practitioners: dict[str, dict[str, object]] = {}
    for number in range(1, len(TAXONOMIES) * 2 + 1):
        code, display = TAXONOMIES[(number - 1) % len(TAXONOMIES)]
        pid = f"prac-{number}"
        practitioners[pid] = {
            "resourceType": "Practitioner",
            "id": pid,
            "meta": _meta("us-core-practitioner"),
            "identifier": [{"system": NPI_SYSTEM, "value": derive_npi(identity.name, pid)}],
            "active": True,
            "name": [_practitioner_name(rng, physician=code.startswith("20"))],
            "qualification": [
                {"code": {"coding": [{"system": NUCC, "code": code, "display": display}]}}
            ],
        }
    organizations: dict[str, dict[str, object]] = {
        PAYER_ORGANIZATION_ID: {
            "resourceType": "Organization",
            "id": PAYER_ORGANIZATION_ID,
            "meta": _meta("us-core-organization"),
            "identifier": identity.identifiers(),
            "active": True,
            "type": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/organization-type",
                            "code": "pay",
                            "display": "Payer",
                        }
                    ]
                }
            ],
            "name": identity.name,
        }
    }
    for number, ((code, display), label) in enumerate(
        zip(FACILITY_TAXONOMIES, _CLINICS, strict=True), start=1
    ):
        oid = f"org-{number}"
        organizations[oid] = {
            "resourceType": "Organization",
            "id": oid,
            "meta": _meta("us-core-organization"),
            "identifier": [{"system": NPI_SYSTEM, "value": derive_npi(identity.name, oid)}],
            "active": True,
            "type": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/organization-type",
                            "code": "prov",
                            "display": "Healthcare Provider",
                        },
                        {"system": NUCC, "code": code, "display": display},
                    ],
                }
            ],
            "name": f"{identity.name} Network {label}",
        }
    return Directory(practitioners=practitioners, organizations=organizations)


# Which network organization and practitioner serve which kind of care.
CLINIC, HOSPITAL, PHARMACY, DENTAL, BEHAVIORAL = "org-1", "org-2", "org-3", "org-4", "org-5"
PRIMARY_CARE = ("prac-1", "prac-2", "prac-9", "prac-10", "prac-6", "prac-14")
PSYCHIATRY = ("prac-3", "prac-11")
INFECTIOUS = ("prac-4", "prac-12")
EMERGENCY = ("prac-5", "prac-13")
DENTISTS = ("prac-7", "prac-15")
PHARMACISTS = ("prac-8", "prac-16")
