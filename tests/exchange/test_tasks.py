"""The exchange's Celery tasks end a request with a reason that names what really failed."""

from exchange.models import DeliveryAttempt, ExchangeStatus
from exchange.tasks import MAX_RETRIES, exchange_request_deliver
from hub.models import DeliveryMode
from tests.conftest import Tenant
from tests.factories import (
    ConsentFactory,
    DeliveryFactory,
    ExchangeRequestFactory,
    SftpDestinationFactory,
)
from tests.support.net import free_loopback_port


def test_giving_up_on_a_delivery_does_not_blame_the_former_payer(
    north: Tenant, south: Tenant
) -> None:
    # North pushes to its own SFTP server, which refuses every connection.
    north.payer.delivery_mode = DeliveryMode.PUSH_SFTP
    north.payer.save()
    SftpDestinationFactory(payer=north.payer, host="127.0.0.1", port=free_loopback_port())
    exchange_request = ExchangeRequestFactory(
        consent=ConsentFactory(member=north.member, former_payer=south.payer),
        status=ExchangeStatus.DELIVERING,
    )
    DeliveryFactory(exchange_request=exchange_request, manifest={"files": []})

    # The last retry the task is allowed.
    exchange_request_deliver.apply(
        args=(exchange_request.pk, north.payer.pk), retries=MAX_RETRIES, task_id="last-try"
    )

    exchange_request.refresh_from_db()
    assert exchange_request.status == ExchangeStatus.FAILED
    assert exchange_request.reason_code == "gave_up_retrying"
    # South did its part; it was North's own SFTP server that kept failing.
    assert "former payer" not in exchange_request.reason_message
    assert exchange_request.reason_message.startswith(
        f"the hub gave up after {MAX_RETRIES} retries"
    )
    assert "Could not connect to the SFTP server at 127.0.0.1" in exchange_request.reason_message
    attempt = DeliveryAttempt.objects.for_payer(exchange_request.payer_id).get(task_id="last-try")
    assert (attempt.succeeded, attempt.error_code) == (False, "network")
