"""Compare the two structural validators on realistic records: fhir.resources R4B vs the schema.

Run, with a hub environment (e.g. ``source /tmp/env-NAME.sh``):
    .venv/bin/python bench/screening_validation.py [--members 40]

The records are the sandbox payer's (sandbox/data/generator.py): claims of the five CARIN
types, PDex prior authorizations, US Core clinical resources. Both validators see the same
parsed resources; the figure excludes JSON parsing, which both would need.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import django
from fhir.resources.R4B import get_fhir_model_class

from sandbox.data.generator import member_resources
from sandbox.data.population import Population
from sandbox.organizations import payer_identity

AS_OF = dt.date(2026, 11, 23)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=40)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    django.setup()
    from exchange.screening.structural_validation import structural_problems

    population = Population(
        identity=payer_identity("Bench Health"), seed="bench", size=args.members, as_of=AS_OF
    )
    resources = [
        resource
        for member in population.members[: args.members]
        for resource in member_resources(
            identity=population.identity, member=member, seed="bench", as_of=AS_OF
        )
    ]
    print(f"{len(resources)} resources of {args.members} sandbox members")

    started = time.perf_counter()
    types = {r["resourceType"] for r in resources}
    for resource_type in types:
        structural_problems({"resourceType": resource_type})  # harden and compile each type once
    print(
        f"schema load, hardening and compiling {len(types)} types (once per worker process): "
        f"{time.perf_counter() - started:.2f} s"
    )

    started = time.perf_counter()
    for resource in resources:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    models_s = time.perf_counter() - started

    started = time.perf_counter()
    invalid = sum(1 for resource in resources if structural_problems(resource))
    schema_s = time.perf_counter() - started

    print(f"fhir.resources R4B model_validate: {len(resources) / models_s:,.0f} resources/s")
    print(
        f"FHIR R4 JSON schema (hardened) on jsonschema-rs: {len(resources) / schema_s:,.0f} "
        f"resources/s ({invalid} invalid)"
    )
    print(f"speed-up: {models_s / schema_s:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
