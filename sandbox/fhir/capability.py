"""Describe exactly what this server implements, as a CapabilityStatement."""

from __future__ import annotations

from typing import Any

from sandbox.fhir.groups import GROUP_SEARCH_PARAMETERS
from sandbox.fhir.resource_types import (
    RESULT_PARAMETERS,
    SERVED_TYPES,
    search_parameters,
)
from sandbox.runtime import Sandbox

HREX_MEMBER_MATCH = "http://hl7.org/fhir/us/davinci-hrex/OperationDefinition/member-match"
EVERYTHING = "http://hl7.org/fhir/OperationDefinition/Patient-everything"
BULK_MEMBER_MATCH = "http://hl7.org/fhir/us/davinci-pdex/OperationDefinition/BulkMemberMatch"
DAVINCI_DATA_EXPORT = "http://hl7.org/fhir/us/davinci-atr/OperationDefinition/davinci-data-export"
GROUP_EXPORT = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"


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
                operation
                for operation in (
                    {"name": "member-match", "definition": HREX_MEMBER_MATCH},
                    {"name": "everything", "definition": EVERYTHING},
                )
                if operation["name"] not in sandbox.withdrawn_operations
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
    resources.append(
        {
            "type": "Group",
            "documentation": "The Groups $bulk-member-match made for the calling client; "
            "export a 'match' Group with $davinci-data-export (exportType "
            "hl7.fhir.us.davinci-pdex#payertopayer) or $export.",
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [
                {"name": name, "type": kind} for name, kind in GROUP_SEARCH_PARAMETERS.items()
            ],
            "operation": [
                {"name": "bulk-member-match", "definition": BULK_MEMBER_MATCH},
                {"name": "davinci-data-export", "definition": DAVINCI_DATA_EXPORT},
                {"name": "export", "definition": GROUP_EXPORT},
            ],
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
