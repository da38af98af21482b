"""Faults on demand: the --faults grammar and what each fault does to clients."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import time

import httpx
import pytest

from sandbox.faults import FaultPlan, parse_faults
from tests.sandbox.harness import (
    BULK_SCOPES,
    PAYER_TO_PAYER,
    BackendClient,
    bulk_match_body,
    bulk_result,
    current_consent,
    kick_off,
    matched_patient,
    member_bundle,
    ndjson_lines,
    running_sandbox,
)


def test_grammar_reads_every_fault() -> None:
    plan = parse_faults(
        "latency=200ms,429=0.2,500=0.1,503=0.05,drop=0.05,retry-after=3s,token-ttl=5s,idp-down"
    )

    assert plan == FaultPlan(
        latency_s=0.2,
        rate_429=0.2,
        rate_500=0.1,
        rate_503=0.05,
        rate_drop=0.05,
        retry_after_s=3.0,
        token_ttl_s=5.0,
        idp_down=True,
    )
    assert parse_faults("") == FaultPlan()
    assert parse_faults("bad-ndjson=0.5,export-ttl=2s") == FaultPlan(
        rate_bad_ndjson=0.5, export_ttl_s=2.0
    )
    assert parse_faults("registration-refused") == FaultPlan(registration_refused=True)


@pytest.mark.parametrize(
    "spec",
    [
        "latency=fast",
        "429=2",
        "teapot=0.1",
        "500=0.6,503=0.6",
        "drop",
        "bad-ndjson",
        "export-ttl=1",
        "registration-refused=1",
    ],
)
def test_grammar_names_the_bad_item(spec: str) -> None:
    with pytest.raises(ValueError, match="fault"):
        parse_faults(spec)


def test_bad_fault_spec_stops_the_sandbox_with_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "--name", "X", "--port", "1", "--faults", "429=7"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 2
    assert "between 0 and 1" in result.stderr


def test_injected_statuses_drops_and_latency_reach_the_client() -> None:
    faults = "latency=30ms,429=0.25,500=0.15,503=0.1,drop=0.2,retry-after=2s"
    with running_sandbox("Flaky Plan", "--members", "5", "--faults", faults) as flaky:
        client = BackendClient(flaky, "1444444442").register()
        token = client.token()
        outcomes: collections.Counter[str] = collections.Counter()
        retry_afters = set()
        started = time.monotonic()
        for _ in range(60):
            try:
                response = httpx.get(
                    f"{flaky.fhir}/Patient", headers={"Authorization": f"Bearer {token}"}
                )
            except httpx.RemoteProtocolError:
                outcomes["dropped"] += 1
                continue
            outcomes[str(response.status_code)] += 1
            if response.status_code in (429, 503):
                retry_afters.add(response.headers["retry-after"])
                assert response.json()["resourceType"] == "OperationOutcome"
        elapsed = time.monotonic() - started
        metadata = [httpx.get(f"{flaky.fhir}/metadata").status_code for _ in range(10)]

    assert {"200", "429", "500", "503", "dropped"} <= set(outcomes)
    assert retry_afters == {"2"}
    assert elapsed >= 60 * 0.03
    assert metadata == [200] * 10


def test_token_ttl_fault_expires_tokens_early() -> None:
    with running_sandbox("Short Token Plan", "--members", "5", "--faults", "token-ttl=1s") as payer:
        client = BackendClient(payer, "1666666664").register()
        with client.http() as matching:
            patient_id = matched_patient(
                matching, payer.member("pat1"), current_consent(recipient_npi="1666666664")
            )
        response = client.token_response()
        headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
        first = httpx.get(f"{payer.fhir}/Patient/{patient_id}", headers=headers)
        time.sleep(1.3)
        later = httpx.get(f"{payer.fhir}/Patient/{patient_id}", headers=headers)

    assert response.json()["expires_in"] == 1
    assert first.status_code == 200
    assert later.status_code == 401


def test_bad_ndjson_and_export_ttl_faults_corrupt_a_line_and_expire_the_files() -> None:
    npi = "1777777772"
    faults = "bad-ndjson=1,export-ttl=2s"
    with (
        running_sandbox("Bad Files Plan", "--members", "5", "--faults", faults) as payer,
        BackendClient(payer, npi).register().http(BULK_SCOPES) as client,
    ):
        bundle = member_bundle(payer.member("pat1"), consent=current_consent(recipient_npi=npi))
        # STU 2.1 output: the Groups come back in the status answer, not in a (corrupted) file.
        result = bulk_result(
            client,
            kick_off(
                client,
                "/Group/$bulk-member-match",
                body=bulk_match_body([bundle]),
                params={"_outputFormat": "application/fhir+json"},
            ),
        )
        group_id = result["parameter"][0]["resource"]["id"]
        accepted = kick_off(
            client,
            f"/Group/{group_id}/$davinci-data-export",
            params={"exportType": PAYER_TO_PAYER, "_type": "Patient,Condition"},
        )
        manifest = bulk_result(client, accepted)
        malformed = {}
        for entry in manifest["output"]:
            lines = ndjson_lines(client, entry["url"])
            assert entry["count"] == len(lines)
            malformed[entry["type"]] = sum(1 for line in lines if not _parses(line))
        time.sleep(2.3)
        expired_status = client.get(accepted.headers["Content-Location"])
        expired_file = client.get(manifest["output"][0]["url"])

    assert malformed == {"Patient": 1, "Condition": 1}
    assert expired_status.status_code == 410
    assert "expired" in expired_status.json()["issue"][0]["diagnostics"]
    assert expired_file.status_code == 410


def _parses(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True
