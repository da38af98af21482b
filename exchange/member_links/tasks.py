"""Celery tasks of authorization links: thin wrappers around exchange/member_links/sending.py
(STYLE.md #3).

A failed try is retried by the same task when the next one is due within an hour; longer
waits are left to the sweep, every five minutes from beat: a countdown beyond the broker's
visibility timeout (4 hours, hub/settings.py) would have Redis hand the waiting task out a
second time.
"""

from datetime import timedelta

from celery import Task, shared_task

from exchange.member_links import sending

# The longest a task waits for its retry; anything later is the sweep's.
TASK_WAIT_LIMIT_SECONDS = 60 * 60
# How long past its due time a link waits before the sweep sends it: long enough for a task
# that is merely queued behind others to run first.
SWEEP_GRACE = timedelta(minutes=2)


@shared_task(name="exchange.member_link_send", bind=True, max_retries=None)
def member_authorization_link_send(self: Task, link_id: int, payer_id: int) -> None:
    """Mail one member their authorization link if a try is due; retry when the next is near."""
    outcome = sending.member_authorization_link_send(link_id=link_id, payer_id=payer_id)
    if outcome.retry_in is not None and outcome.retry_in <= TASK_WAIT_LIMIT_SECONDS:
        raise self.retry(countdown=outcome.retry_in)


@shared_task(name="exchange.sweep_member_links")
def member_authorization_links_sweep() -> int:
    """Send the links whose try is due and that no task holds (every five minutes from beat)."""
    due = sending.member_authorization_links_due(grace=SWEEP_GRACE)
    for link_id, payer_id in due:
        member_authorization_link_send.delay(link_id, payer_id)
    return len(due)
