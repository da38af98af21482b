"""The *Test* buttons for the identity provider and the payer's client keys.

Each check calls the payer only through ``hub.outbound.PayerHttpClient`` and answers a
``hub.connectivity.ConnectivityReport`` of plain-language steps. (The FHIR endpoint and
SFTP checks live with the engine: ``exchange.connectivity`` and ``exchange.delivery.sftp``.)
"""

import json
from typing import Any

import jwt

from hub.connectivity import ConnectivityReport
from hub.models import IdentityProvider
from hub.outbound import OutboundError, PayerHttpClient

# A JWKS is small; a megabyte is generous and keeps a wrong URL from streaming a file.
JWKS_MAX_BYTES = 1024 * 1024
# OpenID Connect Discovery 1.0 §3: metadata a relying party needs for the code flow.
REQUIRED_DISCOVERY_FIELDS = ("authorization_endpoint", "token_endpoint", "jwks_uri")
# SMART Backend Services §Authenticating: the hub verifies client assertions signed with
# RS384 or ES384 (the two algorithms servers SHALL support).
CLIENT_ASSERTION_ALGORITHMS = ("RS384", "ES384")
# JWK members that only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4.1).
PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")


def identity_provider_check(*, identity_provider: IdentityProvider) -> ConnectivityReport:
    """Fetch the issuer's discovery document and its JWKS; report what was found."""
    issuer = identity_provider.issuer
    report = ConnectivityReport(subject=f"Identity provider {issuer}")
    # OpenID Connect Discovery 1.0 §4: the document lives under the issuer, with any
    # trailing slash of the issuer removed first.
    discovery_url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    with PayerHttpClient(max_response_bytes=JWKS_MAX_BYTES) as client:
        discovery = _fetch_json(client, discovery_url, report, step="Read the discovery document")
        if discovery is None:
            return report
        # Discovery §4.3: the issuer in the document MUST be identical to the one used to
        # fetch it, or ID tokens would not validate.
        if discovery.get("issuer") != issuer:
            report.failed(
                "Compare the issuer",
                f"The discovery document names the issuer {discovery.get('issuer')!r}, "
                f"but you entered {issuer!r}. Enter exactly the issuer it announces.",
            )
            return report
        report.passed("Compare the issuer", "The issuer in the discovery document matches.")
        missing = [name for name in REQUIRED_DISCOVERY_FIELDS if not discovery.get(name)]
        if missing:
            report.failed(
                "Check the endpoints",
                f"The discovery document does not give {', '.join(missing)}.",
            )
            return report
        report.passed(
            "Check the endpoints",
            f"Sign-in at {discovery['authorization_endpoint']}, tokens at "
            f"{discovery['token_endpoint']}.",
        )
        jwks = _fetch_json(client, str(discovery["jwks_uri"]), report, step="Read the signing keys")
    if jwks is not None:
        _parse_jwks(jwks, report, purpose="ID tokens")
    return report


def client_jwks_check(*, jwks_url: str) -> ConnectivityReport:
    """Fetch the payer's client JWKS and list its keys (kid and algorithm)."""
    report = ConnectivityReport(subject=f"Client keys at {jwks_url}")
    with PayerHttpClient(max_response_bytes=JWKS_MAX_BYTES) as client:
        jwks = _fetch_json(client, jwks_url, report, step="Read the key set")
    if jwks is None:
        return report
    keys = _parse_jwks(jwks, report, purpose="client assertions")
    if not keys:
        return report
    usable = [key for key in keys if key.algorithm_name in CLIENT_ASSERTION_ALGORITHMS]
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


def _fetch_json(
    client: PayerHttpClient, url: str, report: ConnectivityReport, *, step: str
) -> dict[str, Any] | None:
    """GET ``url`` and return its JSON object; on any failure record why and return None."""
    try:
        response = client.get(url, headers={"Accept": "application/json"})
    except OutboundError as exc:
        report.failed(step, f"Could not reach {url}: {exc}")
        return None
    if response.status_code != 200:
        report.failed(step, f"{url} answered HTTP {response.status_code} instead of 200.")
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        report.failed(step, f"{url} did not answer with JSON.")
        return None
    if not isinstance(body, dict):
        report.failed(step, f"{url} answered JSON, but not an object.")
        return None
    report.passed(step, f"Read {url}.")
    return body


def _parse_jwks(
    jwks: dict[str, Any], report: ConnectivityReport, *, purpose: str
) -> list[jwt.PyJWK]:
    """Parse a JWKS (RFC 7517 §5); record the keys found, or why none can be used."""
    step = "Parse the keys"
    raw_keys = jwks.get("keys")
    if not isinstance(raw_keys, list) or not raw_keys:
        report.failed(step, 'The key set has no "keys" list, or the list is empty.')
        return []
    if any(isinstance(raw, dict) and set(PRIVATE_JWK_MEMBERS) & set(raw) for raw in raw_keys):
        report.failed(
            step,
            "The key set publishes private key material; publish public keys only and "
            "replace these keys now.",
        )
        return []
    keys: list[jwt.PyJWK] = []
    problems: list[str] = []
    for position, raw in enumerate(raw_keys, start=1):
        try:
            keys.append(jwt.PyJWK.from_dict(raw))
        except (jwt.PyJWKError, jwt.InvalidKeyError, TypeError, ValueError) as exc:
            problems.append(f"key {position}: {exc}")
    if not keys:
        report.failed(step, "No key could be read (" + "; ".join(problems) + ").")
        return []
    listed = ", ".join(f"{key.key_id or '(no kid)'} ({key.algorithm_name})" for key in keys)
    note = f" Skipped: {'; '.join(problems)}." if problems else ""
    report.passed(step, f"{len(keys)} key(s) for {purpose}: {listed}.{note}")
    return keys
