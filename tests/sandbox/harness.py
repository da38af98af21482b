"""Start sandbox payers as subprocesses and act as their clients (payers and members)."""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime as dt
import hashlib
import json
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support.net import free_loopback_port, wait_until_listening

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
NPI = "http://hl7.org/fhir/sid/us-npi"
SEED = "hub-tests"
FORMER = "Former Health Plan"
NEW = "New Health Plan"
HREX_POLICY = "http://hl7.org/fhir/us/davinci-hrex/StructureDefinition-hrex-consent.html"


def fixture(name: str) -> Any:
    """Return a JSON fixture (a copy of an IG example)."""
    return json.loads((FIXTURES / name).read_text())


@dataclass
class RunningSandbox:
    """A sandbox payer process and its URLs."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    _members: dict[str, Any] | None = None
    # "https" for a sandbox started with --tls-cert; ``verify`` is then the TLS context a
    # test's own calls to it use (trusting its CA, presenting a client certificate).
    scheme: str = "http"
    verify: Any = True

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def fhir(self) -> str:
        return f"{self.base}/fhir"

    @property
    def token_url(self) -> str:
        return f"{self.base}/auth/token"

    def member_list(self) -> dict[str, Any]:
        if self._members is None:
            self._members = httpx.get(
                f"{self.base}/sandbox/members.json", timeout=30, verify=self.verify
            ).json()
        return self._members

    def member(self, patient_id: str) -> dict[str, Any]:
        return next(m for m in self.member_list()["members"] if m["patient_id"] == patient_id)


@contextlib.contextmanager
def running_sandbox(name: str, *args: str, verify: Any = None) -> Iterator[RunningSandbox]:
    """Run `python -m sandbox --name name --port <free> *args` for the duration of the block.

    ``verify`` (a TLS context) says the sandbox serves HTTPS (``--tls-cert`` among ``args``)
    and is how the test's own calls reach it.
    """
    port = free_loopback_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--name", name, "--port", str(port), *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_until_listening(port, timeout=30)
        yield RunningSandbox(
            name=name,
            port=port,
            process=process,
            scheme="http" if verify is None else "https",
            verify=True if verify is None else verify,
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class BackendClient:
    """A payer's SMART Backend Services client registered at a sandbox (RFC 7591)."""

    sandbox: RunningSandbox
    organization_npi: str
    algorithm: str = "RS384"
    scope: str | None = None
    client_id: str = ""
    kid: str = field(default_factory=lambda: uuid.uuid4().hex)
    private_key: Any = None

    def __post_init__(self) -> None:
        if self.private_key is None:
            self.private_key = new_private_key(self.algorithm)

    def public_jwk(self) -> dict[str, Any]:
        return public_jwk(self.private_key, kid=self.kid, algorithm=self.algorithm)

    def registration(self, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "client_name": f"payer {self.organization_npi}",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [self.public_jwk()]},
            "organization_identifier": {"system": NPI, "value": self.organization_npi},
        }
        if self.scope:
            body["scope"] = self.scope
        return body | overrides

    def register(self, **overrides: Any) -> BackendClient:
        response = httpx.post(
            f"{self.sandbox.base}/auth/register", json=self.registration(**overrides)
        )
        assert response.status_code == 201, response.text
        self.client_id = response.json()["client_id"]
        return self

    def assertion(self, *, kid: str | None = None, key: Any = None, **claims: Any) -> str:
        """Return a signed client assertion; claims override the valid defaults, kid="" omits it."""
        now = int(time.time())
        body = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.sandbox.token_url,
            "exp": now + 240,
            "jti": secrets.token_hex(16),
        } | claims
        header_kid = self.kid if kid is None else kid
        headers = {"kid": header_kid} if header_kid else {}
        return jwt.encode(body, key or self.private_key, algorithm=self.algorithm, headers=headers)

    def token_response(
        self, scope: str = "system/*.rs", assertion: str | None = None
    ) -> httpx.Response:
        return httpx.post(
            self.sandbox.token_url,
            data={
                "grant_type": "client_credentials",
                "scope": scope,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion or self.assertion(),
            },
        )

    def token(self, scope: str = "system/*.rs") -> str:
        response = self.token_response(scope)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def http(self, scope: str = "system/*.rs") -> httpx.Client:
        return httpx.Client(
            base_url=self.sandbox.fhir,
            headers={"Authorization": f"Bearer {self.token(scope)}"},
            timeout=30,
        )


