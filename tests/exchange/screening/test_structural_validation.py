"""Structural validation: the fast schema check catches what fhir.resources R4B catches, and more."""

from collections.abc import Callable
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from exchange.screening.structural_validation import structural_problems
from tests.exchange.screening.support import sample, sample_names

Mutation = Callable[[dict[str, Any]], Any]

# Broken in ways a former payer's data could be broken; each fhir.resources R4B rejects.
MODEL_REJECTS: dict[str, tuple[str, Mutation]] = {
    "required primitive missing": ("Observation-vitals", lambda r: r.pop("status")),
    "required element missing": ("Observation-vitals", lambda r: r.pop("code")),
    "wrong primitive type": ("Observation-vitals", lambda r: r.update(status=5)),
    "unknown element": ("Observation-vitals", lambda r: r.update(colour="blue")),
    "impossible month": ("Procedure", lambda r: r.update(performedDateTime="2021-13-45")),
    "not a date": ("Immunization", lambda r: r.update(occurrenceDateTime="yesterday")),
    "two types of one choice": (
        "Observation-vitals",
        lambda r: r.update(effectivePeriod={"start": "2020-01-01"}),
    ),
    "empty id": ("Encounter", lambda r: r.update(id="")),
    "id with a slash": ("Encounter", lambda r: r.update(id="a b/c")),
    "object where a list belongs": (
        "Condition",
        lambda r: r["code"].update(coding={"code": "x"}),
    ),
    "text where a number belongs": (
        "Observation-hiv-labelled",
        lambda r: r["valueQuantity"].update(value="abc"),
    ),
    "security labels not a list": (
        "Observation-hiv-labelled",
        lambda r: r["meta"].update(security={"code": "HIV"}),
    ),
    "instant without zone": (
        "Patient",
        lambda r: r["meta"].update(lastUpdated="2024-01-01T10:00:00"),
    ),
    "string where a Reference belongs": (
        "Encounter",
        lambda r: r.update(subject="Patient/123"),
    ),
    "claim without patient": ("EOB-professional", lambda r: r.pop("patient")),
}

# Invalid FHIR R4 JSON the R4B models let pass; the schema does not.
ONLY_SCHEMA_REJECTS: dict[str, tuple[str, Mutation]] = {
    "code outside a required binding": ("Observation-vitals", lambda r: r.update(status="bogus")),
    "null value": ("Observation-vitals", lambda r: r.update(issued=None)),
    "decimal written as text": (
        "Observation-hiv-labelled",
        lambda r: r["valueQuantity"].update(value="1.5"),
    ),
    "uri with a space": (
        "Condition",
        lambda r: r["code"]["coding"][0].update(system="http://sno med"),
    ),
}


@pytest.mark.parametrize("name", sample_names())
def test_every_sandbox_sample_is_valid(name: str) -> None:
    assert structural_problems(sample(name)) == []


@pytest.mark.parametrize("case", sorted(MODEL_REJECTS))
def test_what_fhir_resources_rejects_the_schema_rejects_too(case: str) -> None:
    name, mutate = MODEL_REJECTS[case]
    resource = sample(name)
    mutate(resource)
    model = get_fhir_model_class(resource["resourceType"])

    with pytest.raises(ValueError):
        model.model_validate(resource)
    assert structural_problems(resource) != []


@pytest.mark.parametrize("case", sorted(ONLY_SCHEMA_REJECTS))
def test_the_schema_is_stricter_where_the_models_are_lenient(case: str) -> None:
    name, mutate = ONLY_SCHEMA_REJECTS[case]
    resource = sample(name)
    mutate(resource)

    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    assert structural_problems(resource) != []


def test_problems_name_the_element_in_words() -> None:
    resource = sample("Observation-vitals")
    resource.pop("status")
    resource["effectivePeriod"] = {"start": "2020-01-01"}
    resource["subject"] = "Patient/1"

    problems = structural_problems(resource)

    assert "(resource): status or _status is required" in problems
    assert any("effectiveDateTime may not appear together with" in p for p in problems)
    assert 'subject: "Patient/1" is not of type "object"' in problems


@pytest.mark.parametrize(
    ("resource", "problem"),
    [
        ([1, 2], "(resource): a resource is a JSON object, not list"),
        ({"id": "x"}, "resourceType: None is not a FHIR R4 resource type"),
        ({"resourceType": "Spaceship"}, "resourceType: 'Spaceship' is not a FHIR R4 resource type"),
    ],
)
def test_what_is_not_a_resource_at_all(resource: Any, problem: str) -> None:
    assert structural_problems(resource) == [problem]


def test_a_primitive_given_only_as_its_extension_satisfies_the_requirement() -> None:
    resource = sample("Observation-vitals")
    resource.pop("status")
    resource["_status"] = {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                "valueCode": "unknown",
            }
        ]
    }

    assert structural_problems(resource) == []
