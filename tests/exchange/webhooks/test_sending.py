"""A message reaches the payer's endpoint signed, retried on the Standard Webhooks schedule
until it is taken, each try logged; a duplicated task sends nothing twice."""

from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from exchange.models import WebhookAttempt, WebhookEndpoint, WebhookMessage, WebhookSecret
from exchange.webhooks.events import WEBHOOK_TEST, webhook_messages_queue
from exchange.webhooks.sending import RETRY_SCHEDULE, webhook_message_attempt, webhook_messages_due
from exchange.webhooks.services import webhook_secret_rotate
from exchange.webhooks.tasks import webhook_message_send
from tests.conftest import Tenant
from tests.factories import WebhookEndpointFactory
from tests.support.webhook_receiver import WebhookReceiver


def _message(endpoint: WebhookEndpoint, at: datetime) -> WebhookMessage:
    (message,) = webhook_messages_queue(
        payer_id=endpoint.payer_id, event_type=WEBHOOK_TEST, at=at, endpoints=[endpoint],
        data=[{"endpoint_id": endpoint.pk}],
    )  # fmt: skip
    return message


def _try(message: WebhookMessage, receiver: WebhookReceiver, at: datetime) -> float | None:
    """Try the message with the hub's and the receiver's clocks at ``at``; return the wait."""
    receiver.now = at
    outcome = webhook_message_attempt(message_id=message.pk, payer_id=message.payer_id, now=at)
    assert outcome.sent
    return outcome.retry_in


def test_failed_deliveries_are_retried_on_the_schedule_until_one_is_taken(
    endpoint: WebhookEndpoint, receiver: WebhookReceiver
) -> None:
    receiver.fail_with = [500, 500, 500]
    now = timezone.now()
    message = _message(endpoint, now)

    waits = []
    while (wait := _try(message, receiver, now)) is not None:
        waits.append(wait)
        # Not due before the wait is over: a task that runs early sends nothing.
        early = webhook_message_attempt(
            message_id=message.pk, payer_id=message.payer_id, now=now + timedelta(seconds=wait - 1)
        )
        assert not early.sent
        now += timedelta(seconds=wait)

    assert waits == [5.0, 300.0, 1800.0]
    assert [d.status for d in receiver.received] == [500, 500, 500, 204]
    # Every try carried a signature the receiver verified with the documented recipe.
    assert all(d.error == "" for d in receiver.received)
    # The same webhook-id on every try, so the receiver can de-duplicate.
    assert {d.headers["webhook-id"] for d in receiver.received} == {message.message_id}
    assert receiver.accepted[0].payload == {
        "type": WEBHOOK_TEST, "timestamp": message.payload["timestamp"],
        "data": {"endpoint_id": endpoint.pk},
    }  # fmt: skip

    message.refresh_from_db()
    assert message.status == "delivered"
    assert message.next_attempt_at is None
    attempts = list(WebhookAttempt.objects.for_payer(endpoint.payer_id).filter(message=message))
    assert [(a.number, a.status_code, a.succeeded) for a in attempts] == [
        (1, 500, False), (2, 500, False), (3, 500, False), (4, 204, True),
    ]  # fmt: skip
    assert attempts[0].error == "the endpoint answered HTTP 500"
    assert attempts[0].next_attempt_at == attempts[1].attempted_at
    assert attempts[-1].next_attempt_at is None


def test_a_delivered_message_is_not_sent_again_by_a_duplicated_task(
    endpoint: WebhookEndpoint, receiver: WebhookReceiver
) -> None:
    message = _message(endpoint, timezone.now())
    webhook_message_send.apply(args=(message.pk, endpoint.payer_id))
    webhook_message_send.apply(args=(message.pk, endpoint.payer_id))
    later = timezone.now() + timedelta(days=1)
    assert not webhook_message_attempt(
        message_id=message.pk, payer_id=endpoint.payer_id, now=later
    ).sent
    assert len(receiver.received) == 1
    assert WebhookAttempt.objects.for_payer(endpoint.payer_id).count() == 1


