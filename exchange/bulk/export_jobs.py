"""A Group export's job: asked for, its files split per member as they download, handed over.

``export_kick_off`` asks ``Group/{id}/$davinci-data-export`` (or ``$export``) with
``_typeFilter`` bounding claims to five years of service (dropped, and noted, when the
holder refuses it). ``export_collect`` downloads the files ``BULK_DOWNLOADS_AT_ONCE`` at a
time, each streamed through the splitter (exchange/bulk/split.py) into the members'
staging; what each file gave is kept beside it, so a worker that dies keeps the files it
finished. Then the counts are reconciled with the manifest, the holder's error files read,
each member given the shared resources its records cite, and handed to screening.
"""

import io
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import IO, Any, cast

import orjson
from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from exchange.bulk.jobs import (
    JobNext,
    holder_client,
    holder_errors_record,
    job_done,
    job_fail,
    job_forget_at_holder,
    job_heartbeat,
    job_kick_off,
    job_kick_off_again,
    job_may_kick_off,
    job_members,
    job_staging_forget,
    job_update,
    job_waits_its_turn,
    member_fail,
)
from exchange.bulk.split import (
    FileSplit,
    MemberSplitter,
    SplitFailed,
    cited_page_write,
    shared_resources,
)
from exchange.fhir.errors import FhirPermanentError
from exchange.models import (
    BulkJob,
    CohortMember,
    CohortPath,
    ExchangeRequest,
    ExchangeStatus,
)
from exchange.payloads.layout import CohortFiles
from exchange.payloads.storage import PayloadStorage
from exchange.pipeline import engine_move_many, exchange_requests_records_received

S = ExchangeStatus
PDEX_PAYER_TO_PAYER = "hl7.fhir.us.davinci-pdex#payertopayer"
# Members of an export screened, packaged and delivered by one task each step: their moves
# are written together, and a batch stays short enough to share the workers fairly.
SCREENED_TOGETHER = 25
# How often a long download tells the job reaper it is still moving.
HEARTBEAT_SECONDS = 30.0


def export_parameters() -> dict[str, str]:
    """Return what a new Group export of a cohort asks besides its exportType: claims bounded
    to five years of service (PDex §pdex-180; the hub screens the window itself anyway)."""
    since = (timezone.localdate() - timedelta(days=5 * 365 + 2)).isoformat()
    return {"_typeFilter": f"ExplanationOfBenefit?service-date=ge{since}"}


def _export_request(job: BulkJob) -> tuple[str, dict[str, Any]]:
    """Return the Group export's path and Parameters (SPEC.md "Getting the data")."""
    davinci = job.cohort.path == CohortPath.DAVINCI_DATA_EXPORT
    operation = "$davinci-data-export" if davinci else "$export"
    parameter: list[dict[str, Any]] = []
    if davinci:
        parameter.append({"name": "exportType", "valueString": PDEX_PAYER_TO_PAYER})
    if job.parameters.get("_typeFilter"):
        # PDex §pdex-180: bound claims by date of service; the hub screens the 5-year
        # window itself whatever the holder does with it (a floor, not a cap: FHIR-56496).
        parameter.append({"name": "_typeFilter", "valueString": job.parameters["_typeFilter"]})
    if job.parameters.get("_since"):
        parameter.append({"name": "_since", "valueInstant": job.parameters["_since"]})
    return f"Group/{job.group_id}/{operation}", {
        "resourceType": "Parameters",
        "parameter": parameter,
    }


def _type_filter_refused(job: BulkJob, exc: FhirPermanentError) -> bool:
    """Drop ``_typeFilter`` once when the holder refuses it (§pdex-180b: it may not support it,
    but must say so) and note why; return whether the job should be kicked off again."""
    if not job.parameters.get("_typeFilter") or "_typefilter" not in exc.message.lower():
        return False
    parameters = {k: v for k, v in job.parameters.items() if k != "_typeFilter"}
    parameters["typeFilterRefused"] = exc.message
    job_update(job, parameters=parameters)
    return True


