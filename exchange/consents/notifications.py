"""Deliver the notifications owed to former payers subscribed to a Consent (seed 000 steps 10-12).

A notification is an outbox row (exchange/consents/outbox.py) written with the change it
reports. Delivering it POSTs the Consent as it is now to the subscriber's endpoint with the
subscription's headers — the seed's rest-hook with ``payload`` application/fhir+json —
and is retried with backoff until the endpoint answers 2xx (exchange/consents/tasks.py).
"""

import json
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from exchange.models import ConsentNotification, ConsentSubscription, SubscriptionStatus
from hub.client_certificates import holder_http_client
from hub.outbound import OutboundError


class NotificationNotDelivered(Exception):
    """The subscriber's endpoint did not take the notification; try again later."""


def consent_notification_deliver(*, notification_id: int, payer_id: int) -> None:
    """POST the Consent as it is now to the subscriber; raise NotificationNotDelivered to retry."""
    notification = (
        ConsentNotification.objects.for_payer(payer_id)
        .select_related("subscription", "subscription__consent")
        .get(pk=notification_id)
    )
    subscription = notification.subscription
    # Nothing is owed once sent, nor to a subscription its subscriber ended (FHIR R4
    # Subscription.status "off") or that was given up on.
    if notification.delivered_at is not None or subscription.status != SubscriptionStatus.ACTIVE:
        return
    headers = {"Content-Type": "application/fhir+json"}
    for line in filter(None, subscription.headers.splitlines()):
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    body = json.dumps(subscription.consent.fhir_resource) if subscription.payload else ""
    ConsentNotification.objects.for_payer(payer_id).filter(pk=notification.pk).update(
        attempts=notification.attempts + 1
    )
    try:
        with holder_http_client(requesting_payer=payer_id) as client:
            response = client.post(subscription.endpoint, content=body, headers=headers)
    except OutboundError as exc:
        _failed(notification, str(exc))
        raise NotificationNotDelivered(str(exc)) from exc
    if not 200 <= response.status_code < 300:
        message = f"the endpoint answered HTTP {response.status_code}"
        _failed(notification, message)
        raise NotificationNotDelivered(message)
    ConsentNotification.objects.for_payer(payer_id).filter(pk=notification.pk).update(
        delivered_at=timezone.now(), last_error=""
    )


def _failed(notification: ConsentNotification, message: str) -> None:
    ConsentNotification.objects.for_payer(notification.payer_id).filter(pk=notification.pk).update(
        last_error=message[:500]
    )


def consent_notification_retry_scheduled(
    *, notification_id: int, payer_id: int, delay_seconds: float
) -> None:
    """Note that a task tries the notification again in ``delay_seconds``, so the sweep
    leaves it to that task rather than sending it a second time."""
    ConsentNotification.objects.for_payer(payer_id).filter(pk=notification_id).update(
        next_attempt_at=timezone.now() + timedelta(seconds=delay_seconds)
    )


def consent_subscription_give_up(*, notification_id: int, payer_id: int) -> None:
    """After the last retry: mark the subscription in error (FHIR R4 Subscription.status)."""
    notification = ConsentNotification.objects.for_payer(payer_id).get(pk=notification_id)
    ConsentSubscription.objects.for_payer(payer_id).filter(
        pk=notification.subscription_id, status=SubscriptionStatus.ACTIVE
    ).update(
        status=SubscriptionStatus.ERROR,
        error=f"notifications could not be delivered: {notification.last_error}"[:500],
    )


def consent_notifications_orphaned(*, grace: timedelta, limit: int = 500) -> list[tuple[int, int]]:
    """Return (notification id, payer id) of undelivered notifications no task is working on:
    owed to an active subscription, and ``grace`` past the time a task should have tried."""
    due = timezone.now() - grace
    rows = (
        ConsentNotification.objects.across_payers(
            reason="the outbox sweep finds every payer's unsent notifications; each is sent scoped"
        )
        .filter(
            Q(delivered_at__isnull=True)
            & Q(next_attempt_at__lt=due)
            & Q(subscription__status=SubscriptionStatus.ACTIVE)
        )
        .order_by("next_attempt_at")
        .values_list("pk", "payer_id")[:limit]
    )
    return list(rows)