def test_after_the_last_try_the_message_is_marked_failed(
    endpoint: WebhookEndpoint, receiver: WebhookReceiver
) -> None:
    receiver.fail_with = [500] * 20
    now = timezone.now()
    message = _message(endpoint, now)
    waits = []
    while (wait := _try(message, receiver, now)) is not None:
        waits.append(timedelta(seconds=wait))
        now += timedelta(seconds=wait)
    # Standard Webhooks: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
    assert waits == list(RETRY_SCHEDULE[1:])
    assert len(receiver.received) == 8
    message.refresh_from_db()
    assert message.status == "failed"
    assert message.next_attempt_at is None


def test_retry_after_on_429_pushes_the_next_try_later(
    endpoint: WebhookEndpoint, receiver: WebhookReceiver
) -> None:
    receiver.fail_with, receiver.retry_after = [429], "600"
    message = _message(endpoint, timezone.now())
    assert _try(message, receiver, timezone.now()) == 600.0


def test_an_unreachable_endpoint_is_an_error_and_retried(north: Tenant) -> None:
    endpoint = WebhookEndpointFactory(payer=north.payer, url="http://127.0.0.1:9/hooks")
    message = _message(endpoint, timezone.now())
    outcome = webhook_message_attempt(message_id=message.pk, payer_id=north.payer.pk)
    assert outcome.sent and not outcome.delivered and outcome.retry_in == 5.0
    attempt = WebhookAttempt.objects.for_payer(north.payer).get()
    assert attempt.status_code is None
    assert "Connect" in attempt.error


def test_a_forbidden_destination_fails_at_once(north: Tenant) -> None:
    # Vetted like every payer URL (hub/outbound.py): a private address is never called.
    endpoint = WebhookEndpointFactory(payer=north.payer, url="https://10.20.30.40/hooks")
    message = _message(endpoint, timezone.now())
    outcome = webhook_message_attempt(message_id=message.pk, payer_id=north.payer.pk)
    assert outcome.sent and outcome.retry_in is None
    message.refresh_from_db()
    assert message.status == "failed"
    assert "private or reserved" in WebhookAttempt.objects.for_payer(north.payer).get().error


def test_during_a_rotation_both_secrets_sign_until_the_overlap_ends(
    north: Tenant, endpoint: WebhookEndpoint, receiver: WebhookReceiver
) -> None:
    (old,) = receiver.secrets
    new = webhook_secret_rotate(endpoint=endpoint, actor=north.admin, overlap=timedelta(hours=24))
    now = timezone.now()

    receiver.secrets = [old]
    _try(_message(endpoint, now), receiver, now)
    receiver.secrets = [new]
    _try(_message(endpoint, now), receiver, now)
    assert [len(d.headers["webhook-signature"].split()) for d in receiver.received] == [2, 2]
    assert [d.status for d in receiver.received] == [204, 204]

    after_overlap = now + timedelta(hours=24, seconds=1)
    receiver.secrets = [old]
    _try(_message(endpoint, after_overlap), receiver, after_overlap)
    assert receiver.received[-1].status == 400
    assert "another secret" in receiver.received[-1].error
    assert len(receiver.received[-1].headers["webhook-signature"].split()) == 1


def test_secrets_are_encrypted_at_rest(endpoint: WebhookEndpoint) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT secret FROM exchange_webhooksecret WHERE endpoint_id = %s", [endpoint.pk]
        )
        (stored,) = cursor.fetchone()
    secret = WebhookSecret.objects.for_payer(endpoint.payer_id).get().secret
    assert secret.startswith("whsec_")
    assert "whsec_" not in stored and secret not in stored


def test_a_deactivated_endpoint_is_sent_nothing(
    endpoint: WebhookEndpoint, receiver: WebhookReceiver
) -> None:
    message = _message(endpoint, timezone.now())
    WebhookEndpoint.objects.for_payer(endpoint.payer_id).update(active=False)
    assert not webhook_message_attempt(message_id=message.pk, payer_id=endpoint.payer_id).sent
    assert receiver.received == []
    message.refresh_from_db()
    assert message.status == "failed"


@pytest.mark.parametrize(
    ("overdue", "swept"), [(timedelta(minutes=2), True), (timedelta(0), False)]
)
def test_the_sweep_takes_messages_due_that_no_task_holds(
    endpoint: WebhookEndpoint, overdue: timedelta, swept: bool
) -> None:
    message = _message(endpoint, timezone.now() - overdue)
    due = webhook_messages_due(grace=timedelta(minutes=1))
    assert ((message.pk, endpoint.payer_id) in due) is swept
