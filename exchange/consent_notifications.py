"""Tell former payers when a Consent naming them changes (seed 000 steps 10-12).

Every change of a Consent's status owes each active subscription one notification. A
notification is a row first (so none is lost if the broker is down at that moment), then
a task that POSTs the Consent to the subscriber's endpoint with the subscription's
headers — the seed's rest-hook with ``payload`` application/fhir+json — and retries with
backoff until the endpoint answers 2xx.
"""

import json
from functools import partial

from django.db import transaction
from django.utils import timezone

from exchange.models import Consent, ConsentNotification, ConsentSubscription, SubscriptionStatus
from hub.outbound import OutboundError, PayerHttpClient


class NotificationNotDelivered(Exception):
    """The subscriber's endpoint did not take the notification; try again later."""


def consent_changed(*, consent_id: int, payer_id: int) -> None:
    """Queue one notification per active subscription to the Consent of ``payer_id``."""
    from exchange.tasks import consent_notification_send

    consent = Consent.objects.for_payer(payer_id).get(pk=consent_id)
    subscriptions = ConsentSubscription.objects.for_payer(consent.payer_id).filter(
        consent=consent, status=SubscriptionStatus.ACTIVE
    )
    with transaction.atomic():
        for subscription in subscriptions:
            if subscription.end and subscription.end < timezone.now():
                continue
            notification = ConsentNotification.objects.create(
                payer_id=consent.payer_id, subscription=subscription, consent_status=consent.status
            )
            transaction.on_commit(
                partial(consent_notification_send.delay, notification.pk, consent.payer_id)
            )


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
        with PayerHttpClient() as client:
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


def consent_subscription_give_up(*, notification_id: int, payer_id: int) -> None:
    """After the last retry: mark the subscription in error (FHIR R4 Subscription.status)."""
    notification = ConsentNotification.objects.for_payer(payer_id).get(pk=notification_id)
    ConsentSubscription.objects.for_payer(payer_id).filter(
        pk=notification.subscription_id, status=SubscriptionStatus.ACTIVE
    ).update(
        status=SubscriptionStatus.ERROR,
        error=f"notifications could not be delivered: {notification.last_error}"[:500],
    )
