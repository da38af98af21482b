"""Purge members' records from the hub once a request has ended (ARCHITECTURE.md "Security
model": payload files are purged after delivery plus a retention period).

The hub keeps a request's files (its ``RequestFiles.root``: staged pages, screened files,
the package) only while it may need them: to resume, to retry, or for a plan administrator to
look into a delivery. Once the request has ended — delivered, failed, withdrawn, cancelled,
unmatched — and the retention period has passed, they go. What was delivered into the
hub's SFTP repository has its own retention (exchange/repository).
"""

from datetime import timedelta

from django.utils import timezone

from exchange.models import ExchangeRequest, ExchangeStatus
from exchange.payloads.layout import REQUESTS_FOLDER, RequestFiles
from exchange.payloads.storage import PayloadStorage
from exchange.state_machine import ENDED

_BATCH = 500


def payloads_purge(*, storage: PayloadStorage, retention: timedelta) -> int:
    """Delete the folders of requests that ended more than ``retention`` ago; return how many.

    Walks the folders that exist rather than the table, so the work is bounded by what is
    still stored, not by the history of every request.
    """
    request_ids = sorted(
        int(entry.name)
        for entry in storage.children(REQUESTS_FOLDER)
        if entry.folder and entry.name.isdigit()
    )
    finished_before = timezone.now() - retention
    purged = 0
    for start in range(0, len(request_ids), _BATCH):
        batch = request_ids[start : start + _BATCH]
        rows = ExchangeRequest.objects.across_payers(
            reason="housekeeping of the hub's own disk: every payer's ended requests, by id only"
        ).filter(pk__in=batch)
        expired = set(
            rows.filter(
                status__in=ENDED | {ExchangeStatus.FAILED}, status_changed_at__lt=finished_before
            ).values_list("pk", flat=True)
        )
        # A folder whose request no longer exists belongs to no one: it goes too.
        orphans = set(batch) - set(rows.values_list("pk", flat=True))
        for request_id in sorted(expired | orphans):
            storage.delete_tree(RequestFiles(request_id).root)
            purged += 1
    return purged
