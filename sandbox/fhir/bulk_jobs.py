"""Run asynchronous bulk jobs and keep their NDJSON files (FHIR Bulk Data Access STU2 §Async).

A kick-off answers 202 with ``Content-Location: [base]/bulkstatus/<job>``. While the job runs
on its background thread the status URL answers 202 with ``Retry-After`` and ``X-Progress``;
then 200 with the completion manifest, or (§Response - Error Status) the 4xx/5xx and
OperationOutcome of a request the job found it could not carry out. Output is written line by line to files on disk as
the job goes, so memory stays flat however large the group; the files are served at
``[base]/bulkfiles/<job>/<name>`` to bearer tokens of the client that kicked the job off
(``requiresAccessToken`` true). ``DELETE`` on the status URL cancels the job and removes its
files; files expire ``file_ttl_s`` seconds after completion, after which the status and file
URLs answer 410 Gone.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sandbox.fhir.outcomes import FhirError

Resource = dict[str, Any]
logger = logging.getLogger("sandbox")

STATUS_RUNNING = "running"
STATUS_COMPLETE = "complete"
STATUS_FAILED = "failed"
# Bulk Data STU2 §Kick-off: a server may refuse more work with 429; this keeps one client
# from starving the others on a small machine.
MAX_RUNNING_PER_CLIENT = 4
POLL_AFTER_S = 1
ERROR_PREFIX = "error-"


@dataclass(frozen=True)
class OutputFile:
    """One NDJSON file of a job: the resource type of its lines, its name and line count."""

    resource_type: str
    name: str
    count: int


@dataclass
class _OpenFile:
    handle: IO[str]
    name: str
    count: int = 0
    corrupt_next: bool = False


class NdjsonWriter:
    """Append resources to one NDJSON file per resource type in a directory, counting lines."""

    def __init__(
        self, directory: Path, *, prefix: str, corrupts_file: Callable[[], bool] | None = None
    ) -> None:
        self._directory = directory
        self._prefix = prefix
        self._corrupts_file = corrupts_file
        self._files: dict[str, _OpenFile] = {}

    def write(self, resource: Resource) -> None:
        """Append resource as one line of its type's file."""
        resource_type = resource["resourceType"]
        file = self._files.get(resource_type)
        if file is None:
            name = f"{self._prefix}{resource_type}.ndjson"
            file = _OpenFile(
                handle=(self._directory / name).open("w", encoding="utf-8"),
                name=name,
                corrupt_next=bool(self._corrupts_file and self._corrupts_file()),
            )
            self._files[resource_type] = file
        line = json.dumps(resource, separators=(",", ":"))
        if file.corrupt_next:
            # The bad-ndjson fault: a line cut in half, as a crashed writer would leave it.
            line = line[: len(line) // 2]
            file.corrupt_next = False
        file.handle.write(line + "\n")
        file.count += 1

    def close(self) -> list[OutputFile]:
        """Close every file and return them, ordered by resource type."""
        for file in self._files.values():
            file.handle.close()
        return [
            OutputFile(resource_type=rtype, name=f.name, count=f.count)
            for rtype, f in sorted(self._files.items())
        ]


@dataclass
class BulkJob:
    """One kicked-off bulk request and, once complete, its files."""

    job_id: str
    client_id: str
    request_url: str
    transaction_time: str
    directory: Path
    status: str = STATUS_RUNNING
    progress: str = "queued"
    output: list[OutputFile] = field(default_factory=list)
    errors: list[OutputFile] = field(default_factory=list)
    result: Resource | None = None
    failure: FhirError | None = None
    expires_at: float | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)


class JobContext:
    """What a job's work sees: writers for its output and error files, progress, cancellation."""

    def __init__(self, job: BulkJob, *, corrupts_file: Callable[[], bool]) -> None:
        self._job = job
        self.output = NdjsonWriter(job.directory, prefix="", corrupts_file=corrupts_file)
        self.errors = NdjsonWriter(job.directory, prefix=ERROR_PREFIX)

    def progress(self, text: str) -> None:
        """Publish text as the job's X-Progress."""
        self._job.progress = text

    @property
    def cancelled(self) -> bool:
        """Return whether the client deleted the job; work should stop."""
        return self._job.cancelled.is_set()


# A job's work writes through the context and returns an alternative completion body
# (a FHIR resource served instead of the manifest) or None for the manifest.
Work = Callable[[JobContext], Resource | None]


