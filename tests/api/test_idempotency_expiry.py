"""Idempotency keys are kept API_IDEMPOTENCY_KEY_HOURS: within it a POST sent again is
replayed; after it the same key is a new POST; beat's hourly task deletes the expired keys
of every payer and nothing else."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from api.models import IdempotencyKey
from api.tasks import api_idempotency_keys_purge
from exchange.models import OptInRecord
from tests.api.conftest import opt_in_body
from tests.api.payer_systems import PayerSystems
from tests.conftest import Tenant

pytestmark = pytest.mark.usefixtures("south_holds_records", "west")
KEY = "enrollment-batch-9"


def _age(key: str, hours: float) -> None:
    IdempotencyKey.objects.across_payers(reason="test").filter(key=key).update(
        created_at=timezone.now() - timedelta(hours=hours)
    )


def test_the_keys_last_a_day_unless_configured() -> None:
    assert settings.API_IDEMPOTENCY_KEY_HOURS == 24
    assert settings.CELERY_BEAT_SCHEDULE["purge-api-idempotency-keys"] == {
        "task": "api.purge_idempotency_keys",
        "schedule": 60 * 60,
    }


def test_a_post_sent_again_within_the_day_is_replayed(north: Tenant, systems: PayerSystems) -> None:
    client, body = systems.client(north.payer), opt_in_body()
    first = client.post("/api/v1/opt-ins", body, **{"Idempotency-Key": KEY})
    _age(KEY, settings.API_IDEMPOTENCY_KEY_HOURS - 0.5)
    again = client.post("/api/v1/opt-ins", body, **{"Idempotency-Key": KEY})
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert OptInRecord.objects.for_payer(north.payer).count() == 1


def test_after_expiry_the_key_is_a_new_post(north: Tenant, systems: PayerSystems) -> None:
    client, body = systems.client(north.payer), opt_in_body()
    first = client.post("/api/v1/opt-ins", body, **{"Idempotency-Key": KEY})
    assert client.post(first.json()["links"]["withdraw"]).status_code == 200
    _age(KEY, settings.API_IDEMPOTENCY_KEY_HOURS + 0.5)

    # Taken as new: the member's withdrawn opt-in does not stand in the way of a second one.
    again = client.post("/api/v1/opt-ins", body, **{"Idempotency-Key": KEY})

    assert again.status_code == 201, again.json()
    assert "Idempotent-Replayed" not in again
    assert again.json()["id"] != first.json()["id"]
    assert OptInRecord.objects.for_payer(north.payer).count() == 2
    # The key now answers with the new response, for another day.
    (kept,) = IdempotencyKey.objects.for_payer(north.payer).filter(key=KEY)
    assert kept.response_body["id"] == again.json()["id"]
    replay = client.post("/api/v1/opt-ins", body, **{"Idempotency-Key": KEY})
    assert replay["Idempotent-Replayed"] == "true"


def test_after_expiry_another_body_with_the_key_is_no_longer_a_422(
    north: Tenant, systems: PayerSystems
) -> None:
    client, body = systems.client(north.payer), opt_in_body()
    client.post("/api/v1/opt-ins", body, **{"Idempotency-Key": KEY})
    other = {**body, "member": {**body["member"], "member_id": "NSH-000043"}}
    refused = client.post("/api/v1/opt-ins", other, **{"Idempotency-Key": KEY})
    assert refused.status_code == 422
    (error,) = refused.json()["errors"]
    assert error["field"] == "Idempotency-Key"
    assert f"The key '{KEY}' was used with another request" in error["message"]
    _age(KEY, settings.API_IDEMPOTENCY_KEY_HOURS + 0.5)
    assert client.post("/api/v1/opt-ins", other, **{"Idempotency-Key": KEY}).status_code == 201


def test_the_hourly_task_deletes_expired_keys_of_every_payer_only(
    north: Tenant, south: Tenant, systems: PayerSystems
) -> None:
    north_client, south_client = systems.client(north.payer), systems.client(south.payer)
    south_body = opt_in_body(previous_payers=[], concurrent_payers=[
        {"payer": "west", "member_id": "WP-1", "coverage_start": "2024-01-01"}
    ])  # fmt: skip
    north_client.post("/api/v1/opt-ins", opt_in_body(), **{"Idempotency-Key": "old-north"})
    south_client.post("/api/v1/opt-ins", south_body, **{"Idempotency-Key": "old-south"})
    north_client.post(
        "/api/v1/opt-ins",
        opt_in_body(member={**opt_in_body()["member"], "member_id": "NSH-7"}),
        **{"Idempotency-Key": "fresh-north"},
    )
    _age("old-north", settings.API_IDEMPOTENCY_KEY_HOURS + 1)
    _age("old-south", settings.API_IDEMPOTENCY_KEY_HOURS + 1)

    assert api_idempotency_keys_purge.apply().get() == 2
    kept = IdempotencyKey.objects.across_payers(reason="test").values_list("key", flat=True)
    assert list(kept) == ["fresh-north"]
    # Run again (a second beat, a retried task): nothing more to do.
    assert api_idempotency_keys_purge.apply().get() == 0
    # What the keys answered stays: the opt-ins are untouched.
    assert OptInRecord.objects.for_payer(north.payer).count() == 2
    assert OptInRecord.objects.for_payer(south.payer).count() == 1
