"""Every page sends the Content-Security-Policy; everything but the public documents is
``Cache-Control: no-store`` (hub/security_headers.py)."""

import pytest
from django.test import Client

from tests.conftest import Tenant


def _directives(response: object) -> dict[str, str]:
    header = response["Content-Security-Policy"]  # type: ignore[index]
    return {
        name: value
        for name, _, value in (part.strip().partition(" ") for part in header.split(";"))
    }


def test_the_portals_pages_get_the_strict_policy(client: Client, north: Tenant) -> None:
    client.force_login(north.member)
    for path in ("/", "/p/north/me/", "/p/north/sign-in/", "/p/north/me/no-such-page/"):
        policy = _directives(client.get(path))
        assert policy["default-src"] == "'self'"
        assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
        assert policy["img-src"] == "'self' data:" and policy["font-src"] == "'self'"
        assert policy["object-src"] == "'none'" and policy["base-uri"] == "'none'"
        assert policy["frame-ancestors"] == "'none'"
        # The sign-in, sign-out and SMART launch forms end at a payer's own provider; the
        # tests run with HTTPS off, so its providers on loopback are plain http.
        assert policy["form-action"] == "'self' https: http:"


def test_the_console_and_the_api_page_may_use_inline_styles_but_no_inline_script(
    client: Client, console: Client
) -> None:
    for response in (console.get("/operator/"), client.get("/api/v1/docs/")):
        policy = _directives(response)
        assert policy["style-src"] == "'self' 'unsafe-inline'"
        assert policy["script-src"] == "'self'"
    # Swagger UI's start-up script is a file of its own, not inline.
    page = client.get("/api/v1/docs/").content.decode()
    assert "<script>" not in page
    assert client.get("/api/v1/docs/?script").status_code == 200


def test_pages_with_phi_or_secrets_are_not_stored(
    client: Client, console: Client, north: Tenant, south: Tenant
) -> None:
    member, admin = Client(), Client()
    member.force_login(north.member)
    admin.force_login(north.admin)
    private = [
        member.get("/p/north/me/"),
        member.get("/p/south/me/"),  # another payer's page: a refusal, not stored either
        admin.get("/p/north/admin/"),
        admin.get("/p/north/admin/requests/?q=Doe"),
        client.get("/api/v1/requests"),
        client.get("/p/north/fhir/Consent/1"),
        console.get("/operator/"),
        client.get("/p/north/me/no-such-page/"),
    ]
    for response in private:
        assert response.get("Cache-Control") == "no-store", response.wsgi_request.path


@pytest.mark.django_db
def test_public_documents_may_be_cached(client: Client, north: Tenant) -> None:
    for path in ("/", "/healthz", "/p/north/.well-known/jwks.json", "/p/north/fhir/metadata"):
        assert "no-store" not in client.get(path).get("Cache-Control", ""), path
    assert client.get("/p/north/.well-known/jwks.json")["Cache-Control"] == "public, max-age=300"
