"""Every POST takes an Idempotency-Key: the same request sent again is answered as the first
time and creates nothing; the key with another body is a 422 naming the header; keys are
kept per payer."""

import pytest

from api.models import IdempotencyKey
from exchange.models import ExchangeRequest, OptInRecord
from hub.models import AuditEvent
from tests.api.conftest import opt_in_body
from tests.api.payer_systems import PayerSystems
from tests.conftest import Tenant

pytestmark = pytest.mark.usefixtures("south_holds_records", "west")
KEY = "5d0a3c1e-enrollment-batch-7"


def test_the_same_post_sent_again_is_replayed_and_creates_nothing_new(
    north: Tenant, systems: PayerSystems
) -> None:
    client = systems.client(north.payer)
    # One body: opt_in_body() reads the clock, and a second later would be another request.
    body = opt_in_body()
    first = client.post("/api/v1/opt-ins", body, **{"Idempotency-Key": KEY})
    assert first.status_code == 201
    audit_events = AuditEvent.objects.for_payer(north.payer).count()

    again = client.post("/api/v1/opt-ins", body, **{"Idempotency-Key": KEY})

    assert again.status_code == 201, again.json()
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert OptInRecord.objects.for_payer(north.payer).count() == 1
    assert ExchangeRequest.objects.for_payer(north.payer).count() == 2
    assert AuditEvent.objects.for_payer(north.payer).count() == audit_events


def test_the_key_with_another_body_is_a_422_naming_the_header(
    north: Tenant, systems: PayerSystems
) -> None:
    client = systems.client(north.payer)
    client.post("/api/v1/opt-ins", opt_in_body(), **{"Idempotency-Key": KEY})
    other = opt_in_body(consent={"choice": "non_sensitive"})
    response = client.post("/api/v1/opt-ins", other, **{"Idempotency-Key": KEY})
    assert response.status_code == 422
    assert response["Content-Type"] == "application/problem+json"
    (error,) = response.json()["errors"]
    assert error["field"] == "Idempotency-Key"
    assert "another request" in error["message"]
    assert OptInRecord.objects.for_payer(north.payer).count() == 1


def test_a_withdrawal_sent_twice_with_its_key_is_replayed(
    north: Tenant, systems: PayerSystems
) -> None:
    client = systems.client(north.payer)
    created = client.post("/api/v1/opt-ins", opt_in_body()).json()
    first = client.post(created["links"]["withdraw"], **{"Idempotency-Key": "withdraw-1"})
    again = client.post(created["links"]["withdraw"], **{"Idempotency-Key": "withdraw-1"})
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    # The same key on another path is another request.
    other_path = client.post("/api/v1/opt-ins", opt_in_body(), **{"Idempotency-Key": "withdraw-1"})
    assert other_path.status_code == 422


def test_a_refused_post_keeps_no_key_and_may_be_sent_again_corrected(
    north: Tenant, systems: PayerSystems
) -> None:
    client = systems.client(north.payer)
    bad = opt_in_body(consent={"choice": "most"})
    assert client.post("/api/v1/opt-ins", bad, **{"Idempotency-Key": KEY}).status_code == 422
    assert not IdempotencyKey.objects.for_payer(north.payer).exists()
    good = client.post("/api/v1/opt-ins", opt_in_body(), **{"Idempotency-Key": KEY})
    assert good.status_code == 201


def test_keys_are_kept_per_payer(north: Tenant, south: Tenant, systems: PayerSystems) -> None:
    systems.client(north.payer).post("/api/v1/opt-ins", opt_in_body(), **{"Idempotency-Key": KEY})
    south_body = opt_in_body(previous_payers=[], concurrent_payers=[
        {"payer": "west", "member_id": "WP-1", "coverage_start": "2024-01-01"}
    ])  # fmt: skip
    response = systems.client(south.payer).post(
        "/api/v1/opt-ins", south_body, **{"Idempotency-Key": KEY}
    )
    assert response.status_code == 201, response.json()
    assert OptInRecord.objects.for_payer(south.payer).count() == 1


def test_a_key_that_is_not_printable_ascii_is_refused(north: Tenant, systems: PayerSystems) -> None:
    response = systems.client(north.payer).post(
        "/api/v1/opt-ins", opt_in_body(), **{"Idempotency-Key": "x" * 300}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "Idempotency-Key"
    assert not OptInRecord.objects.for_payer(north.payer).exists()
