"""Purge members' records from the hub once a request has ended (ARCHITECTURE.md "Security
model": payload files are purged after delivery plus a retention period).

The hub keeps a request's files (its ``RequestFiles.root``: staged pages, screened files,
the package) only while it may need them: to resume, to retry, or for a plan administrator to
look into a delivery. Once the request has ended — delivered, failed, withdrawn, cancelled,
unmatched — and the retention period has passed, they go; so does a cohort's own folder
once every member has an outcome. What was delivered into the
hub's SFTP repository has its own retention (exchange/repository).
"""

from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from django.db.models import QuerySet
from django.utils import timezone

from exchange.models import Cohort, CohortStatus, ExchangeRequest, ExchangeStatus
from exchange.payloads.layout import COHORTS_FOLDER, REQUESTS_FOLDER, CohortFiles, RequestFiles
from exchange.payloads.storage import PayloadStorage
from exchange.state_machine import ENDED

_BATCH = 500
_REASON = "housekeeping of the hub's own payload store: every payer's ended work, by id only"


def payloads_purge(*, storage: PayloadStorage, retention: timedelta) -> int:
    """Delete the folders of requests and cohorts that ended more than ``retention`` ago;
    return how many.

    A cohort's own folder holds its manifest (members' plan ids and outcomes) and the
    resources its exports shared among members; it ends when every member has an outcome.
    Walks the folders that exist rather than the tables, so the work is bounded by what is
    still stored, not by the history of every request.
    """
    finished_before = timezone.now() - retention
    return _ended_folders_purge(
        storage=storage,
        folder=REQUESTS_FOLDER,
        rows=ExchangeRequest.objects.across_payers(reason=_REASON),
        ended=ENDED | {ExchangeStatus.FAILED},
        finished_before=finished_before,
        root_of=lambda pk: RequestFiles(pk).root,
    ) + _ended_folders_purge(
        storage=storage,
        folder=COHORTS_FOLDER,
        rows=Cohort.objects.across_payers(reason=_REASON),
        ended={CohortStatus.COMPLETED, CohortStatus.CANCELLED},
        finished_before=finished_before,
        root_of=lambda pk: CohortFiles(pk).root,
    )


def _ended_folders_purge(
    *,
    storage: PayloadStorage,
    folder: str,
    rows: "QuerySet[ExchangeRequest] | QuerySet[Cohort]",
    ended: Collection[str],
    finished_before: datetime,
    root_of: Callable[[int], str],
) -> int:
    ids = sorted(
        int(entry.name)
        for entry in storage.children(folder)
        if entry.folder and entry.name.isdigit()
    )
    purged = 0
    for start in range(0, len(ids), _BATCH):
        batch = ids[start : start + _BATCH]
        present = rows.filter(pk__in=batch)
        expired = set(
            present.filter(status__in=ended, status_changed_at__lt=finished_before).values_list(
                "pk", flat=True
            )
        )
        # A folder whose row no longer exists belongs to no one: it goes too.
        orphans = set(batch) - set(present.values_list("pk", flat=True))
        for pk in sorted(expired | orphans):
            storage.delete_tree(root_of(pk))
            purged += 1
    return purged
