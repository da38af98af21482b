"""Client registration at a sandbox: plain RFC 7591, the organization binding, out of band.

sandbox/README.md "Authorization": a standard RFC 7591 request needs no field of the
sandbox's own; a client registered without ``organization_identifier`` is bound to the
recipient of the first consent it presents; ``--faults registration-refused`` makes the
advertised registration endpoint refuse RFC 7591, and ``B/sandbox/clients`` registers
out of band (with a client id of the registrant's choosing).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.sandbox.harness import (
    FORMER,
    NEW,
    SEED,
    BackendClient,
    RunningSandbox,
    current_consent,
    match_request,
    matched_patient,
    post_match,
    running_sandbox,
)

NORTH_NPI = "1234567893"
OTHER_NPI = "1245319599"


@pytest.fixture(scope="module")
def refusing_holder() -> Iterator[RunningSandbox]:
    """A former payer whose RFC 7591 endpoint refuses every request."""
    with running_sandbox(
        FORMER, "--seed", SEED, "--members", "10", "--peer", NEW,
        "--faults", "registration-refused",
    ) as sandbox:  # fmt: skip
        yield sandbox


def _member(sandbox: RunningSandbox) -> dict[str, Any]:
    """Return a member that matches uniquely (the showcase members have look-alikes)."""
    return next(
        m
        for m in sandbox.member_list()["members"]
        if not m["username"].startswith(("casey.", "patricia."))
    )


def test_a_standard_rfc_7591_request_is_bound_by_its_first_consent(
    former_payer: RunningSandbox,
) -> None:
    client = BackendClient(former_payer, NORTH_NPI)
    body = client.registration()
    del body["organization_identifier"]

    response = httpx.post(f"{former_payer.base}/auth/register", json=body)

    assert response.status_code == 201, response.text
    assert "organization_identifier" not in response.json()
    client.client_id = response.json()["client_id"]
    member = _member(former_payer)
    with client.http() as http:
        # The first consent binds the client to its recipient, North ...
        assert matched_patient(http, member, current_consent(recipient_npi=NORTH_NPI))
        # ... so a consent to another organization is no longer honoured for it.
        other = post_match(
            http, match_request(member, consent=current_consent(recipient_npi=OTHER_NPI))
        )
    assert other.status_code == 422, other.text
    assert "consent" in other.text.lower()


def test_registration_refused_fault_refuses_rfc_7591_and_names_the_other_way(
    refusing_holder: RunningSandbox,
) -> None:
    configuration = httpx.get(f"{refusing_holder.fhir}/.well-known/smart-configuration").json()
    body = BackendClient(refusing_holder, NORTH_NPI).registration()

    response = httpx.post(configuration["registration_endpoint"], json=body)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client_metadata"
    assert f"{refusing_holder.base}/sandbox/clients" in response.json()["error_description"]


def test_out_of_band_registration_takes_a_long_client_id_of_its_own(
    refusing_holder: RunningSandbox,
) -> None:
    long_id = "oob." + "x" * 996
    client = BackendClient(refusing_holder, NORTH_NPI)

    response = httpx.post(
        f"{refusing_holder.base}/sandbox/clients",
        json=client.registration() | {"client_id": long_id},
    )

    assert response.status_code == 201, response.text
    assert response.json()["client_id"] == long_id
    client.client_id = long_id
    with client.http() as http:
        assert matched_patient(
            http, _member(refusing_holder), current_consent(recipient_npi=NORTH_NPI)
        )
    again = httpx.post(
        f"{refusing_holder.base}/sandbox/clients",
        json=client.registration() | {"client_id": long_id},
    )
    assert again.status_code == 400
    assert "already registered" in again.json()["error_description"]


@pytest.mark.parametrize("client_id", [" padded", "line\nbreak", "x" * 4097, 42])
def test_out_of_band_registration_refuses_an_unusable_client_id(
    refusing_holder: RunningSandbox, client_id: object
) -> None:
    body = BackendClient(refusing_holder, NORTH_NPI).registration() | {"client_id": client_id}

    response = httpx.post(f"{refusing_holder.base}/sandbox/clients", json=body)

    assert response.status_code == 400
    assert "client_id" in response.json()["error_description"]
