"""Celery tasks of webhooks: thin wrappers around exchange/webhooks/sending.py (STYLE.md #3).

A failed try is retried by the same task when the next one is due within an hour (5 s,
5 min, 30 min); the longer waits of the schedule (2 h to 10 h) are left to the sweep, every
minute from beat: a countdown beyond the broker's visibility timeout (4 hours,
hub/settings.py) would have Redis hand the waiting task out a second time.
"""

from datetime import timedelta

from celery import Task, shared_task

from exchange.webhooks import sending

# The longest a task waits for its retry; anything later is the sweep's.
TASK_WAIT_LIMIT_SECONDS = 60 * 60
# How long past its due time a message waits before the sweep sends it: long enough for a
# task that is merely queued behind others to run first.
SWEEP_GRACE = timedelta(minutes=1)


@shared_task(name="exchange.webhook_send", bind=True, max_retries=None)
def webhook_message_send(self: Task, message_id: int, payer_id: int) -> None:
    """Try to deliver one webhook message if a try is due; retry it when the next is near."""
    outcome = sending.webhook_message_attempt(message_id=message_id, payer_id=payer_id)
    if outcome.retry_in is not None and outcome.retry_in <= TASK_WAIT_LIMIT_SECONDS:
        raise self.retry(countdown=outcome.retry_in)


def webhook_message_enqueue(*, message_id: int, payer_id: int, countdown: float = 0) -> None:
    """Hand a message to a worker, unless its next try is the sweep's to start."""
    if countdown <= TASK_WAIT_LIMIT_SECONDS:
        webhook_message_send.apply_async((message_id, payer_id), countdown=countdown)


@shared_task(name="exchange.sweep_webhook_messages")
def webhook_messages_sweep() -> int:
    """Send the messages whose try is due and that no task holds (every minute from beat)."""
    due = sending.webhook_messages_due(grace=SWEEP_GRACE)
    for message_id, payer_id in due:
        webhook_message_send.delay(message_id, payer_id)
    return len(due)
