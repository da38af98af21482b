"""The repository's housekeeping task (queue ``default``, hourly from beat)."""

from celery import shared_task

from exchange.repository.services import repository_files_purge


@shared_task(name="sftp_repository.purge")
def purge_repository() -> int:
    """Purge collected files and files past the retention period; safe to run at any time."""
    return repository_files_purge()
