"""A withdrawal owes each subscribed former payer a notification in its own transaction (an
outbox), and the beat sweep sends what no task took — so none is lost if the broker is down
when the withdrawal commits (seed 000 steps 10-12)."""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from exchange.consents.tasks import SWEEP_GRACE, consent_notifications_sweep
from exchange.models import (
    ConsentNotification,
    ConsentStatus,
    ConsentSubscription,
    ExchangeRequest,
    ExchangeStatus,
    SubscriptionStatus,
)
from exchange.services import exchange_request_withdraw
from tests.conftest import Tenant
from tests.factories import ExchangeRequestFactory
from tests.support.celery_worker import running_worker, wait_for
from tests.support.http_stub import HttpStub, http_stub


class AfterTheWithdrawal(Exception):
    """Something that goes wrong in the same transaction, after the withdrawal."""


@pytest.fixture
def receiver() -> Iterator[HttpStub]:
    with http_stub() as stub:
        yield stub


@pytest.fixture
def subscribed_request(north: Tenant, south: Tenant, receiver: HttpStub) -> ExchangeRequest:
    """North's member asked South; South subscribed to the Consent's changes."""
    exchange_request: ExchangeRequest = ExchangeRequestFactory(
        consent__member=north.member,
        consent__former_payer=south.payer,
        status=ExchangeStatus.RETRIEVING,
    )
    ConsentSubscription.objects.create(
        payer=north.payer,
        consent=exchange_request.consent,
        subscriber=south.payer,
        criteria=f"Consent?_id={exchange_request.consent_id}",
        endpoint=f"{receiver.base}/consent-updates",
        payload="application/fhir+json",
        headers="Authorization: Bearer south-hook",
    )
    return exchange_request


def test_a_withdrawal_rolled_back_owes_nothing(
    subscribed_request: ExchangeRequest, north: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    with (
        django_capture_on_commit_callbacks() as callbacks,
        pytest.raises(AfterTheWithdrawal),
        transaction.atomic(),
    ):
        exchange_request_withdraw(exchange_request=subscribed_request, actor=north.member)
        assert ConsentNotification.objects.for_payer(north.payer).count() == 1
        raise AfterTheWithdrawal

    assert callbacks == []
    assert not ConsentNotification.objects.for_payer(north.payer).exists()
    subscribed_request.consent.refresh_from_db()
    assert subscribed_request.consent.status == ConsentStatus.ACTIVE


@pytest.mark.django_db(transaction=True)  # the worker must see the committed rows
def test_a_notification_no_task_took_is_sent_by_the_sweep(
    subscribed_request: ExchangeRequest,
    north: Tenant,
    receiver: HttpStub,
) -> None:
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.flushdb()
    exchange_request_withdraw(exchange_request=subscribed_request, actor=north.member)
    # The withdrawal committed and handed its task to the broker, which then lost it (Redis
    # restarted without persistence, as it runs here), before any worker took it.
    assert broker.llen("deliver") == 1
    broker.flushdb()
    notification = ConsentNotification.objects.for_payer(north.payer).get()
    assert notification.delivered_at is None

    # Within the grace period a task may still be on its way: the sweep leaves it alone.
    assert consent_notifications_sweep() == 0
    ConsentNotification.objects.for_payer(north.payer).update(
        next_attempt_at=timezone.now() - SWEEP_GRACE - timedelta(seconds=1)
    )
    with running_worker():
        assert consent_notifications_sweep() == 1
        wait_for(
            lambda: (
                ConsentNotification.objects.for_payer(north.payer)
                .filter(delivered_at__isnull=False)
                .exists()
            )
        )

    [post] = [r for r in receiver.received if r.method == "POST"]
    assert post.path == "/consent-updates"
    assert post.headers["Authorization"] == "Bearer south-hook"
    assert b'"status": "inactive"' in post.body
    # Delivered: the next sweep owes nothing more.
    assert consent_notifications_sweep() == 0


def test_the_sweep_leaves_subscriptions_in_error_or_ended(
    subscribed_request: ExchangeRequest, north: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        exchange_request_withdraw(exchange_request=subscribed_request, actor=north.member)
    ConsentNotification.objects.for_payer(north.payer).update(
        next_attempt_at=timezone.now() - SWEEP_GRACE - timedelta(seconds=1)
    )
    for status in (SubscriptionStatus.ERROR, SubscriptionStatus.OFF):
        ConsentSubscription.objects.for_payer(north.payer).update(status=status)
        assert consent_notifications_sweep() == 0
