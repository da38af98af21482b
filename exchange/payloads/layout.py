"""Where one request's files lie in PayloadStorage: a folder per request, one per step in it.

::

    requests/<id>/staging/<page, 5 digits>.ndjson   retrieval's pages, one resource a line
    requests/<id>/staging/bulk-<job>-<file>-<n>.ndjson  the member's lines of a Group export
    requests/<id>/screened/                         what screening kept, quarantined, counted
    requests/<id>/package/                          the Bundle (or NDJSON) and manifest.json

    cohorts/<id>/jobs/<job>/shared-<file>.ndjson    an export's resources of no one member
    cohorts/<id>/cohort-manifest.json               every member's outcome and files

A request's folder, and a cohort's, is what retention purges as a whole
(exchange/payloads/retention.py).
"""

from dataclasses import dataclass

REQUESTS_FOLDER = "requests"
COHORTS_FOLDER = "cohorts"


@dataclass(frozen=True)
class RequestFiles:
    """The folders of one request's files, as PayloadStorage names."""

    request_id: int

    @property
    def root(self) -> str:
        return f"{REQUESTS_FOLDER}/{self.request_id}"

    @property
    def staging(self) -> str:
        return f"{self.root}/staging"

    @property
    def screened(self) -> str:
        return f"{self.root}/screened"

    @property
    def package(self) -> str:
        return f"{self.root}/package"

    def staging_page(self, number: int) -> str:
        """Return the name of staged page ``number`` (from 1); names sort in page order."""
        return f"{self.staging}/{number:05d}.ndjson"

    def bulk_page(self, *, job_id: int, file_index: int, segment: int) -> str:
        """Return the name of this member's ``segment``-th run of lines (from 0) in output
        file ``file_index`` of Group export ``job_id``; names sort in file order."""
        return f"{self.staging}/bulk-{job_id:08d}-{file_index:04d}-{segment:04d}.ndjson"

    def bulk_cited_page(self, *, job_id: int) -> str:
        """Return the name of the page of the export's shared resources this member cites."""
        return f"{self.staging}/bulk-{job_id:08d}-cited.ndjson"


@dataclass(frozen=True)
class CohortFiles:
    """The files of one cohort's own (its members' are under their requests)."""

    cohort_id: int

    @property
    def root(self) -> str:
        return f"{COHORTS_FOLDER}/{self.cohort_id}"

    def shared(self, *, job_id: int, file_index: int) -> str:
        """Return the name of the export's resources in file ``file_index`` that are no one
        member's (the Practitioners and Organizations members' records cite)."""
        return f"{self.root}/jobs/{job_id}/shared-{file_index:04d}.ndjson"

    def job_folder(self, job_id: int) -> str:
        return f"{self.root}/jobs/{job_id}"

    @property
    def manifest(self) -> str:
        return f"{self.root}/cohort-manifest.json"
