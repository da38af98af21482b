"""Owe each active subscriber a notification when a Consent changes (seed 000 step 10).

The rows are written in the caller's transaction — the same one that changes the
Consent — and handed to a worker only once it commits: a rolled-back change owes
nothing, and a committed one is never lost, even if the broker is down at that moment
(the beat sweep in exchange/consents/tasks.py sends what no task took).
"""

from functools import partial

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from exchange.consents.tasks import consent_notification_send
from exchange.models import Consent, ConsentNotification, ConsentSubscription, SubscriptionStatus


def consent_notifications_queue(*, consent: Consent) -> list[ConsentNotification]:
    """Write one notification per active, unexpired subscription to ``consent``."""
    subscriptions = ConsentSubscription.objects.for_payer(consent.payer_id).filter(
        Q(end__isnull=True) | Q(end__gte=timezone.now()),
        consent=consent,
        status=SubscriptionStatus.ACTIVE,
    )
    notifications = [
        ConsentNotification.objects.create(
            payer_id=consent.payer_id, subscription=subscription, consent_status=consent.status
        )
        for subscription in subscriptions
    ]
    for notification in notifications:
        transaction.on_commit(
            partial(consent_notification_send.delay, notification.pk, consent.payer_id),
            # A broker that is down must not undo the committed change: the sweep resends.
            robust=True,
        )
    return notifications