def new_private_key(algorithm: str) -> Any:
    if algorithm.startswith("ES"):
        return ec.generate_private_key(ec.SECP384R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(private_key: Any, *, kid: str, algorithm: str) -> dict[str, Any]:
    if algorithm.startswith("ES"):
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    else:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    return dict(jwk) | {"kid": kid, "alg": algorithm}


def current_consent(
    *,
    recipient_npi: str,
    policy: str = "sensitive",
    start: dt.date | None = None,
    end: dt.date | None = None,
    patient_ref: str = "Patient/1",
) -> dict[str, Any]:
    """Return the HRex example Consent with a period around today and the given recipient."""
    consent = copy.deepcopy(
        next(p for p in fixture("hrex-member-match-in.json")["parameter"] if p["name"] == "Consent")
    )["resource"]
    today = dt.datetime.now(dt.UTC).date()
    consent["policy"] = [{"uri": f"{HREX_POLICY}#{policy}"}]
    consent["patient"] = consent["performer"][0] = {"reference": patient_ref}
    consent["provision"]["period"] = {
        "start": (start or today - dt.timedelta(days=1)).isoformat(),
        "end": (end or today + dt.timedelta(days=90)).isoformat(),
    }
    consent["provision"]["actor"][1]["reference"]["identifier"]["value"] = recipient_npi
    return consent


def match_request(
    member: dict[str, Any], *, consent: dict[str, Any] | None, card: str | None = None
) -> dict[str, Any]:
    """Return HRex $member-match Parameters for a member of members.json."""
    parameters: list[dict[str, Any]] = [
        {
            "name": "MemberPatient",
            "resource": {
                "resourceType": "Patient",
                "id": "1",
                "name": [{"family": member["family"], "given": member["given"]}],
                "gender": member["gender"],
                "birthDate": member["birth_date"],
            },
        },
        {
            "name": "CoverageToMatch",
            "resource": {
                "resourceType": "Coverage",
                "status": "active",
                "identifier": [
                    {
                        "type": {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                    "code": "MB",
                                }
                            ]
                        },
                        "value": card or member["card_number"],
                    }
                ],
                "beneficiary": {"reference": "Patient/1"},
                "payor": [{"display": "Former payer"}],
            },
        },
    ]
    if consent is not None:
        parameters.append({"name": "Consent", "resource": consent})
    return {"resourceType": "Parameters", "parameter": parameters}


def post_match(client: httpx.Client, body: Any) -> httpx.Response:
    return client.post(
        "/Patient/$member-match",
        content=json.dumps(body),
        headers={"Content-Type": "application/fhir+json"},
    )


def matched_patient(client: httpx.Client, member: dict[str, Any], consent: dict[str, Any]) -> str:
    response = post_match(client, match_request(member, consent=consent))
    assert response.status_code == 200, response.text
    parameter = {p["name"]: p for p in response.json()["parameter"]}
    return str(parameter["MemberId"]["valueReference"]["reference"]).removeprefix("Patient/")


def everything(client: httpx.Client, patient_id: str, **params: str) -> list[dict[str, Any]]:
    """Follow $everything's next links to the end and return every entry's resource."""
    resources: list[dict[str, Any]] = []
    response = client.get(f"/Patient/{patient_id}/$everything", params=params)
    while True:
        assert response.status_code == 200, response.text
        bundle = response.json()
        resources += [e["resource"] for e in bundle.get("entry", [])]
        next_links = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not next_links:
            return resources
        response = client.get(next_links[0])


def is_sensitive(resource: dict[str, Any]) -> bool:
    return any(
        s.get("system") == "http://terminology.hl7.org/CodeSystem/v3-ActCode"
        and s.get("code") in {"ETH", "HIV", "PSY", "STD", "SDV", "SEX"}
        for s in resource.get("meta", {}).get("security", [])
    )


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    return verifier, challenge.decode()


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


BULK_MEMBER_MATCH_SCOPE = "http://hl7.org/fhir/us/davinci-pdex/OperationDefinition/BulkMemberMatch"
BULK_SCOPES = f"system/*.rs {BULK_MEMBER_MATCH_SCOPE}"
MATCH_RESULT_SYSTEM = "http://hl7.org/fhir/us/davinci-pdex/CodeSystem/PdexMultiMemberMatchResultCS"
PAYER_TO_PAYER = "hl7.fhir.us.davinci-pdex#payertopayer"


def member_bundle(member: dict[str, Any], *, consent: dict[str, Any]) -> dict[str, Any]:
    """Return a PDex MemberBundle for a member of members.json (the $member-match parts)."""
    return {"name": "MemberBundle", "part": match_request(member, consent=consent)["parameter"]}


def bulk_match_body(bundles: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": bundles}


def kick_off(
    client: httpx.Client, path: str, *, body: Any = None, params: Any = None
) -> httpx.Response:
    """Start an async operation (Prefer: respond-async): POST when there is a body, else GET."""
    headers = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
    if body is None:
        return client.get(path, params=params, headers=headers)
    return client.post(
        path,
        params=params,
        content=json.dumps(body),
        headers=headers | {"Content-Type": "application/fhir+json"},
    )


def completed(client: httpx.Client, status_url: str, *, timeout: float = 120) -> httpx.Response:
    """Poll a bulk status URL until it stops answering 202; return that answer."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(status_url)
        if response.status_code != 202:
            return response
        assert response.headers["Retry-After"].isdigit()
        assert "X-Progress" in response.headers
        assert time.monotonic() < deadline, f"bulk job still running after {timeout} s"
        time.sleep(0.1)


def bulk_result(client: httpx.Client, kick_off_response: httpx.Response) -> dict[str, Any]:
    """Follow an accepted kick-off to its completion and return the 200 body."""
    assert kick_off_response.status_code == 202, kick_off_response.text
    response = completed(client, kick_off_response.headers["Content-Location"])
    assert response.status_code == 200, response.text
    return dict(response.json())


def ndjson_lines(client: httpx.Client, url: str) -> list[str]:
    response = client.get(url, headers={"Accept": "application/fhir+ndjson"})
    assert response.status_code == 200, response.text
    return response.text.splitlines()


def manifest_resources(client: httpx.Client, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Return every resource of a manifest's output files."""
    return [
        json.loads(line)
        for entry in manifest["output"]
        for line in ndjson_lines(client, entry["url"])
    ]


def matched_group(client: httpx.Client, bundles: list[dict[str, Any]]) -> dict[str, Any]:
    """Run $bulk-member-match (STU 2.2) and return the resulting Groups by result code."""
    manifest = bulk_result(
        client, kick_off(client, "/Group/$bulk-member-match", body=bulk_match_body(bundles))
    )
    return {g["code"]["coding"][0]["code"]: g for g in manifest_resources(client, manifest)}
