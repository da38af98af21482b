"""What a client discovers first: the CapabilityStatement and the SMART configuration."""

from __future__ import annotations

import httpx
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from tests.sandbox.harness import RunningSandbox

SERVED = {
    "Patient",
    "Coverage",
    "Condition",
    "Observation",
    "Encounter",
    "Procedure",
    "MedicationRequest",
    "Immunization",
    "AllergyIntolerance",
    "DiagnosticReport",
    "DocumentReference",
    "CarePlan",
    "CareTeam",
    "Goal",
    "Practitioner",
    "Organization",
    "Provenance",
    "ExplanationOfBenefit",
    "Consent",
    "Group",
}


def test_capability_statement_lists_exactly_what_is_served(former_payer: RunningSandbox) -> None:
    response = httpx.get(f"{former_payer.fhir}/metadata")
    statement = response.json()
    CapabilityStatement.model_validate(statement)
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}

    assert response.headers["content-type"].startswith("application/fhir+json")
    assert statement["fhirVersion"] == "4.0.1"
    assert set(resources) == SERVED
    assert {o["name"] for o in resources["Patient"]["operation"]} == {"member-match", "everything"}
    assert {o["name"]: o["definition"] for o in resources["Group"]["operation"]} == {
        "bulk-member-match": "http://hl7.org/fhir/us/davinci-pdex/OperationDefinition/BulkMemberMatch",
        "davinci-data-export": "http://hl7.org/fhir/us/davinci-atr/OperationDefinition/davinci-data-export",
        "export": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export",
    }
    assert {p["name"] for p in resources["Group"]["searchParam"]} >= {
        "identifier",
        "characteristic",
        "characteristic-value-reference",
        "code",
    }
    assert all("operation" not in r for t, r in resources.items() if t not in ("Patient", "Group"))
    uris = {
        e["url"]: e["valueUri"]
        for e in statement["rest"][0]["security"]["extension"][0]["extension"]
    }
    assert uris["token"] == former_payer.token_url


def test_capability_statement_search_parameters_work(former_payer: RunningSandbox) -> None:
    statement = httpx.get(f"{former_payer.fhir}/metadata").json()
    for resource in statement["rest"][0]["resource"]:
        names = {p["name"] for p in resource.get("searchParam", [])}
        if resource["type"] not in ("Patient", "Practitioner", "Organization", "Consent", "Group"):
            assert "patient" in names, resource["type"]


def test_smart_configuration_advertises_backend_services_and_registration(
    former_payer: RunningSandbox,
) -> None:
    config = httpx.get(f"{former_payer.fhir}/.well-known/smart-configuration").json()

    assert config["token_endpoint"] == former_payer.token_url
    assert config["registration_endpoint"] == f"{former_payer.base}/auth/register"
    assert set(config["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    assert "client_credentials" in config["grant_types_supported"]
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert {"launch-standalone", "client-confidential-asymmetric", "permission-v2"} <= set(
        config["capabilities"]
    )


def test_member_list_names_accounts_and_the_showcase_members(former_payer: RunningSandbox) -> None:
    listing = former_payer.member_list()
    patricia = former_payer.member("pat1")

    assert len(listing["members"]) == 40
    assert listing["admins"][0]["username"] == "admin"
    assert (patricia["card_number"], patricia["member_id"]) == ("DH10001235", "55678")
    assert (
        former_payer.member("dup1a")["card_number"] == former_payer.member("dup1b")["card_number"]
    )
    assert all(m["password"] == "sandbox-demo" for m in listing["members"])


def test_unknown_urls_and_methods_answer_with_operation_outcomes(
    former_payer: RunningSandbox,
) -> None:
    nowhere = httpx.get(f"{former_payer.base}/nowhere")
    delete = httpx.delete(f"{former_payer.fhir}/metadata")

    assert nowhere.status_code == 404
    assert nowhere.json()["resourceType"] == "OperationOutcome"
    assert delete.status_code == 405
    assert delete.json()["issue"][0]["code"] == "not-supported"
