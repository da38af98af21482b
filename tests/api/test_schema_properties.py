"""A property-based run over the published OpenAPI schema (issue 13: "every operation, no
5xx, every response valid against the schema").

schemathesis reads ``/api/v1/schema/`` from the app itself (WSGI, no server) and calls every
operation with generated requests, valid and not, as North's payer system with every scope.
Each response must not be a server error, must have a status, a content type, headers and a
body that the schema documents for the operation. Generated ids rarely name an object, so a
second test calls every operation with the ids of objects North has, and checks the same.

Former payers here have FHIR endpoints on hosts the tests cannot reach, and nothing is
committed (the ``db`` fixture's transaction), so a generated opt-in or cohort that happens to
be valid enqueues nothing and reaches no network (tests/conftest.py refuses beyond loopback).
"""

import json
import os
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from exchange.models import Cohort
from tests.api.conftest import opt_in_body
from tests.api.payer_systems import PayerSystemClient, PayerSystems
from tests.conftest import Tenant
from tests.factories import BulkJobFactory

# Generated requests per operation. Kept small so the file runs in about a minute on a
# shared two-core machine; for a longer hunt run e.g.
#   API_PROPERTY_EXAMPLES=500 make test PYTEST_ARGS=tests/api/test_schema_properties.py
EXAMPLES = int(os.environ.get("API_PROPERTY_EXAMPLES", "25"))
CHECKS: list[CheckFunction] = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
]

pytestmark = pytest.mark.usefixtures("south_holds_records", "west")


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    """Send a generated NDJSON body (a string in the schema) as it is; anything else as one
    JSON line, so a cohort posted as NDJSON is driven too."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, bytes):
        return value
    return (json.dumps(value) + "\n").encode()


def _app_in_the_test_transaction() -> Callable[..., Any]:
    """Return the hub's WSGI app, but leaving the database connection open after each
    response: Django closes it as a request starts and ends, and so would end the test's
    transaction (django.test.Client does the same)."""
    handler = get_wsgi_application()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        try:
            response = handler(environ, start_response)
            try:
                return [b"".join(response)]
            finally:
                response.close()
        finally:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)

    return app


@pytest.fixture
def api_schema(db: None) -> Any:
    return schemathesis.openapi.from_wsgi("/api/v1/schema/", _app_in_the_test_transaction())


@pytest.fixture
def north_system(north: Tenant, systems: PayerSystems) -> PayerSystemClient:
    return systems.client(north.payer)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_answers_as_its_schema_says(
    api_schema: Any, north_system: PayerSystemClient, mode: GenerationMode
) -> None:
    # schemathesis's own pytest integration (``from_fixture``) relies on a pytest internal
    # that pytest 9 dropped; each operation is driven here with its Hypothesis strategy.
    headers = {"Authorization": f"Bearer {north_system.token}"}
    failures, labels = [], []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            run()
        except Exception as exc:
            failures.append(f"{operation.label}: {exc}")
    assert len(labels) == len(set(labels)) > 0
    assert not failures, "\n\n".join(failures)


def test_every_operation_on_north_s_own_objects_answers_as_its_schema_says(
    api_schema: Any, north: Tenant, south: Tenant, north_system: PayerSystemClient
) -> None:
    created = north_system.post("/api/v1/opt-ins", opt_in_body())
    assert created.status_code == 201, created.json()
    opt_in = created.json()
    request_id = opt_in["requests"][0]["id"]
    cohort_body = {"former_payer": "south", "members": [_member()]}
    cohort = north_system.post("/api/v1/cohorts", cohort_body).json()
    # A cohort further on: a job done, one failed with its reason.
    made = Cohort.objects.for_payer(north.payer).get(pk=cohort["id"])
    BulkJobFactory(cohort=made, sequence=1, state="done")
    BulkJobFactory(
        cohort=made, kind="data_export", sequence=1,
        state="failed", reason_code="holder_error", reason_message="The export failed.",
    )  # fmt: skip
    calls: list[tuple[str, str, Callable[[Any], Any]]] = [
        ("GET", "/opt-ins/{opt_in_id}", lambda op: op.Case(path_parameters={"opt_in_id": opt_in["id"]})),
        ("GET", "/requests", lambda op: op.Case(query={"opt_in": opt_in["id"], "page_size": 1})),
        ("GET", "/requests", lambda op: op.Case(query={"cohort": cohort["id"]})),
        ("GET", "/requests/{request_id}", lambda op: op.Case(path_parameters={"request_id": request_id})),
        (
            "GET",
            "/requests/{request_id}/deliveries",
            lambda op: op.Case(path_parameters={"request_id": request_id}),
        ),
        (
            "POST",
            "/opt-ins/{opt_in_id}/withdraw",
            lambda op: op.Case(path_parameters={"opt_in_id": opt_in["id"]}),
        ),
        ("POST", "/cohorts", lambda op: op.Case(body=cohort_body, media_type="application/json")),
        ("GET", "/cohorts", lambda op: op.Case(query={"page_size": 1})),
        ("GET", "/cohorts/{cohort_id}", lambda op: op.Case(path_parameters={"cohort_id": cohort["id"]})),
    ]  # fmt: skip
    for method, path, make in calls:
        operation = api_schema[f"/api/v1{path}"][method]
        response = make(operation).call_and_validate(
            headers={"Authorization": f"Bearer {north_system.token}"}, checks=CHECKS
        )
        assert 200 <= response.status_code < 300, (method, path, response.text)
        if path == "/cohorts/{cohort_id}":
            assert len(response.json()["jobs"]) == 2


def _member() -> dict[str, Any]:
    return {
        "member_id": "NSH-300001",
        "family_name": "Person",
        "given_names": "Pat",
        "birth_date": "1980-02-29",
        "gender": "unknown",
        "former_member_id": "SCH-1",
        "former_coverage_start": "2020-01-01",
        "former_coverage_end": "2024-12-31",
        "new_coverage_start": "2025-01-01",
        "consent": "non_sensitive",
        "opted_in_at": "2024-12-01T10:00:00Z",
    }
