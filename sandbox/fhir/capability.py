"""Describe exactly what this server implements, as a CapabilityStatement."""

from __future__ import annotations

from typing import Any

from sandbox.fhir.resource_types import (
    RESULT_PARAMETERS,
    SERVED_TYPES,
    search_parameters,
)
from sandbox.runtime import Sandbox

HREX_MEMBER_MATCH = "http://hl7.org/fhir/us/davinci-hrex/OperationDefinition/member-match"
EVERYTHING = "http://hl7.org/fhir/OperationDefinition/Patient-everything"


def capability_statement(sandbox: Sandbox) -> dict[str, Any]:
    """Return the CapabilityStatement of this sandbox payer."""
    config = sandbox.config
    resources: list[dict[str, Any]] = []
    for resource_type in SERVED_TYPES:
        entry: dict[str, Any] = {
            "type": resource_type,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [
                {"name": name, "type": kind}
                for name, kind in search_parameters(resource_type).items()
            ]
            + [{"name": name, "type": "number"} for name in RESULT_PARAMETERS[:2]],
        }
        if resource_type == "Patient":
            entry["operation"] = [
                {"name": "member-match", "definition": HREX_MEMBER_MATCH},
                {"name": "everything", "definition": EVERYTHING},
            ]
        resources.append(entry)
    resources.append(
        {
            "type": "Consent",
            "documentation": "The consents a client's $member-match requests left here; "
            "update with status inactive to revoke.",
            "interaction": [{"code": "read"}, {"code": "update"}, {"code": "search-type"}],
            "searchParam": [{"name": "patient", "type": "reference"}],
        }
    )
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": sandbox.today().isoformat(),
        "kind": "instance",
        "software": {"name": "payer-hub sandbox payer"},
        "implementation": {
            "description": f"Sandbox payer {sandbox.identity.name}",
            "url": config.fhir_base,
        },
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/"
                                    "restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "extension": [
                        {
                            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/"
                            "oauth-uris",
                            "extension": [
                                {"url": "token", "valueUri": config.token_url},
                                {
                                    "url": "authorize",
                                    "valueUri": f"{config.base_url}/auth/authorize",
                                },
                                {"url": "register", "valueUri": f"{config.base_url}/auth/register"},
                            ],
                        }
                    ],
                },
                "resource": resources,
            }
        ],
    }
