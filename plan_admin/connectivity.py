"""The *Test* buttons for the identity provider and the payer's client keys.

Each check reads the payer's documents through ``hub.oidc`` (the one OpenID Connect
module, which calls only through ``hub.outbound.PayerHttpClient``) and answers a
``hub.connectivity.ConnectivityReport`` of plain-language steps. (The FHIR endpoint and
SFTP checks live with the engine: ``exchange.connectivity`` and ``exchange.delivery.sftp``.)
"""

from hub.connectivity import ConnectivityReport
from hub.models import IdentityProvider
from hub.oidc.discovery import discovery_url, provider_metadata_read
from hub.oidc.documents import json_document_fetch, oidc_http_client
from hub.oidc.errors import IssuerMismatch, KeySetInvalid, MetadataIncomplete, OidcError
from hub.oidc.keys import BACKEND_SERVICES_ALGORITHMS, KeySet, key_set_parse
from hub.oidc.relying_party import client_auth_method

READ_DISCOVERY = "Read the discovery document"
COMPARE_ISSUER = "Compare the issuer"
CHECK_ENDPOINTS = "Check the endpoints"
READ_KEYS = "Read the signing keys"
PARSE_KEYS = "Parse the keys"


def _explained(error: OidcError) -> str:
    return f"{error} {error.advice}".strip()


def _key_set_check(
    report: ConnectivityReport, *, url: str, read_step: str, purpose: str
) -> KeySet | None:
    """Fetch and parse the JWK Set at ``url`` as two steps of ``report``; None if it failed."""
    with oidc_http_client() as http:
        try:
            document = json_document_fetch(http, url)
        except OidcError as exc:
            report.failed(read_step, _explained(exc))
            return None
    report.passed(read_step, f"Read {url}.")
    try:
        key_set = key_set_parse(document, source=url)
    except KeySetInvalid as exc:
        report.failed(PARSE_KEYS, _explained(exc))
        return None
    note = f" Skipped: {'; '.join(key_set.skipped)}." if key_set.skipped else ""
    report.passed(
        PARSE_KEYS, f"{len(key_set.keys)} key(s) for {purpose}: {key_set.describe()}.{note}"
    )
    return key_set


def identity_provider_check(*, identity_provider: IdentityProvider) -> ConnectivityReport:
    """Read the issuer's discovery document and its keys afresh; report what was found.

    What a successful test read is what sign-in uses next: the discovery document is
    re-read past the cache and cached anew.
    """
    issuer = identity_provider.issuer
    report = ConnectivityReport(subject=f"Identity provider {issuer}")
    url = discovery_url(issuer)
    with oidc_http_client() as http:
        try:
            metadata = provider_metadata_read(issuer=issuer, http=http, refresh=True)
        except IssuerMismatch as exc:
            report.passed(READ_DISCOVERY, f"Read {url}.")
            report.failed(COMPARE_ISSUER, _explained(exc))
            return report
        except MetadataIncomplete as exc:
            report.passed(READ_DISCOVERY, f"Read {url}.")
            report.passed(COMPARE_ISSUER, "The issuer in the discovery document matches.")
            report.failed(CHECK_ENDPOINTS, _explained(exc))
            return report
        except OidcError as exc:
            report.failed(READ_DISCOVERY, _explained(exc))
            return report
    report.passed(READ_DISCOVERY, f"Read {url}.")
    report.passed(COMPARE_ISSUER, "The issuer in the discovery document matches.")
    try:
        method = client_auth_method(identity_provider=identity_provider, metadata=metadata)
    except OidcError as exc:
        report.failed(CHECK_ENDPOINTS, _explained(exc))
        return report
    logout = (
        f" Sign-out at {metadata.end_session_endpoint}." if metadata.end_session_endpoint else ""
    )
    report.passed(
        CHECK_ENDPOINTS,
        f"Sign-in at {metadata.authorization_endpoint}, tokens at {metadata.token_endpoint} "
        f"(client authentication: {method}).{logout}",
    )
    _key_set_check(report, url=metadata.jwks_uri, read_step=READ_KEYS, purpose="ID tokens")
    return report


def client_jwks_check(*, jwks_url: str) -> ConnectivityReport:
    """Fetch the payer's client JWKS and list its keys (kid and algorithm)."""
    report = ConnectivityReport(subject=f"Client keys at {jwks_url}")
    key_set = _key_set_check(
        report, url=jwks_url, read_step="Read the key set", purpose="client assertions"
    )
    if key_set is None:
        return report
    usable = [key for key in key_set.keys if key.algorithms & set(BACKEND_SERVICES_ALGORITHMS)]
    if usable:
        report.passed(
            "Check the algorithms",
            f"{len(usable)} key(s) can sign client assertions with RS384 or ES384.",
        )
    else:
        report.failed(
            "Check the algorithms",
            'No key is marked for RS384 or ES384; set "alg" on the keys your systems sign '
            "SMART Backend Services assertions with.",
        )
    return report
