"""The API's OpenAPI document is served, valid, and documents every operation; the
interactive page is served with its own copy of Swagger UI."""

from pathlib import Path

import yaml
from django.core.management import call_command
from django.test import Client


def test_the_schema_is_valid_with_no_warning(tmp_path: Path) -> None:
    # drf-spectacular's own check: generation warnings fail, and the result is validated
    # against the OpenAPI 3 meta-schema.
    out = tmp_path / "schema.yaml"
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--urlconf", "api.urls", "--file", str(out)
    )
    schema = yaml.safe_load(out.read_text())
    operations = {
        (method.upper(), path)
        for path, methods in schema["paths"].items()
        for method in methods
        if method in ("get", "post")
    }
    assert operations == {
        ("POST", "/api/v1/opt-ins"),
        ("GET", "/api/v1/opt-ins/{opt_in_id}"),
        ("POST", "/api/v1/opt-ins/{opt_in_id}/withdraw"),
        ("GET", "/api/v1/requests"),
        ("GET", "/api/v1/requests/{request_id}"),
        ("GET", "/api/v1/requests/{request_id}/deliveries"),
        ("POST", "/api/v1/cohorts"),
        ("GET", "/api/v1/cohorts"),
        ("GET", "/api/v1/cohorts/{cohort_id}"),
    }
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            assert operation["security"] == [{"payerSystemToken": []}], (method, path)
            assert "Scope `hub/" in operation["description"], (method, path)
            for status in ("401", "403"):
                assert "application/problem+json" in operation["responses"][status]["content"]
    scheme = schema["components"]["securitySchemes"]["payerSystemToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert "hub/opt-ins.write" in scheme["description"]
    post = schema["paths"]["/api/v1/opt-ins"]["post"]
    assert any(p["name"] == "Idempotency-Key" for p in post["parameters"])
    assert "application/problem+json" in post["responses"]["422"]["content"]
    listing = schema["paths"]["/api/v1/requests"]["get"]
    assert {"cursor", "page_size", "status", "former_payer", "member_id"} <= {
        p["name"] for p in listing["parameters"]
    }


def test_the_schema_and_the_docs_page_are_served_without_a_token() -> None:
    schema = Client().get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    assert schema.json()["openapi"].startswith("3.")
    docs = Client().get("/api/v1/docs/")
    assert docs.status_code == 200
    page = docs.content.decode()
    # Swagger UI from the hub's own static files (drf-spectacular-sidecar), not a CDN.
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page
    assert "cdn." not in page


def test_a_cohort_is_posted_as_json_or_ndjson(tmp_path: Path) -> None:
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--urlconf", "api.urls", "--file", str(out))
    post = yaml.safe_load(out.read_text())["paths"]["/api/v1/cohorts"]["post"]
    assert set(post["requestBody"]["content"]) == {"application/json", "application/x-ndjson"}
    assert {"Idempotency-Key", "former_payer", "name"} <= {p["name"] for p in post["parameters"]}