def export_kick_off(job: BulkJob) -> JobNext:
    """Ask the holder for the matched Group's data (SPEC.md "Getting the data")."""
    if not job_may_kick_off(job):
        return JobNext(cohort=True)
    turn = job_waits_its_turn(job)
    if turn is not None:
        return turn
    path, parameters = _export_request(job)
    if job.kick_offs == 0:
        # A fresh start: nothing an earlier attempt left under these names may mix in.
        job_staging_forget(job)
    engine_move_many(
        [member.exchange_request for member in job_members(job, S.MATCHED)],
        S.RETRIEVING,
        lambda r: (
            f"Fetching your records from {r.former_payer.name} with other members of your plan."
        ),
    )
    try:
        return job_kick_off(job, path, parameters)
    except FhirPermanentError as exc:
        if _type_filter_refused(job, exc):
            return JobNext(run_again_in=0)
        raise


def export_collect(job: BulkJob, storage: PayloadStorage) -> JobNext:
    cohort = job.cohort
    holder = cohort.former_payer.name
    members = job_members(job, S.RETRIEVING)
    request_of_patient = {
        m.exchange_request.matched_patient_id: m.exchange_request_id for m in members
    }
    files = [dict(entry) for entry in job.files]
    pending = [index for index, entry in enumerate(files) if not entry["done"]]

    def fetch(index: int) -> FileSplit:
        entry = files[index]
        splitter = MemberSplitter(
            storage=storage,
            cohort_id=cohort.pk,
            job_id=job.pk,
            file_index=index,
            resource_type=entry["type"],
            request_of_patient=request_of_patient,
            holder_name=holder,
        )
        feeder = _SplittingTarget(splitter, on_progress=lambda: job_heartbeat(job))
        try:
            with holder_client(cohort, max_response_bytes=settings.BULK_FILE_MAX_BYTES) as client:
                client.download(
                    entry["url"],
                    requires_access_token=client.manifest(job.manifest).requires_access_token,
                    # A file-like object the client writes, seeks and truncates (not a file).
                    into=cast(IO[bytes], feeder),
                )
            feeder.finish()
            result = splitter.close()
        except BaseException:
            splitter.abort()
            raise
        finally:
            connections.close_all()
        storage.write_bytes(_split_record_name(cohort.pk, job.pk, index), _split_record(result))
        return result

    try:
        with ThreadPoolExecutor(max_workers=settings.BULK_DOWNLOADS_AT_ONCE) as pool:
            for index, result in zip(pending, pool.map(fetch, pending), strict=True):
                files[index].update(lines=result.lines, done=True)
                job_update(job, files=files, consecutive_errors=0)
    except FhirPermanentError as exc:
        if exc.code == "bulk_file_expired":
            return job_kick_off_again(job, exc.message)
        raise
    except SplitFailed as exc:
        job_fail(job, "malformed_export", str(exc))
        return JobNext(cohort=True)
    return _export_finish(job, storage, members, files)


