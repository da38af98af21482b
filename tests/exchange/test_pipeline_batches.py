"""A cohort's members are screened, packaged and delivered in batches (exchange/pipeline.py
``exchange_requests_screen``, ``exchange_requests_deliver``): each member ends as it would
alone, and a member the batch cannot finish goes on alone without holding up the others."""

from pathlib import Path

import orjson
import pytest
from django.test import TestCase
from django.utils import timezone
from pytest_django.fixtures import Settings

from exchange.models import Delivery, DeliveryAttempt, ExchangeRequest, ExchangeStatus
from exchange.payloads.layout import RequestFiles
from exchange.payloads.storage import LocalPayloadStorage
from exchange.pipeline import exchange_requests_deliver, exchange_requests_screen
from exchange.screening import screening_run
from exchange.screening.result import screened_name
from hub.models import DeliveryMode
from tests.conftest import Tenant
from tests.factories import ConsentFactory, ExchangeRequestFactory, SftpDestinationFactory
from tests.support.net import free_loopback_port

S = ExchangeStatus


@pytest.fixture
def storage(tmp_path: Path) -> LocalPayloadStorage:
    return LocalPayloadStorage(tmp_path / "payloads")


def _screening_requests(north: Tenant, south: Tenant, n: int) -> list[ExchangeRequest]:
    requests = []
    for _ in range(n):
        exchange_request: ExchangeRequest = ExchangeRequestFactory(
            consent=ConsentFactory(member=north.member, former_payer=south.payer),
            status=S.SCREENING,
        )
        requests.append(exchange_request)
    return requests


def _stage(storage: LocalPayloadStorage, exchange_request: ExchangeRequest) -> None:
    patient = {"resourceType": "Patient", "id": f"p{exchange_request.pk}", "gender": "female"}
    storage.write_bytes(RequestFiles(exchange_request.pk).staging_page(1), orjson.dumps(patient))


def _packaged(
    north: Tenant, south: Tenant, storage: LocalPayloadStorage, n: int
) -> list[ExchangeRequest]:
    """Return ``n`` requests of North's member, staged, screened and packaged together."""
    requests = _screening_requests(north, south, n)
    for exchange_request in requests:
        _stage(storage, exchange_request)
    exchange_requests_screen(
        request_ids=[r.pk for r in requests], payer_id=north.payer.pk, storage=storage
    )
    return requests


def _statuses(requests: list[ExchangeRequest]) -> list[str]:
    for exchange_request in requests:
        exchange_request.refresh_from_db()
    return [exchange_request.status for exchange_request in requests]


def test_a_batch_screens_and_packages_each_member_and_leaves_a_broken_one_to_go_alone(
    north: Tenant, south: Tenant, storage: LocalPayloadStorage
) -> None:
    requests = _screening_requests(north, south, 3)
    # The middle member's staging is missing: its screening raises.
    _stage(storage, requests[0])
    _stage(storage, requests[2])

    left = exchange_requests_screen(
        request_ids=[r.pk for r in requests], payer_id=north.payer.pk, storage=storage
    )

    assert left == [requests[1].pk]
    assert _statuses(requests) == [S.DELIVERING, S.SCREENING, S.DELIVERING]
    for exchange_request in (requests[0], requests[2]):
        assert [e.status for e in exchange_request.events.order_by("pk")] == [
            S.PACKAGING,
            S.DELIVERING,
        ]
        assert exchange_request.events.order_by("pk")[0].message == (
            "Checked your records against the rule: 1 may be shared, 0 stay behind."
        )
        delivery = Delivery.objects.for_payer(north.payer).get(exchange_request=exchange_request)
        assert delivery.manifest["resourceCounts"] == {"Patient": 1, "Provenance": 1}
    assert not requests[1].events.exists()


