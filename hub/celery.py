"""The Celery app. Settings come from Django's (CELERY_* in hub/settings.py).

Queues: ``pull`` (retrieval from former payers), ``screen``, ``deliver`` (SFTP),
``bulk`` (roster exchanges), ``default`` (housekeeping). Tasks name their queue.
"""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_process_shutdown

from hub.request_context import current_request_id

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

app = Celery("hub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Task modules of packages that are not Django apps of their own.
app.autodiscover_tasks(
    [
        "exchange.consents",
        "exchange.bulk",
        "exchange.webhooks",
        "exchange.member_links",
        "exchange.radar",
    ]
)


@task_prerun.connect
def _log_with_task_id(task_id: str, **_: object) -> None:
    # Log lines written by a task carry its id where a request's would carry the request id.
    current_request_id.set(task_id)


@task_postrun.connect
def _forget_task_id(**_: object) -> None:
    current_request_id.set("-")


@worker_process_shutdown.connect
def _close_kept_sftp_sessions(**_: object) -> None:
    # Sign out of payers' SFTP servers cleanly rather than leave them to time out.
    from exchange.delivery.session_pool import pooled_sessions_close

    pooled_sessions_close()
