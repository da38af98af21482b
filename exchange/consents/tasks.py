"""Celery tasks of Consent notifications: thin wrappers around exchange/consents/notifications.py."""

from datetime import timedelta

from celery import Task, shared_task

from exchange.consents import notifications

NOTIFICATION_MAX_RETRIES = 10
_BACKOFF_CAP_SECONDS = 15 * 60
# How long past its due time an undelivered notification waits before the sweep sends it:
# long enough for a task that is merely queued behind others to run first.
SWEEP_GRACE = timedelta(minutes=5)


@shared_task(name="exchange.notify_consent_subscriber", bind=True)
def consent_notification_send(self: Task, notification_id: int, payer_id: int) -> None:
    """Deliver one Consent notification, retrying with backoff (seed 000 step 11)."""
    try:
        notifications.consent_notification_deliver(
            notification_id=notification_id, payer_id=payer_id
        )
    except notifications.NotificationNotDelivered as exc:
        if self.request.retries >= NOTIFICATION_MAX_RETRIES:
            notifications.consent_subscription_give_up(
                notification_id=notification_id, payer_id=payer_id
            )
            return
        countdown = min(_BACKOFF_CAP_SECONDS, 2 * 2**self.request.retries)
        notifications.consent_notification_retry_scheduled(
            notification_id=notification_id, payer_id=payer_id, delay_seconds=countdown
        )
        raise self.retry(countdown=countdown, max_retries=NOTIFICATION_MAX_RETRIES) from exc


@shared_task(name="exchange.sweep_consent_notifications")
def consent_notifications_sweep() -> int:
    """Send the notifications no task is working on (the broker was down when they were
    written, or a worker died with one); every 5 minutes from beat."""
    orphaned = notifications.consent_notifications_orphaned(grace=SWEEP_GRACE)
    for notification_id, payer_id in orphaned:
        consent_notification_send.delay(notification_id, payer_id)
    return len(orphaned)
