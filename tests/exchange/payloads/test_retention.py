"""Members' records leave the hub's disk once their request has ended and the retention passed."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from exchange.models import Cohort, CohortStatus, ExchangeRequest, ExchangeStatus
from exchange.payloads.retention import payloads_purge
from exchange.payloads.storage import LocalPayloadStorage
from tests.factories import CohortFactory, ExchangeRequestFactory

RETENTION = timedelta(days=7)


def _with_files(storage: LocalPayloadStorage, status: str, ended_days_ago: int) -> ExchangeRequest:
    exchange_request = ExchangeRequestFactory(status=status)
    ExchangeRequest.objects.for_payer(exchange_request.payer_id).filter(
        pk=exchange_request.pk
    ).update(status_changed_at=timezone.now() - timedelta(days=ended_days_ago))
    for name in ("staging/00001.ndjson", "screened/Patient.ndjson", "package/bundle.json"):
        storage.write_bytes(
            f"requests/{exchange_request.pk}/{name}", b'{"resourceType":"Patient"}\n'
        )
    return exchange_request


@pytest.fixture
def storage(tmp_path: Path) -> LocalPayloadStorage:
    return LocalPayloadStorage(tmp_path)


def test_ended_requests_are_purged_after_the_retention_and_not_before(
    storage: LocalPayloadStorage, db: None
) -> None:
    delivered_long_ago = _with_files(storage, ExchangeStatus.DELIVERED, 8)
    failed_long_ago = _with_files(storage, ExchangeStatus.FAILED, 30)
    delivered_yesterday = _with_files(storage, ExchangeStatus.DELIVERED, 1)
    # Still in flight, however old: it may resume from its staged pages.
    retrieving_long_ago = _with_files(storage, ExchangeStatus.RETRIEVING, 30)

    assert payloads_purge(storage=storage, retention=RETENTION) == 2

    remaining = {name.split("/")[1] for name in storage.list("requests")}
    assert remaining == {str(delivered_yesterday.pk), str(retrieving_long_ago.pk)}
    assert not (storage.root / f"requests/{delivered_long_ago.pk}").exists()
    assert not (storage.root / f"requests/{failed_long_ago.pk}").exists()
    # Running again finds nothing more to do.
    assert payloads_purge(storage=storage, retention=RETENTION) == 0


def test_a_folder_whose_request_is_gone_is_purged(storage: LocalPayloadStorage, db: None) -> None:
    storage.write_bytes("requests/999999/package/bundle.json", b"{}")
    assert payloads_purge(storage=storage, retention=RETENTION) == 1
    assert storage.list("requests") == []


def test_nothing_to_purge_on_a_fresh_disk(storage: LocalPayloadStorage, db: None) -> None:
    assert payloads_purge(storage=storage, retention=RETENTION) == 0


def _cohort_with_files(storage: LocalPayloadStorage, status: str, ended_days_ago: int) -> Cohort:
    cohort = CohortFactory(status=status)
    Cohort.objects.for_payer(cohort.payer_id).filter(pk=cohort.pk).update(
        status_changed_at=timezone.now() - timedelta(days=ended_days_ago)
    )
    storage.write_bytes(f"cohorts/{cohort.pk}/cohort-manifest.json", b"{}")
    storage.write_bytes(f"cohorts/{cohort.pk}/jobs/1/shared-0000.ndjson", b"{}\n")
    return cohort


def test_a_cohorts_own_files_go_once_every_member_has_an_outcome_and_the_retention_passed(
    storage: LocalPayloadStorage, db: None
) -> None:
    """Its manifest lists members' plan ids and outcomes; its shared files cite providers."""
    completed_long_ago = _cohort_with_files(storage, CohortStatus.COMPLETED, 8)
    cancelled_long_ago = _cohort_with_files(storage, CohortStatus.CANCELLED, 8)
    completed_yesterday = _cohort_with_files(storage, CohortStatus.COMPLETED, 1)
    # Members still being delivered may need the shared files, however long it takes.
    delivering_long_ago = _cohort_with_files(storage, CohortStatus.DELIVERING, 30)
    storage.write_bytes("cohorts/999999/cohort-manifest.json", b"{}")

    assert payloads_purge(storage=storage, retention=RETENTION) == 3

    remaining = {name.split("/")[1] for name in storage.list("cohorts")}
    assert remaining == {str(completed_yesterday.pk), str(delivering_long_ago.pk)}
    for gone in (completed_long_ago, cancelled_long_ago):
        assert not (storage.root / f"cohorts/{gone.pk}").exists()
    assert payloads_purge(storage=storage, retention=RETENTION) == 0