def _instant(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class BulkJobStore:
    """The jobs of one sandbox, their background threads and their files under root."""

    def __init__(
        self,
        root: Path,
        *,
        file_ttl_s: float,
        corrupts_file: Callable[[], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._root = root
        self._file_ttl_s = file_ttl_s
        self._corrupts_file = corrupts_file
        self._clock = clock
        self._lock = threading.Lock()
        self._jobs: dict[str, BulkJob] = {}
        self._expired: dict[str, str] = {}  # job id -> client id, so late pollers hear 410
        root.mkdir(parents=True, exist_ok=True)

    def start(self, *, client_id: str, request_url: str, work: Work) -> BulkJob:
        """Create a job for client_id and run work on a background thread; 429 when too busy."""
        self._sweep()
        with self._lock:
            running = sum(
                1
                for j in self._jobs.values()
                if j.client_id == client_id and j.status == STATUS_RUNNING
            )
            if running >= MAX_RUNNING_PER_CLIENT:
                raise FhirError(
                    429,
                    "throttled",
                    f"{running} bulk jobs of this client are still running; wait for one",
                    headers={"Retry-After": str(POLL_AFTER_S * 5)},
                )
            job_id = secrets.token_hex(16)
            job = BulkJob(
                job_id=job_id,
                client_id=client_id,
                request_url=request_url,
                transaction_time=_instant(self._clock()),
                directory=self._root / job_id,
            )
            job.directory.mkdir()
            self._jobs[job_id] = job
        threading.Thread(
            target=self._run, args=(job, work), name=f"bulk-{job_id[:8]}", daemon=True
        ).start()
        return job

    def _run(self, job: BulkJob, work: Work) -> None:
        context = JobContext(job, corrupts_file=self._corrupts_file)
        try:
            result = work(context)
        except Exception as exc:
            context.output.close()
            context.errors.close()
            if isinstance(exc, FhirError):
                job.failure = exc
            else:
                logger.exception("bulk job %s failed", job.job_id)
                job.failure = FhirError(500, "exception", "the job failed; see the sandbox log")
            job.status = STATUS_FAILED
        else:
            job.output = context.output.close()
            job.errors = context.errors.close()
            job.result = result
            job.status = STATUS_COMPLETE
        job.expires_at = self._clock() + self._file_ttl_s
        if job.cancelled.is_set():
            shutil.rmtree(job.directory, ignore_errors=True)

    def get_for_client(self, client_id: str, job_id: str) -> BulkJob:
        """Return client_id's job job_id; 404 if unknown to it, 410 once its files expired."""
        self._sweep()
        with self._lock:
            job = self._jobs.get(job_id)
            expired_for = self._expired.get(job_id)
        if job is not None and job.client_id == client_id:
            return job
        if expired_for == client_id:
            raise FhirError(
                410, "not-found", f"bulk job {job_id} expired; its files are gone, kick off again"
            )
        raise FhirError(404, "not-found", f"bulk job {job_id} is not known")

    def file_path(self, job: BulkJob, name: str) -> Path:
        """Return the path of the job's file called name, or raise 404."""
        names = {f.name for f in (*job.output, *job.errors)}
        if job.status != STATUS_COMPLETE or name not in names:
            raise FhirError(404, "not-found", f"bulk job {job.job_id} has no file {name!r}")
        return job.directory / name

    def cancel(self, job: BulkJob) -> None:
        """Stop job and remove it and its files (Bulk Data STU2 §Delete a Bulk Data Request)."""
        job.cancelled.set()
        with self._lock:
            self._jobs.pop(job.job_id, None)
        shutil.rmtree(job.directory, ignore_errors=True)

    def _sweep(self) -> None:
        """Remove the files of every job whose expiry has passed."""
        now = self._clock()
        with self._lock:
            gone = [
                j for j in self._jobs.values() if j.expires_at is not None and j.expires_at <= now
            ]
            for job in gone:
                del self._jobs[job.job_id]
                self._expired[job.job_id] = job.client_id
        for job in gone:
            shutil.rmtree(job.directory, ignore_errors=True)

    def manifest(self, job: BulkJob, *, file_url: Callable[[str], str]) -> Resource:
        """Return the completion manifest of job (Bulk Data STU2 §Response - Complete Status)."""

        def entries(files: list[OutputFile]) -> list[Resource]:
            return [
                {"type": f.resource_type, "url": file_url(f.name), "count": f.count} for f in files
            ]

        return {
            "transactionTime": job.transaction_time,
            "request": job.request_url,
            "requiresAccessToken": True,
            "output": entries(job.output),
            "error": entries(job.errors),
        }
