"""A cohort of 1,000 members end to end, its bare floor, and 10,000 members matched and split.

Issue 12, "What it must show". A roster of ``--members`` members of a sandbox payer (South)
goes through the real cohort engine (exchange/bulk/): ``roster_read`` and ``cohorts_create``,
then ``$bulk-member-match`` in chunks of ``--chunk-size`` (FhirEndpoint.bulk_match_chunk_size),
one ``$davinci-data-export`` per matched Group, its NDJSON files downloaded
(BULK_DOWNLOADS_AT_ONCE at once) and split per member into encrypted staging, each member
screened, packaged and pushed over SFTP, and the cohort manifest delivered last.
``--workers`` (2) Celery worker processes run all of it, each ``--pool solo`` on every queue:
one process per core, as a deployment would run them on the 2-core machine the figures come
from. Each one's VmHWM in /proc is its peak resident memory (the report gives the largest
and each one's), and the VmRSS of every one is sampled as it goes. Each task's start and end
are written down by bench/timed_celery_worker.py, a log per worker, read back together, so
the report says where the workers' time went; "workers busy" is their summed task time over
the wall time times the number of workers. ``--workers 1`` is the single worker of before.

Then, in the same run and on the same sandbox, the bare floor: a SMART Backend Services
client of the benchmark's own (tests/sandbox/harness.py) sends the very ``MemberBundle``s the
hub sent, chunk by chunk, exports each matched Group with the hub's own parameters, and
downloads the export's NDJSON files with plain httpx, ``orjson.loads`` on every line —
the same files, one at a time and BULK_DOWNLOADS_AT_ONCE at once. The hub's time is set
against it twice: from the first manifest ready to the last member delivered against the
bare download; and from kick-off to the last member delivered against the bare match +
export + download (the holder's own export time is in both).

Then a sample of the delivered members (``--sample``) is checked the way the end-to-end test
checks them (tests/support/exchange_setup.py ``delivery_check``): against the sandbox's own
``$everything`` of the member, read by the benchmark as a client of its own.

Then ``--match-only-members`` (10,000) members are matched alone: the engine's own match
steps (exchange/bulk/pipeline.py ``cohort_prepare``, ``bulk_job_step``) run one at a time
in the benchmark's process as a ``--pool solo`` worker would run them, each waiting its
``Retry-After``; the export jobs they create are left waiting. And ``--split-members``
(10,000) members go through ``--workers`` workers on the ``bulk`` queue only — match,
export, download and split into staging, members handed to screening — for the workers'
memory at that size (a full delivery of 10,000 takes far longer than the
``--split-timeout`` time box on a 2-core machine: screening and delivery run one member at
a time); it reports how far it got.

Real parts only, all on 127.0.0.1: PostgreSQL (a dedicated database, dropped, re-created and
migrated at every run), Redis (its queues are purged), the sandbox payer as a subprocess
(``--members`` the largest cohort and a few more, South's ``--seed`` and ``--npi``), the hub
served by gunicorn (the sandbox fetches North's JWKS from it), and OpenSSH's sshd receiving
the deliveries (the new payer's own SFTP server, ``push_sftp``; sshd needs root for its
chroot).

Run from a fresh clone, as root, on a machine where nothing else uses the Redis database
named below (the benchmark purges its queues):

    make venv services    # .venv, then PostgreSQL, Redis and sshd (apt-get when missing)
    SECRET_KEY=bench-only-secret-key-not-for-production-0123456789abcdef \\
    ALLOWED_HOSTS=testserver,localhost,127.0.0.1 \\
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/payer_hub \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/6 \\
    FIELD_ENCRYPTION_KEYS=$(python3 -c 'import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode())') \\
    OUTBOUND_ALLOWED_HOSTS=127.0.0.1 \\
    HTTPS=false \\
    LOG_LEVEL=WARNING \\
    .venv/bin/python bench/cohort_exchange.py --members 1000 --match-only-members 10000 \\
        --split-members 10000 --workers 2 --database payer_hub_bench

DATABASE_URL names the PostgreSQL server only: the benchmark drops, creates and migrates
the database ``--database`` on it. PAYLOAD_STORAGE_DIR (a temporary folder) and
HUB_PUBLIC_URL (the gunicorn it starts) are set by the benchmark itself. Other options:
``--workers 2`` (worker processes of the full and split runs), ``--chunk-size 500``,
``--sample 20``, ``--timeout 3600`` (the full run), ``--split-timeout 900``,
``--match-only-members 0`` / ``--split-members 0`` to skip those, and ``--profile`` to run
the workers (and the match-only steps) under cProfile, each worker writing its own stats,
and print where the time goes, the workers' stats merged — its timings are then not
figures. It takes about half an hour.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.member_exchange_large_record import (  # noqa: E402
    benchmark_in_workdir,
    hub_environment_prepare,
    proc_status_kib,
    tenant_create,
)
from tests.sandbox.harness import (  # noqa: E402
    BULK_SCOPES,
    BackendClient,
    RunningSandbox,
    completed,
    current_consent,
    everything,
    kick_off,
    matched_patient,
    running_sandbox,
)
from tests.support.net import wait_until_listening  # noqa: E402

ROSTER_COLUMNS = [
    "member_id", "family_name", "given_names", "birth_date", "gender", "former_payer_npi",
    "former_member_id", "former_coverage_start", "former_coverage_end", "new_coverage_start",
    "consent", "opted_in_at",
]  # fmt: skip
# The sandbox members a name/birth date/card match finds exactly once (the showcase ones,
# duplicates among them, carry a note in the member list).
EXTRA_SANDBOX_MEMBERS = 10
SAMPLE_EVERY_SECONDS = 0.25
NDJSON = "application/fhir+ndjson"
# How long a bulk job's status may take at the sandbox, for the bare floor's polling.
BARE_JOB_TIMEOUT = 1800.0


# --- the roster ---


def ordinary_members(sandbox: RunningSandbox) -> list[dict[str, Any]]:
    """Return the sandbox's members who match uniquely (not the showcase members)."""
    return [m for m in sandbox.member_list()["members"] if not m.get("note")]


def roster_csv(members: list[dict[str, Any]], *, prefix: str, former_npi: str) -> bytes:
    """Return a CSV roster asking ``former_npi`` for ``members`` (all with consent everything),
    their member ids at the new plan ``<prefix>00001`` on."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(ROSTER_COLUMNS)
    opted_in = datetime.now().astimezone().replace(microsecond=0).isoformat()
    for number, member in enumerate(members, start=1):
        writer.writerow(
            [
                f"{prefix}{number:05d}",
                member["family"],
                " ".join(member["given"]),
                member["birth_date"],
                member["gender"],
                former_npi,
                member["card_number"],
                "2020-01-01",
                "2026-10-31",
                "2026-11-01",
                "everything",
                opted_in,
            ]
        )
    return out.getvalue().encode()


@dataclass
class Created:
    """A cohort made from a roster, and how long reading and creating it took."""

    cohort: Any
    read_s: float
    create_s: float
    # time.time() when cohorts_create returned: its transaction committed, the engine enqueued.
    kicked_off: float


def cohort_from_roster(
    *, north: Any, south: Any, members: list[dict[str, Any]], prefix: str
) -> Created:
    """Read a roster of ``members`` and open its cohort, as the plan administrator's upload does."""
    from django.utils import timezone

    from exchange.bulk.roster import roster_read
    from exchange.bulk.services import cohorts_create

    data = roster_csv(members, prefix=prefix, former_npi=south.payer.npi)
    started = time.perf_counter()
    roster = roster_read(
        data=data, filename=f"{prefix}.csv", new_payer=north.payer, now=timezone.now()
    )
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    (cohort,) = cohorts_create(
        new_payer=north.payer,
        created_by=north.admin,
        roster=roster,
        name=f"Bench {prefix} ({len(members):,} members)",
        roster_name=f"{prefix}.csv",
    )
    create_s = time.perf_counter() - started
    return Created(cohort=cohort, read_s=read_s, create_s=create_s, kicked_off=time.time())