def test_a_batch_delivers_each_member_with_its_own_attempt_and_disclosure(
    north: Tenant, south: Tenant, storage: LocalPayloadStorage, settings: Settings, tmp_path: Path
) -> None:
    settings.SFTP_REPOSITORY_DIR = tmp_path / "repository"
    requests = _packaged(north, south, storage, 2)

    with TestCase.captureOnCommitCallbacks(execute=True):
        left = exchange_requests_deliver(
            request_ids=[r.pk for r in requests],
            payer_id=north.payer.pk,
            task_id="batch-1",
            storage=storage,
        )

    assert left == []
    assert _statuses(requests) == [S.DELIVERED, S.DELIVERED]
    for exchange_request in requests:
        folder = settings.SFTP_REPOSITORY_DIR / north.payer.slug / south.payer.slug
        assert (folder / str(exchange_request.pk) / "manifest.json").exists()
        attempt = DeliveryAttempt.objects.for_payer(north.payer).get(
            delivery__exchange_request=exchange_request
        )
        assert (attempt.task_id, attempt.succeeded) == ("batch-1", True)
        event = exchange_request.events.get(status=S.DELIVERED)
        assert event.message == f"Delivered to {north.payer.name}: 2 files."
        # Delivered: the staged pages are gone (the package stays until retention ends).
        assert not storage.list(RequestFiles(exchange_request.pk).staging)


def test_a_server_that_is_away_hands_the_whole_rest_of_the_batch_to_the_single_step(
    north: Tenant, south: Tenant, storage: LocalPayloadStorage
) -> None:
    north.payer.delivery_mode = DeliveryMode.PUSH_SFTP
    north.payer.save()
    SftpDestinationFactory(payer=north.payer, host="127.0.0.1", port=free_loopback_port())
    requests = _packaged(north, south, storage, 3)

    left = exchange_requests_deliver(
        request_ids=[r.pk for r in requests],
        payer_id=north.payer.pk,
        task_id="batch-2",
        storage=storage,
    )

    # The first member met the fault; the others were not tried against a server that is away.
    assert left == [r.pk for r in requests]
    assert _statuses(requests) == [S.DELIVERING] * 3
    (attempt,) = DeliveryAttempt.objects.for_payer(north.payer).all()
    assert attempt.delivery.exchange_request_id == requests[0].pk
    assert (attempt.succeeded, attempt.error_code) == (False, "network")


def test_a_permanent_fault_fails_that_member_as_it_would_alone(
    north: Tenant, south: Tenant, storage: LocalPayloadStorage
) -> None:
    # Push chosen, but no SFTP destination set up: nothing a retry can fix.
    north.payer.delivery_mode = DeliveryMode.PUSH_SFTP
    north.payer.save()
    requests = _packaged(north, south, storage, 2)

    left = exchange_requests_deliver(
        request_ids=[r.pk for r in requests],
        payer_id=north.payer.pk,
        task_id="batch-3",
        storage=storage,
    )

    assert left == []
    assert _statuses(requests) == [S.FAILED, S.FAILED]
    assert {r.reason_code for r in requests} == {"no_destination"}


def test_a_screened_file_a_crash_cut_short_is_screened_again_before_packaging(
    north: Tenant, south: Tenant, storage: LocalPayloadStorage
) -> None:
    (exchange_request,) = _screening_requests(north, south, 1)
    _stage(storage, exchange_request)
    screening_run(
        request_id=exchange_request.pk,
        request_date=timezone.localdate(exchange_request.opted_in_at),
        policy=exchange_request.consent.policy,
        storage=storage,
    )
    ExchangeRequest.objects.for_payer(north.payer).filter(pk=exchange_request.pk).update(
        status=S.PACKAGING
    )
    # Power lost before the page cache reached the disk: the file is short of its end.
    screened = storage.path(screened_name(exchange_request.pk, "Patient"))
    screened.write_bytes(screened.read_bytes()[:-7])

    left = exchange_requests_screen(
        request_ids=[exchange_request.pk], payer_id=north.payer.pk, storage=storage
    )

    assert left == []
    assert _statuses([exchange_request]) == [S.DELIVERING]
    delivery = Delivery.objects.for_payer(north.payer).get(exchange_request=exchange_request)
    assert delivery.manifest["resourceCounts"] == {"Patient": 1, "Provenance": 1}