class _SplittingTarget(io.RawIOBase):
    """The file a download writes into, which is the splitter: bytes are cut into lines and
    routed as they arrive. The Bulk Data client seeks to 0 and truncates when the holder
    sends the file from its first byte again (Range ignored): so does the split.

    ``on_progress`` is called as bytes keep arriving, at most every ``every_seconds``: a
    file that takes longer to download than the job reaper's patience
    (BULK_JOB_STUCK_AFTER_SECONDS) must not look stuck and be collected a second time."""

    def __init__(
        self,
        splitter: MemberSplitter,
        *,
        on_progress: Callable[[], None],
        every_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        super().__init__()
        self._splitter = splitter
        self._pending = b""
        self._size = 0
        self._on_progress = on_progress
        self._every_seconds = every_seconds
        self._reported = time.monotonic()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._size += len(chunk)
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            self._splitter.feed(line)
        if time.monotonic() - self._reported >= self._every_seconds:
            self._on_progress()
            self._reported = time.monotonic()
        return len(chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET or offset not in (0, self._size):
            raise io.UnsupportedOperation("a split download only starts over or goes on")
        return offset

    def truncate(self, size: int | None = None) -> int:
        if size not in (None, 0) or self._size == 0:
            return self._size
        self._pending = b""
        self._size = 0
        self._splitter.restart()
        return 0

    def readinto(self, buffer: Any) -> int:
        # Nothing is ever read back: the download of a file to split starts at byte 0.
        return 0

    def finish(self) -> None:
        if self._pending.strip():
            self._splitter.feed(self._pending)
        self._pending = b""


def _split_record_name(cohort_id: int, job_id: int, index: int) -> str:
    return f"{CohortFiles(cohort_id).job_folder(job_id)}/split-{index:04d}.json"


def _split_record(result: FileSplit) -> bytes:
    """Return what splitting one file gave, kept beside the pages: a worker that dies later
    keeps the files it finished, and the hand-over reads the counts from these."""
    return orjson.dumps(
        {
            "lines": result.lines,
            "shared": result.shared,
            "counts": {str(k): v for k, v in result.counts.items()},
            "cited": {str(k): sorted(v) for k, v in result.cited.items()},
            "broken": {str(k): v for k, v in result.broken.items()},
        }
    )


def _export_finish(
    job: BulkJob, storage: PayloadStorage, members: list[CohortMember], files: list[dict[str, Any]]
) -> JobNext:
    """Reconcile the files with the manifest, then hand every member to screening."""
    holder = job.cohort.former_payer.name
    for entry in files:
        if entry["count"] is not None and entry["count"] != entry["lines"]:
            job_fail(
                job,
                "export_count_mismatch",
                f"{holder}'s manifest says its {entry['type']} file holds {entry['count']} "
                f"resources, but the hub read {entry['lines']} lines from it.",
            )
            return JobNext(cohort=True)
    counts: dict[int, dict[str, int]] = {}
    cited: dict[int, set[str]] = {}
    broken: dict[int, str] = {}
    for index in range(len(files)):
        record = orjson.loads(storage.read_bytes(_split_record_name(job.cohort_id, job.pk, index)))
        for key, value in record["counts"].items():
            member_counts = counts.setdefault(int(key), {})
            for resource_type, n in value.items():
                member_counts[resource_type] = member_counts.get(resource_type, 0) + n
        for key, value in record["cited"].items():
            cited.setdefault(int(key), set()).update(value)
        for key, value in record["broken"].items():
            broken.setdefault(int(key), value)
    with holder_client(job.cohort) as client:
        refusals = holder_errors_record(job, client, client.manifest(job.manifest))
    shared = shared_resources(storage, cohort_id=job.cohort_id, job_id=job.pk)
    received: list[tuple[ExchangeRequest, dict[str, int]]] = []
    for member in members:
        request = member.exchange_request
        refusal = _refusal_of(refusals, request.matched_patient_id)
        if refusal:
            member_fail(
                request, "holder_refused_export", f"{holder} did not export this member: {refusal}"
            )
            continue
        if request.pk in broken:
            member_fail(request, "malformed_export", broken[request.pk])
            continue
        member_counts = counts.get(request.pk, {})
        for resource_type, n in cited_page_write(
            storage,
            request_id=request.pk,
            job_id=job.pk,
            cited=cited.get(request.pk, set()),
            shared=shared,
        ).items():
            member_counts[resource_type] = member_counts.get(resource_type, 0) + n
        request.resource_counts = member_counts
        request.awaits_bulk_job = False
        # The export's transactionTime: the watermark of the member's next pull (PDex §pdex-180).
        request.records_as_of = job.transaction_time
        received.append((request, member_counts))
    with transaction.atomic():
        ExchangeRequest.objects.for_payer(job.payer_id).bulk_update(
            [request for request, _ in received],
            ["resource_counts", "awaits_bulk_job", "records_as_of"],
        )
        handed = [r.pk for r in exchange_requests_records_received(received=received)]
    job_done(job)
    job_forget_at_holder(job)
    return JobNext(
        batches=[
            handed[start : start + SCREENED_TOGETHER]
            for start in range(0, len(handed), SCREENED_TOGETHER)
        ],
        cohort=True,
    )


def _refusal_of(texts: list[str], patient_id: str) -> str:
    """Return what the holder's error files say of ``Patient/<patient_id>``, if anything."""
    needle = f"Patient/{patient_id}"
    for text in texts:
        if needle in text.split() or f"{needle}:" in text or f"{needle} " in text:
            return text
    return ""