# --- the worker and what is sampled while it works ---


@dataclass
class Worker:
    """A running timed worker: its process id and the file its tasks are written to."""

    pid: int
    task_log: Path


def worker_profiles(profile: Path | None, count: int) -> list[Path]:
    """Return the cProfile stats file of each of ``count`` workers: ``profile`` itself for one
    worker, ``<stem>-1.prof``, ``<stem>-2.prof``, ... for more (each process writes its own)."""
    if profile is None:
        return []
    if count == 1:
        return [profile]
    return [profile.with_name(f"{profile.stem}-{n}{profile.suffix}") for n in range(1, count + 1)]


def workers_wait_ready(processes: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    """Wait until every worker answers a ping (start-up is not part of the figures)."""
    from hub.celery import app

    # bench/timed_celery_worker.py names its worker bench-<pid>@<host>.
    waiting = {f"bench-{process.pid}@" for process in processes}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"worker {process.pid} exited with {process.returncode}")
        for reply in app.control.ping(timeout=1.0) or []:
            for hostname in reply:
                waiting.discard(hostname.split("@", 1)[0] + "@")
        if not waiting:
            return
    raise TimeoutError(f"{len(waiting)} Celery worker(s) did not answer within {timeout:.0f} s")


@contextmanager
def timed_workers(
    workdir: Path, name: str, *, queues: str, count: int, profile: Path | None = None
) -> Iterator[list[Worker]]:
    """Run ``count`` bench/timed_celery_worker.py processes (``--pool solo`` each), every one
    on all of ``queues`` and with a task log of its own; stop them all afterwards."""
    profiles = worker_profiles(profile, count)
    processes: list[subprocess.Popen[bytes]] = []
    workers: list[Worker] = []
    try:
        for n in range(1, count + 1):
            # One worker keeps the file names a single worker always had.
            stem = name if count == 1 else f"{name}-{n}"
            task_log = workdir / f"{stem}-tasks.jsonl"
            command = [
                sys.executable, str(ROOT / "bench" / "timed_celery_worker.py"), str(task_log),
                "--queues", queues,
            ]  # fmt: skip
            if profiles:
                command += ["--profile", str(profiles[n - 1])]
            with (workdir / f"{stem}-worker.log").open("wb") as output:
                processes.append(
                    subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
                )
            workers.append(Worker(pid=processes[-1].pid, task_log=task_log))
        workers_wait_ready(processes)
        yield workers
    finally:
        # All told first, so they finish their last tasks (and write their stats) side by side.
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=300)  # a profiled worker writes its stats first


@dataclass
class Samples:
    """What the watcher saw, each with the time.time() it saw it."""

    # Worker pid -> its VmRSS samples.
    rss_kib: dict[int, list[tuple[float, int]]] = field(default_factory=dict)
    # (job id, state) -> when the job was first seen in that state.
    job_states: dict[tuple[int, str], float] = field(default_factory=dict)


class Watcher(threading.Thread):
    """Sample every worker's VmRSS and the cohort's bulk jobs every SAMPLE_EVERY_SECONDS."""

    def __init__(self, *, payer_id: int, cohort_id: int, worker_pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.payer_id = payer_id
        self.cohort_id = cohort_id
        self.worker_pids = worker_pids
        self.samples = Samples()
        self._stop_event = threading.Event()

    def run(self) -> None:
        from django.db import connection

        from exchange.models import BulkJob

        try:
            while not self._stop_event.is_set():
                now = time.time()
                for pid in self.worker_pids:
                    self.samples.rss_kib.setdefault(pid, []).append(
                        (now, proc_status_kib(pid, "VmRSS"))
                    )
                for pk, state in (
                    BulkJob.objects.for_payer(self.payer_id)
                    .filter(cohort_id=self.cohort_id)
                    .values_list("pk", "state")
                ):
                    self.samples.job_states.setdefault((pk, state), now)
                self._stop_event.wait(SAMPLE_EVERY_SECONDS)
        finally:
            connection.close()

    def stop(self) -> Samples:
        self._stop_event.set()
        self.join(timeout=10)
        return self.samples


@contextmanager
def watching(*, payer_id: int, cohort_id: int, worker_pids: list[int]) -> Iterator[Watcher]:
    watcher = Watcher(payer_id=payer_id, cohort_id=cohort_id, worker_pids=worker_pids)
    watcher.start()
    try:
        yield watcher
    finally:
        watcher.stop()


def member_statuses(payer_id: int, cohort_id: int) -> Counter[str]:
    """Return how many of the cohort's members are in each state."""
    from django.db.models import Count

    from exchange.models import ExchangeRequest

    rows = (
        ExchangeRequest.objects.for_payer(payer_id)
        .filter(cohort_member__cohort_id=cohort_id)
        .values_list("status")
        .annotate(n=Count("pk"))
    )
    return Counter(dict(rows))


def wait_while(
    done: Any, *, payer_id: int, cohort_id: int, timeout: float, label: str
) -> tuple[bool, float]:
    """Poll ``done()`` every half second, printing progress; return (done, seconds waited)."""
    started = time.monotonic()
    said = started
    while not done():
        now = time.monotonic()
        if now - started > timeout:
            return False, now - started
        if now - said >= 30:
            said = now
            statuses = member_statuses(payer_id, cohort_id)
            print(
                f"  [{label} {now - started:5.0f} s] "
                + ", ".join(f"{status} {n:,}" for status, n in sorted(statuses.items())),
                flush=True,
            )
        time.sleep(0.5)
    return True, time.monotonic() - started


# --- reading a run back ---


@dataclass
class TaskTimes:
    """Time the workers spent per kind of task, all of them together: (runs, seconds)."""

    by_kind: dict[str, tuple[int, float]]
    busy_s: float
    first_start: float
    last_end: float
    # (start, end) of the last bulk_job_run of each export job: the collect (download and
    # split the files, then hand the members over to screening).
    export_collect: dict[int, tuple[float, float]]
    # Every (start, end) of each bulk job's tasks.
    job_runs: dict[int, list[tuple[float, float]]]

    def manifest_ready(self, job_id: int) -> float | None:
        """Return when the poll that found the export complete ended (the task before the
        collect), or None."""
        start, _ = self.export_collect.get(job_id, (None, None))
        if start is None:
            return None
        ends = [end for _, end in self.job_runs.get(job_id, []) if end <= start]
        return max(ends, default=None)

    def collect_s(self, job_id: int) -> float:
        start, end = self.export_collect.get(job_id, (0.0, 0.0))
        return end - start


def task_times(task_logs: list[Path], *, job_kinds: dict[int, str]) -> TaskTimes:
    """Read the timed workers' task logs together: runs and seconds per task. A bulk job's
    runs are told apart by their order, by start time whichever worker ran them: the first
    kicks off, the last collects (the job is through after it), the ones between poll (or
    kick off again after a 429)."""
    from exchange.models import BulkJobKind

    runs: dict[str, list[float]] = defaultdict(list)
    job_runs: dict[int, list[tuple[float, float]]] = defaultdict(list)
    first, last = float("inf"), 0.0
    rows = (json.loads(line) for log in task_logs for line in log.read_text().splitlines())
    for row in rows:
        first, last = min(first, row["start"]), max(last, row["end"])
        kind = row["task"].removeprefix("exchange.")
        if kind == "bulk_job_run":
            job_runs[row["args"][0]].append((row["start"], row["end"]))
        else:
            runs[kind].append(row["end"] - row["start"])
    collect: dict[int, tuple[float, float]] = {}
    for job_id, moments in job_runs.items():
        moments.sort()
        kind = "match" if job_kinds.get(job_id) == BulkJobKind.MEMBER_MATCH else "export"
        for number, (start, end) in enumerate(moments):
            step = "kick-off" if number == 0 else "poll"
            if number == len(moments) - 1 and number > 0:
                step = "collect"
                if kind == "export":
                    collect[job_id] = (start, end)
            runs[f"{kind} {step}"].append(end - start)
    return TaskTimes(
        by_kind={kind: (len(values), sum(values)) for kind, values in sorted(runs.items())},
        busy_s=sum(sum(values) for values in runs.values()),
        first_start=first,
        last_end=last,
        export_collect=collect,
        job_runs=dict(job_runs),
    )


@dataclass
class JobFigures:
    """One bulk job's moments (time.time()), as the database and the watcher saw them."""

    pk: int
    kind: str
    sequence: int
    state: str
    members: int
    created: float
    kicked_off: float | None
    manifest_ready: float | None
    collect_start: float | None
    # When the last file's split record was written: every file downloaded and split.
    files_split: float | None
    finished: float | None
    files: int
    lines: int
    kick_offs: int
    reason: str


def _ts(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


def files_split_at(cohort_id: int, job_id: int) -> float | None:
    """Return when the export job's last split record was written (exchange/bulk/export_jobs.py
    writes ``split-NNNN.json`` in the job's folder as each file is split)."""
    from exchange.payloads.backends import payload_storage
    from exchange.payloads.layout import CohortFiles

    storage = payload_storage()
    records = [
        name
        for name in storage.list(CohortFiles(cohort_id).job_folder(job_id))
        if name.rsplit("/", 1)[-1].startswith("split-")
    ]
    return max((storage.modified_at(name).timestamp() for name in records), default=None)


def job_figures(
    payer_id: int, cohort_id: int, samples: Samples, tasks: TaskTimes
) -> list[JobFigures]:
    """Return the cohort's bulk jobs, match chunks first, each with its moments."""
    from django.db.models import Count

    from exchange.models import BulkJob, BulkJobKind, BulkJobState, CohortMember

    members = CohortMember.objects.for_payer(payer_id).filter(cohort_id=cohort_id)
    per_job: Counter[int] = Counter()
    for link in ("match_job", "export_job"):
        for job_id, n in members.values_list(link).annotate(n=Count("pk")):
            if job_id is not None:
                per_job[job_id] += n
    figures = []
    for job in BulkJob.objects.for_payer(payer_id).filter(cohort_id=cohort_id):
        figures.append(
            JobFigures(
                pk=job.pk,
                kind=job.kind,
                sequence=job.sequence,
                state=job.state,
                members=per_job[job.pk],
                created=job.created_at.timestamp(),
                kicked_off=_ts(job.kicked_off_at),
                manifest_ready=tasks.manifest_ready(job.pk)
                or samples.job_states.get((job.pk, BulkJobState.DOWNLOADING)),
                collect_start=tasks.export_collect.get(job.pk, (None, None))[0],
                files_split=files_split_at(cohort_id, job.pk)
                if job.kind == BulkJobKind.DATA_EXPORT
                else None,
                finished=_ts(job.finished_at),
                files=len(job.files),
                lines=sum(entry.get("lines") or 0 for entry in job.files),
                kick_offs=job.kick_offs,
                reason=job.reason_message,
            )
        )
    return figures


def member_moments(payer_id: int, cohort_id: int) -> dict[str, list[float]]:
    """Return, per state, when each member of the cohort reached it (sorted time.time()s)."""
    from exchange.models import ExchangeEvent

    moments: dict[str, list[float]] = defaultdict(list)
    for status, created_at in (
        ExchangeEvent.objects.for_payer(payer_id)
        .filter(exchange_request__cohort_member__cohort_id=cohort_id)
        .exclude(status="")
        .values_list("status", "created_at")
    ):
        moments[status].append(created_at.timestamp())
    return {status: sorted(times) for status, times in moments.items()}


@dataclass
class Delivered:
    """What reached the new payer: members, resources in their bundles, bytes of their files."""

    members: int = 0
    resources: int = 0
    bytes: int = 0
    # Resources the hub received (staged) for these members, before screening.
    received: int = 0


def delivered_totals(payer_id: int, cohort_id: int) -> Delivered:
    from exchange.models import Delivery, DeliveryStatus, ExchangeRequest

    totals = Delivered()
    for manifest in (
        Delivery.objects.for_payer(payer_id)
        .filter(
            exchange_request__cohort_member__cohort_id=cohort_id, status=DeliveryStatus.DELIVERED
        )
        .values_list("manifest", flat=True)
    ):
        totals.members += 1
        totals.resources += manifest.get("resourceTotal", 0)
        totals.bytes += sum(entry.get("size", 0) for entry in manifest.get("files", []))
    for counts in (
        ExchangeRequest.objects.for_payer(payer_id)
        .filter(cohort_member__cohort_id=cohort_id)
        .values_list("resource_counts", flat=True)
    ):
        totals.received += sum((counts or {}).values())
    return totals


# --- 1. the hub ---


@dataclass
class HubRun:
    """A cohort run by the workers, read back from the database, the watcher and the task logs."""

    label: str
    created: Created
    members: int
    finished: bool
    waited_s: float
    jobs: list[JobFigures]
    moments: dict[str, list[float]]
    statuses: Counter[str]
    samples: Samples
    tasks: TaskTimes
    # How many worker processes ran it, and each one's VmRSS once started and VmHWM at the
    # end, in the order they were started.
    workers: int
    idle_kib: list[int]
    peak_kib: list[int]
    cohort_delivered: float | None
    delivered: Delivered
    # The machine's 1-minute load average at kick-off and at the end (others' work shows).
    load: tuple[float, float]

    @property
    def t0(self) -> float:
        return self.created.kicked_off

    def match_jobs(self) -> list[JobFigures]:
        return [job for job in self.jobs if job.kind == "member_match"]

    def export_jobs(self) -> list[JobFigures]:
        return [job for job in self.jobs if job.kind == "data_export"]


def hub_cohort_run(
    *,
    label: str,
    north: Any,
    south: Any,
    members: list[dict[str, Any]],
    prefix: str,
    workdir: Path,
    queues: str,
    workers: int,
    until_split: bool,
    timeout: float,
    profile: Path | None,
) -> HubRun:
    """Run a cohort of ``members`` through ``workers`` timed workers, each on all of
    ``queues``; wait until the cohort is completed (or, ``until_split``, until every bulk job
    is through)."""
    from exchange.models import BulkJob, Cohort, CohortStatus
    from hub.celery import app

    app.control.purge()
    with timed_workers(
        workdir, label, queues=queues, count=workers, profile=profile
    ) as running_workers:
        pids = [worker.pid for worker in running_workers]
        idle_kib = [proc_status_kib(pid, "VmRSS") for pid in pids]
        created = cohort_from_roster(north=north, south=south, members=members, prefix=prefix)
        cohort_id, payer_id = created.cohort.pk, north.payer.pk
        print(
            f"{label}: roster of {len(members):,} read in {created.read_s:.1f} s, cohort "
            f"created in {created.create_s:.1f} s; "
            + ("the worker takes" if workers == 1 else f"the {_number(workers)} workers take")
            + " it from here",
            flush=True,
        )
        ended = (
            (CohortStatus.DELIVERING, CohortStatus.COMPLETED, CohortStatus.CANCELLED)
            if until_split
            else (CohortStatus.COMPLETED, CohortStatus.CANCELLED)
        )

        def done() -> bool:
            status = Cohort.objects.for_payer(payer_id).values_list("status", flat=True)
            return status.get(pk=cohort_id) in ended

        load_start = os.getloadavg()[0]
        with watching(payer_id=payer_id, cohort_id=cohort_id, worker_pids=pids) as watcher:
            finished, waited_s = wait_while(
                done, payer_id=payer_id, cohort_id=cohort_id, timeout=timeout, label=label
            )
            # Read before the workers stop: VmHWM is the peak resident set since each started.
            peak_kib = [proc_status_kib(pid, "VmHWM") for pid in pids]
            load_end = os.getloadavg()[0]
            time.sleep(2 * SAMPLE_EVERY_SECONDS)
        samples = watcher.samples
    app.control.purge()  # a time-boxed run leaves work behind; the split run leaves hand-overs
    cohort = Cohort.objects.for_payer(payer_id).get(pk=cohort_id)
    job_kinds = dict(
        BulkJob.objects.for_payer(payer_id).filter(cohort_id=cohort_id).values_list("pk", "kind")
    )
    tasks = task_times([worker.task_log for worker in running_workers], job_kinds=job_kinds)
    return HubRun(
        label=label,
        created=created,
        members=len(members),
        finished=finished,
        waited_s=waited_s,
        jobs=sorted(
            job_figures(payer_id, cohort_id, samples, tasks),
            key=lambda job: (job.kind != "member_match", job.sequence),
        ),
        moments=member_moments(payer_id, cohort_id),
        statuses=member_statuses(payer_id, cohort_id),
        samples=samples,
        tasks=tasks,
        workers=workers,
        idle_kib=idle_kib,
        peak_kib=peak_kib,
        cohort_delivered=_ts(cohort.delivered_at),
        delivered=delivered_totals(payer_id, cohort_id),
        load=(load_start, load_end),
    )


# --- 2. the bare floor ---


@dataclass
class BareFloor:
    """The same match and export done by a plain client, and its files downloaded bare."""

    chunks: int
    members: int
    matched: int
    match_s: float
    # First export kick-off to each manifest ready, and to the last.
    manifests_at: list[float]
    export_s: float
    files: int
    lines: int
    mib: float
    sequential_s: list[float]
    at_once_s: list[float]
    at_once: int

    @property
    def download_s(self) -> float:
        return statistics.median(self.at_once_s)

    @property
    def total_s(self) -> float:
        """Match, export and download (``at_once`` at once), one after the other."""
        return self.match_s + self.export_s + self.download_s


def ndjson_download(http: httpx.Client, url: str) -> tuple[int, int]:
    """Stream one NDJSON file and ``orjson.loads`` every line; return (lines, bytes)."""
    lines = size = 0
    pending = b""
    with http.stream("GET", url, headers={"Accept": NDJSON}) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            size += len(chunk)
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                if line.strip():
                    orjson.loads(line)
                    lines += 1
    if pending.strip():
        orjson.loads(pending)
        lines += 1
    return lines, size


def bare_floor(
    sandbox: RunningSandbox,
    *,
    organization_npi: str,
    match_bodies: list[dict[str, Any]],
    export_body: dict[str, Any],
    at_once: int,
    rounds: int = 3,
) -> BareFloor:
    """Match ``match_bodies`` (one per chunk, all kicked off at once, as the hub does), export
    each matched Group with ``export_body``, then download every output file ``rounds`` times
    one at a time and ``at_once`` at once (per export, one export after the other, as one
    solo worker of the hub does; more workers may collect exports side by side)."""
    client = BackendClient(sandbox=sandbox, organization_npi=organization_npi).register()
    with client.http(BULK_SCOPES) as http:
        http.timeout = httpx.Timeout(600)
        started = time.time()
        match_urls = []
        for body in match_bodies:
            accepted = kick_off(http, "/Group/$bulk-member-match", body=body)
            assert accepted.status_code == 202, accepted.text
            match_urls.append(accepted.headers["Content-Location"])
        group_ids, matched = [], 0
        for url in match_urls:
            answer = completed(http, url, timeout=BARE_JOB_TIMEOUT)
            assert answer.status_code == 200, answer.text
            for entry in answer.json()["output"]:
                if entry["type"] != "Group":
                    continue
                for line in http.get(entry["url"], headers={"Accept": NDJSON}).content.splitlines():
                    group = orjson.loads(line)
                    if group["code"]["coding"][0]["code"] == "match":
                        group_ids.append(group["id"])
                        matched += len(group.get("member", []))
            http.delete(url)
        match_s = time.time() - started

        started = time.time()
        export_urls = []
        for group_id in group_ids:
            accepted = kick_off(http, f"/Group/{group_id}/$davinci-data-export", body=export_body)
            assert accepted.status_code == 202, accepted.text
            export_urls.append(accepted.headers["Content-Location"])
        manifests, manifests_at = [], []
        for url in export_urls:
            answer = completed(http, url, timeout=BARE_JOB_TIMEOUT)
            assert answer.status_code == 200, answer.text
            manifests.append(answer.json())
            manifests_at.append(time.time() - started)
        export_s = time.time() - started

        files = [[entry["url"] for entry in manifest["output"]] for manifest in manifests]
        expected = sum(entry.get("count") or 0 for m in manifests for entry in m["output"])
        sequential_s, at_once_s = [], []
        lines = size = 0
        for _ in range(rounds):
            started = time.perf_counter()
            results = [ndjson_download(http, url) for urls in files for url in urls]
            sequential_s.append(time.perf_counter() - started)
            lines, size = sum(r[0] for r in results), sum(r[1] for r in results)
            assert lines == expected, (lines, expected)
            started = time.perf_counter()
            results = []
            for urls in files:
                with ThreadPoolExecutor(max_workers=at_once) as pool:
                    results += list(pool.map(lambda url: ndjson_download(http, url), urls))
            at_once_s.append(time.perf_counter() - started)
            assert sum(r[0] for r in results) == expected
        for url in export_urls:
            http.delete(url)
    return BareFloor(
        chunks=len(match_bodies),
        members=sum(len(body["parameter"]) for body in match_bodies),
        matched=matched,
        match_s=match_s,
        manifests_at=manifests_at,
        export_s=export_s,
        files=sum(len(urls) for urls in files),
        lines=lines,
        mib=size / 2**20,
        sequential_s=sequential_s,
        at_once_s=at_once_s,
        at_once=at_once,
    )


def hub_requests_of(payer_id: int, cohort_id: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return the $bulk-member-match Parameters the hub sent, chunk by chunk (its own
    MemberBundles), and the Parameters of its exports (``exportType``, ``_typeFilter``)."""
    from exchange.bulk.export_jobs import PDEX_PAYER_TO_PAYER
    from exchange.bulk.matching import MULTI_MEMBER_MATCH_IN
    from exchange.models import BulkJob, BulkJobKind, CohortMember

    chunks: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for job_id, submitted in (
        CohortMember.objects.for_payer(payer_id)
        .filter(cohort_id=cohort_id)
        .order_by("line")
        .values_list("match_job_id", "submitted")
    ):
        chunks[job_id].append(json.loads(submitted))
    bodies = [
        {
            "resourceType": "Parameters",
            "meta": {"profile": [MULTI_MEMBER_MATCH_IN]},
            "parameter": bundles,
        }
        for _, bundles in sorted(chunks.items())
    ]
    export = (
        BulkJob.objects.for_payer(payer_id)
        .filter(cohort_id=cohort_id, kind=BulkJobKind.DATA_EXPORT)
        .order_by("sequence")
        .first()
    )
    assert export is not None, "the hub ran no export"
    parameter = [{"name": "exportType", "valueString": PDEX_PAYER_TO_PAYER}]
    if export.parameters.get("_typeFilter"):
        parameter.append({"name": "_typeFilter", "valueString": export.parameters["_typeFilter"]})
    return bodies, {"resourceType": "Parameters", "parameter": parameter}


# --- 3. the delivery checked against the holder's own record ---


def deliveries_check(
    sandbox: RunningSandbox,
    *,
    incoming: Path,
    payer_id: int,
    cohort_id: int,
    organization_npi: str,
    sample: int,
) -> tuple[int, dict[str, Any]]:
    """Check ``sample`` delivered members' folders, spread over the cohort, against the
    sandbox's own ``$everything`` (delivery_check); return how many, and the cohort manifest."""
    from exchange.models import ExchangeRequest, ExchangeStatus
    from tests.support.exchange_setup import delivery_check

    delivered = list(
        ExchangeRequest.objects.for_payer(payer_id)
        .filter(cohort_member__cohort_id=cohort_id, status=ExchangeStatus.DELIVERED)
        .order_by("cohort_member__line")
    )
    step = max(1, len(delivered) // max(1, sample))
    picked = delivered[::step][:sample]
    by_card = {m["card_number"]: m for m in sandbox.member_list()["members"]}
    client = BackendClient(sandbox=sandbox, organization_npi=organization_npi).register()
    with client.http() as http:
        for request in picked:
            member = by_card[request.card_member_id]
            patient_id = matched_patient(
                http, member, current_consent(recipient_npi=organization_npi)
            )
            oracle = everything(http, patient_id, _count="500")
            delivery_check(incoming / "south" / str(request.pk), oracle, policy="sensitive")
    manifest = json.loads(
        (incoming / "south" / f"cohort-{cohort_id}" / "cohort-manifest.json").read_text()
    )
    return len(picked), manifest


# --- 4. matching alone ---


@dataclass
class MatchOnly:
    """A cohort matched by the engine's own steps run in this process, one at a time."""

    created: Created
    members: int
    chunks: int
    prepare_s: float
    # cohort_prepare's start to the last match job through.
    wall_s: float
    steps: dict[str, tuple[int, float]]
    statuses: Counter[str]
    failed: list[str]


def match_only_run(
    *, north: Any, south: Any, members: list[dict[str, Any]], profile: Path | None
) -> MatchOnly:
    """Open a cohort of ``members`` and run its match chunks' steps here (cohort_prepare,
    then bulk_job_step of each match job when it asks to run again); leave the exports."""
    import cProfile

    from exchange.bulk import pipeline
    from exchange.models import BulkJob, BulkJobKind, BulkJobState
    from exchange.payloads.backends import payload_storage
    from hub.celery import app

    created = cohort_from_roster(north=north, south=south, members=members, prefix="M")
    app.control.purge()  # the cohort_advance cohorts_create enqueued: this run drives it
    payer_id, cohort_id = north.payer.pk, created.cohort.pk
    print(
        f"match only: roster of {len(members):,} read in {created.read_s:.1f} s, cohort "
        f"created in {created.create_s:.1f} s",
        flush=True,
    )
    storage = payload_storage()
    profiler = cProfile.Profile() if profile is not None else None
    if profiler is not None:
        profiler.enable()
    steps: dict[str, list[float]] = defaultdict(list)
    started = time.time()
    clock = time.perf_counter()
    first = pipeline.cohort_prepare(cohort_id=cohort_id, payer_id=payer_id)
    prepare_s = time.perf_counter() - clock
    due = [(time.time(), job_id) for job_id in first.jobs]
    heapq.heapify(due)
    jobs = BulkJob.objects.for_payer(payer_id)
    names: dict[str, str] = {
        BulkJobState.WAITING: "kick-off",
        BulkJobState.RUNNING: "poll",
        BulkJobState.DOWNLOADING: "collect",
    }
    while due:
        at, job_id = heapq.heappop(due)
        if at > time.time():
            time.sleep(at - time.time())
        before = jobs.values_list("state", flat=True).get(pk=job_id)
        clock = time.perf_counter()
        step = pipeline.bulk_job_step(job_id=job_id, payer_id=payer_id, storage=storage)
        seconds = time.perf_counter() - clock
        after = jobs.values_list("state", flat=True).get(pk=job_id)
        name = names.get(before, before)
        if before == BulkJobState.WAITING and after == BulkJobState.WAITING:
            name = "kick-off refused (429: the holder runs 4 jobs per client)"
        steps[name].append(seconds)
        if step.run_again_in is not None:
            heapq.heappush(due, (time.time() + step.run_again_in, job_id))
    wall_s = time.time() - started
    if profiler is not None and profile is not None:
        profiler.disable()
        profiler.dump_stats(str(profile))
    match_jobs = jobs.filter(cohort_id=cohort_id, kind=BulkJobKind.MEMBER_MATCH)
    return MatchOnly(
        created=created,
        members=len(members),
        chunks=match_jobs.count(),
        prepare_s=prepare_s,
        wall_s=wall_s,
        steps={name: (len(values), sum(values)) for name, values in steps.items()},
        statuses=member_statuses(payer_id, cohort_id),
        failed=[
            f"chunk {job.sequence}: {job.reason_message}"
            for job in match_jobs.filter(state=BulkJobState.FAILED)
        ],
    )


# --- the report ---


def _mib(kib: float) -> str:
    return f"{kib / 1024:,.0f} MiB"


def _number(n: int) -> str:
    """Return ``n`` in words up to nine (a table title reads "two worker processes")."""
    words = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    return words[n - 1] if 1 <= n <= len(words) else f"{n:,}"


def _after(moment: float | None, t0: float) -> str:
    return "—" if moment is None else f"{moment - t0:,.1f}"


def _spread(times: list[float], t0: float) -> str:
    """Return 'first / median / last' seconds after t0 of ``times``."""
    if not times:
        return "—"
    return (
        " / ".join(f"{t - t0:,.1f}" for t in (times[0], statistics.median(times), times[-1]))
        + f" s ({len(times):,} members)"
    )


def _table(title: str, rows: list[tuple[str, str]]) -> str:
    lines = [title, "", "| measure | figure |", "|---|---|"]
    lines += [f"| {measure} | {figure} |" for measure, figure in rows]
    return "\n".join(lines) + "\n"


def _rss_max(samples: Samples, start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return "—"
    # The highest of any worker: the memory one process needs is what bounds a deployment.
    values = [kib for rss in samples.rss_kib.values() for at, kib in rss if start <= at <= end]
    return _mib(max(values)) if values else "—"


def hub_table(run: HubRun, *, full: bool) -> str:
    """Return the figures of a hub run as a Markdown table."""
    t0 = run.t0
    matches, exports = run.match_jobs(), run.export_jobs()
    rows = [
        (
            f"roster read / `cohorts_create` ({run.members:,} members: users, consents, "
            "requests, timeline and audit events)",
            f"{run.created.read_s:.1f} s / {run.created.create_s:.1f} s",
        )
    ]
    lines = sum(job.lines for job in exports)
    delivered_times = run.moments.get("delivered", [])
    if full and delivered_times:
        last = delivered_times[-1]
        wall = last - t0
        rows.append(
            (
                "kick-off (cohort created) → last member delivered",
                f"{wall:,.1f} s: {len(delivered_times):,} members = "
                f"{len(delivered_times) / (wall / 60):,.0f} members/min; {lines:,} resources "
                f"exported = {lines / wall:,.0f} resources/s",
            )
        )
        rows.append(
            (
                "kick-off → cohort manifest delivered",
                f"{_after(run.cohort_delivered, t0)} s",
            )
        )
    if matches:
        first_created = min(job.created for job in matches)
        ends = [job.finished for job in matches if job.finished is not None]
        if ends:
            span = max(ends) - first_created
            rows.append(
                (
                    f"match: {len(matches)} chunk(s) of ≤{max(j.members for j in matches):,}, "
                    "first job created → last done",
                    f"{span:,.1f} s = {sum(j.members for j in matches) / span:,.0f} members/s "
                    f"(created {_after(first_created, t0)} s after kick-off)",
                )
            )
        for job in matches if len(matches) <= 4 else []:
            rows.append(
                (
                    f"match chunk {job.sequence} ({job.members:,}): created → kicked off → "
                    "answer ready → done",
                    f"{_after(job.created, t0)} → {_after(job.kicked_off, t0)} → "
                    f"{_after(job.manifest_ready, t0)} → {_after(job.finished, t0)} s",
                )
            )
        failed = [job for job in matches if job.state == "failed"]
        if failed:
            rows.append(
                (
                    f"match chunks failed: {len(failed)}",
                    "; ".join(f"chunk {j.sequence}: {j.reason}" for j in failed[:3]),
                )
            )
    for job in exports if len(exports) <= 4 else []:
        rows.append(
            (
                f"export {job.sequence} ({job.members:,} members, {job.files} files, "
                f"{job.lines:,} lines): kicked off → manifest ready → collect task starts → "
                "files downloaded and split → members handed to screening",
                f"{_after(job.kicked_off, t0)} → {_after(job.manifest_ready, t0)} → "
                f"{_after(job.collect_start, t0)} → {_after(job.files_split, t0)} → "
                f"{_after(job.finished, t0)} s",
            )
        )
    if len(exports) > 4:
        done = [job for job in exports if job.state == "done"]
        holder = [
            job.manifest_ready - job.kicked_off
            for job in exports
            if job.manifest_ready is not None and job.kicked_off is not None
        ]
        collect = [
            run.tasks.collect_s(job.pk) for job in done if job.pk in run.tasks.export_collect
        ]
        rows.append(
            (
                f"exports: {len(done)} of {len(exports)} done, {lines:,} lines split",
                f"last done {_after(max((j.finished or 0) for j in exports) or None, t0)} s; "
                f"holder's export (kicked off → manifest) median "
                f"{statistics.median(holder) if holder else 0:,.1f} s; collect task "
                f"(download, split, hand over) median "
                f"{statistics.median(collect) if collect else 0:,.1f} s",
            )
        )
    for status in ("retrieving", "screening", "delivered"):
        if run.moments.get(status):
            rows.append(
                (
                    f"members reaching `{status}` (first / median / last, after kick-off)",
                    _spread(run.moments[status], t0),
                )
            )
    rows.append(
        (
            "members' states at the end",
            ", ".join(f"{status} {n:,}" for status, n in sorted(run.statuses.items())),
        )
    )
    wall = run.tasks.last_end - run.tasks.first_start if run.tasks.by_kind else 0.0
    rows.append(
        (
            "worker time per task (runs, total, mean)",
            "; ".join(
                f"{kind} {n:,}, {total:,.1f} s, {1000 * total / n:,.0f} ms"
                for kind, (n, total) in run.tasks.by_kind.items()
            ),
        )
    )
    if wall and run.workers == 1:
        rows.append(
            (
                "worker busy (sum of task times / first task start → last task end)",
                f"{run.tasks.busy_s:,.1f} s of {wall:,.1f} s ({100 * run.tasks.busy_s / wall:.0f} %)",
            )
        )
    elif wall:
        # Each process can be busy the whole wall time: N of them, N times as much.
        capacity = wall * run.workers
        rows.append(
            (
                f"workers busy (sum of task times / (first task start → last task end) x "
                f"{run.workers} worker processes)",
                f"{run.tasks.busy_s:,.1f} s of {wall:,.1f} s x {run.workers} = "
                f"{capacity:,.1f} s ({100 * run.tasks.busy_s / capacity:.0f} %)",
            )
        )
    last_match = max((j.finished or 0 for j in matches), default=0) or None
    first_export = min((j.kicked_off or float("inf") for j in exports), default=float("inf"))
    last_export = max((j.finished or 0 for j in exports), default=0) or None
    end = delivered_times[-1] if delivered_times else None
    peaks = [
        f"match {_rss_max(run.samples, t0, last_match)}",
        f"export, download and split {_rss_max(run.samples, first_export, last_export)}",
    ]
    if full:
        peaks.append(f"screen and deliver {_rss_max(run.samples, last_export, end)}")
    if run.workers == 1:
        rows.append(
            (
                "worker peak RSS (VmHWM)",
                f"{_mib(run.peak_kib[0])} (idle after start-up {_mib(run.idle_kib[0])}; highest "
                f"VmRSS sampled every {SAMPLE_EVERY_SECONDS} s while: {', '.join(peaks)})",
            )
        )
    else:
        rows.append(
            (
                f"peak RSS (VmHWM) of the largest of the {run.workers} workers (each worker's, "
                "in the order they started)",
                f"{_mib(max(run.peak_kib))} ({', '.join(_mib(kib) for kib in run.peak_kib)}; "
                f"idle after start-up {', '.join(_mib(kib) for kib in run.idle_kib)}; highest "
                f"VmRSS of a worker sampled every {SAMPLE_EVERY_SECONDS} s while: "
                f"{', '.join(peaks)})",
            )
        )
    if full:
        rows.append(
            (
                "delivered",
                f"{run.delivered.members:,} members, {run.delivered.resources:,} resources "
                f"in their bundles ({run.delivered.received:,} received, cited Practitioners "
                f"and Organizations counted per member), {run.delivered.bytes / 2**20:,.0f} MiB",
            )
        )
    rows.append(
        (
            "machine load (1-minute load average, 2 cores, shared)",
            f"{run.load[0]:.1f} at kick-off, {run.load[1]:.1f} at the end",
        )
    )
    if not run.finished:
        rows.append(("time box", f"stopped after {run.waited_s:,.0f} s, unfinished"))
    if run.workers == 1:
        title = (
            f"Cohort of {run.members:,} members, full run (one worker, `--pool solo`, every queue)"
            if full
            else f"Cohort of {run.members:,} members: match, export, split (worker on `bulk` only)"
        )
    else:
        workers = f"{_number(run.workers)} worker processes (`--pool solo` each)"
        title = (
            f"Cohort of {run.members:,} members, full run: {workers}, every queue"
            if full
            else f"Cohort of {run.members:,} members: match, export, split: {workers}, "
            "`bulk` queue only"
        )
    return _table(title, rows)


def comparison_table(run: HubRun, bare: BareFloor) -> str:
    """Return the hub against the bare floor of the same run."""
    exports = run.export_jobs()
    manifests = [job.manifest_ready for job in exports if job.manifest_ready is not None]
    split = [job.files_split for job in exports if job.files_split is not None]
    delivered = run.moments.get("delivered", [])
    rows = [
        (
            f"bare `$bulk-member-match`, the hub's {bare.chunks} chunks ({bare.members:,} "
            "MemberBundles), kick-off → Groups read",
            f"{bare.match_s:,.1f} s ({bare.matched:,} matched)",
        ),
        (
            "bare `$davinci-data-export` of each matched Group (the hub's parameters), "
            "kick-off → manifest",
            f"{bare.export_s:,.1f} s (manifests at "
            + ", ".join(f"{at:,.1f}" for at in bare.manifests_at)
            + " s)",
        ),
        (
            f"bare download + `orjson.loads` per line: {bare.files} files, {bare.lines:,} "
            f"lines, {bare.mib:,.0f} MiB — one at a time (median of {len(bare.sequential_s)})",
            f"{statistics.median(bare.sequential_s):,.2f} s = "
            f"{bare.lines / statistics.median(bare.sequential_s):,.0f} lines/s",
        ),
        (
            f"the same, {bare.at_once} at once per export (BULK_DOWNLOADS_AT_ONCE)",
            f"{bare.download_s:,.2f} s = {bare.lines / bare.download_s:,.0f} lines/s",
        ),
    ]
    collected = [
        job.files_split - job.collect_start
        for job in exports
        if job.files_split is not None and job.collect_start is not None
    ]
    if collected:
        rows.append(
            (
                "hub: download + split into encrypted staging (collect task start → last file "
                "split), summed over the exports",
                f"{sum(collected):,.1f} s = {sum(collected) / bare.download_s:,.1f}x the bare "
                "download",
            )
        )
    if manifests and split:
        hub_split = max(split) - min(manifests)
        rows.append(
            (
                "hub: first manifest ready → last export's files downloaded and split",
                f"{hub_split:,.1f} s = {hub_split / bare.download_s:,.1f}x the bare download",
            )
        )
    if manifests and delivered:
        hub_after = delivered[-1] - min(manifests)
        rows.append(
            (
                "**hub: first manifest ready → last member delivered, against the bare download**",
                f"**{hub_after:,.1f} s = {hub_after / bare.download_s:,.1f}x** "
                f"({hub_after / statistics.median(bare.sequential_s):,.1f}x the one-at-a-time "
                "download)",
            )
        )
    handed = [job.finished for job in exports if job.finished is not None]
    if handed:
        hub_bulk = max(handed) - run.t0
        rows.append(
            (
                "hub: kick-off → last member handed to screening (match, export, download, "
                "split), against bare match + export + download",
                f"{hub_bulk:,.1f} s against {bare.total_s:,.1f} s = "
                f"{hub_bulk / bare.total_s:,.2f}x",
            )
        )
    if delivered:
        hub_total = delivered[-1] - run.t0
        rows.append(
            (
                "**hub: kick-off → last member delivered, against bare match + export + download**",
                f"**{hub_total:,.1f} s against {bare.total_s:,.1f} s = "
                f"{hub_total / bare.total_s:,.2f}x**",
            )
        )
    return _table("The hub against the bare floor (same run, same sandbox)", rows)


def match_only_table(run: MatchOnly) -> str:
    rows = [
        (
            f"roster read / `cohorts_create` ({run.members:,} members)",
            f"{run.created.read_s:.1f} s / {run.created.create_s:.1f} s",
        ),
        (
            f"`$bulk-member-match`, {run.members:,} members in {run.chunks} chunks: "
            "`cohort_prepare` → last chunk's members in their outcome",
            f"{run.wall_s:,.1f} s = **{run.members / run.wall_s:,.0f} members/s** "
            f"(`cohort_prepare` {run.prepare_s:.1f} s)",
        ),
        (
            "engine steps in the process (runs, total, mean)",
            "; ".join(
                f"{name} {n:,}, {total:,.1f} s, {1000 * total / n:,.0f} ms"
                for name, (n, total) in sorted(run.steps.items())
            ),
        ),
        (
            "members' states at the end",
            ", ".join(f"{status} {n:,}" for status, n in sorted(run.statuses.items())),
        ),
    ]
    if run.failed:
        rows.append(("failed chunks", "; ".join(run.failed[:5])))
    return _table(
        f"Matching alone, {run.members:,} members (the engine's steps run one at a time in "
        "the benchmark's process)",
        rows,
    )


def profile_print(paths: list[Path], title: str) -> None:
    """Print where a profiled run spent its time, the stats of ``paths`` (one per worker
    process) merged: the hub's own functions by cumulative time, then every function by its
    own time."""
    print(f"\n### cProfile: {title} ({', '.join(str(path) for path in paths)})")
    stats = pstats.Stats(str(paths[0]))
    for path in paths[1:]:
        stats.add(str(path))
    stats.sort_stats("cumulative").print_stats(r"/(exchange|hub)/", 45)
    stats.sort_stats("tottime").print_stats(30)


# --- the run ---


def run(args: argparse.Namespace, workdir: Path) -> int:
    """Set up every part, take the measures, print them; return the exit status."""
    hub_port = hub_environment_prepare(database=args.database, workdir=workdir)
    from django.conf import settings

    from exchange.models import ExchangeStatus
    from hub.models import FhirEndpoint
    from tests.support.exchange_setup import (
        NORTH_NPI,
        SOUTH_NPI,
        SOUTH_SANDBOX_ARGS,
        exchange_payers_configure,
    )
    from tests.support.sshd import running_sshd

    profile_dir = args.profile
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
        print(f"PROFILED RUN (cProfile, stats in {profile_dir}): the timings are not figures")
    tables: list[str] = []

    def table(text: str) -> None:
        tables.append(text)
        print("\n" + text, flush=True)

    population = max(args.members, args.match_only_members, args.split_members)
    started = time.monotonic()
    with (
        running_sandbox(
            "Southern Cross Health", *SOUTH_SANDBOX_ARGS,
            "--members", str(population + EXTRA_SANDBOX_MEMBERS),
        ) as sandbox,
        running_sshd() as sftp,
        (workdir / "gunicorn.log").open("wb") as hub_log,
    ):  # fmt: skip
        hub = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "hub.wsgi", "--bind", f"127.0.0.1:{hub_port}",
             "--workers", "1", "--threads", "4", "--log-level", "warning"],
            cwd=ROOT, stdout=hub_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_until_listening(hub_port, timeout=30)
            north = tenant_create(name="North Star Health", slug="north", npi=NORTH_NPI)
            south = tenant_create(name="Southern Cross Health", slug="south", npi=SOUTH_NPI)
            exchange_payers_configure(
                new=north,
                former=south,
                former_fhir_base=sandbox.fhir,
                sftp_server=sftp,
                payer_to_payer=True,
            )
            FhirEndpoint.objects.for_payer(south.payer).update(
                bulk_match_chunk_size=args.chunk_size
            )
            pool = ordinary_members(sandbox)
            print(
                f"sandbox ({population + EXTRA_SANDBOX_MEMBERS:,} members), sshd and hub up in "
                f"{time.monotonic() - started:.1f} s",
                flush=True,
            )

            full = hub_cohort_run(
                label="cohort",
                north=north,
                south=south,
                members=pool[: args.members],
                prefix="N",
                workdir=workdir,
                queues="default,pull,screen,deliver,bulk",
                workers=args.workers,
                until_split=False,
                timeout=args.timeout,
                profile=profile_dir / "worker-cohort.prof" if profile_dir else None,
            )
            table(hub_table(full, full=True))
            if not full.finished or full.statuses != Counter(
                {ExchangeStatus.DELIVERED: args.members}
            ):
                print("the cohort did not deliver every member; see the states above")
                return 1

            bodies, export_body = hub_requests_of(north.payer.pk, full.created.cohort.pk)
            print("bare floor: the same match and export by a client of the benchmark's own")
            bare = bare_floor(
                sandbox,
                organization_npi=NORTH_NPI,
                match_bodies=bodies,
                export_body=export_body,
                at_once=settings.BULK_DOWNLOADS_AT_ONCE,
            )
            table(comparison_table(full, bare))

            checked, manifest = deliveries_check(
                sandbox,
                incoming=sftp.incoming,
                payer_id=north.payer.pk,
                cohort_id=full.created.cohort.pk,
                organization_npi=NORTH_NPI,
                sample=args.sample,
            )
            assert manifest["memberCount"] == args.members, manifest["memberCount"]
            assert manifest["outcomes"] == {ExchangeStatus.DELIVERED: args.members}
            print(
                f"checked {checked} delivered members against the sandbox's own $everything "
                f"(delivery_check), and the cohort manifest ({manifest['memberCount']:,} "
                "members, all delivered)",
                flush=True,
            )
            shutil.rmtree(sftp.incoming / "south", ignore_errors=True)

            if args.match_only_members:
                match_only = match_only_run(
                    north=north,
                    south=south,
                    members=pool[: args.match_only_members],
                    profile=profile_dir / "match-only.prof" if profile_dir else None,
                )
                table(match_only_table(match_only))
            if args.split_members:
                split = hub_cohort_run(
                    label="split",
                    north=north,
                    south=south,
                    members=pool[: args.split_members],
                    prefix="T",
                    workdir=workdir,
                    queues="bulk",
                    workers=args.workers,
                    until_split=True,
                    timeout=args.split_timeout,
                    profile=None,
                )
                table(hub_table(split, full=False))
        finally:
            hub.terminate()
            hub.wait(timeout=20)

    print("\n## All figures\n")
    print("\n".join(tables))
    if profile_dir is not None:
        for paths, title in (
            (
                worker_profiles(profile_dir / "worker-cohort.prof", args.workers),
                "the worker of the full run"
                if args.workers == 1
                else f"the {_number(args.workers)} workers of the full run, merged",
            ),
            ([profile_dir / "match-only.prof"], "the match-only steps"),
        ):
            # A run stopped early may have left some stats unwritten.
            written = [path for path in paths if path.exists()]
            if written:
                profile_print(written, title)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=1000, help="the full run's cohort")
    parser.add_argument(
        "--match-only-members", type=int, default=10_000, help="matched alone; 0 skips"
    )
    parser.add_argument(
        "--split-members",
        type=int,
        default=10_000,
        help="matched, exported and split by a worker on the bulk queue; 0 skips",
    )
    parser.add_argument(
        "--chunk-size", type=int, default=500, help="FhirEndpoint.bulk_match_chunk_size"
    )
    parser.add_argument("--database", default="payer_hub_bench")
    parser.add_argument("--sample", type=int, default=20, help="delivered members checked")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds for the full run")
    parser.add_argument(
        "--split-timeout", type=float, default=900, help="time box of the split run, seconds"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="timed worker processes (--pool solo each, on every queue of the run) of the "
        "full and split runs: one per core of the 2-core machine the figures come from",
    )
    parser.add_argument(
        "--profile", type=Path, help="run under cProfile and keep the stats in this folder"
    )
    args = parser.parse_args()
    if args.workers < 1:
        parser.error("--workers must be 1 or more")
    return benchmark_in_workdir(run, args, prefix="cohort-exchange-bench-")


if __name__ == "__main__":
    raise SystemExit(main())
