"""10,000 opt-ins posted through the payer-system API, set against the bare floor of the server.

Issue 13, "What it must show": "10,000 opt-ins posted through the API (throughput, p50/p95
latency)". North's enrollment system, a SMART Backend Services client of the hub (its JWKS
served on loopback and registered as North's client JWKS URL, tests/api/payer_systems.py),
posts ``--opt-ins`` distinct opt-ins to ``POST /api/v1/opt-ins`` from ``--clients``
concurrent HTTP clients (httpx, one thread and one keep-alive connection each): each a
distinct member (the demographics and card number of a member of South's sandbox), one
previous payer (South, by NPI), valid, each with an ``Idempotency-Key`` of its own. Each
creates the member, an HRex Consent, an OptInRecord, an ExchangeRequest with its timeline
and audit events, the run-off pull's schedule (the coverage ended days ago) and the kept
idempotency key, and enqueues the request's first task once
its transaction commits. The report gives the throughput (opt-ins/s), the latency
p50/p95/p99/max, the CPU time the server's worker processes spent per POST (user + system,
read from /proc for the gunicorn master's children; PostgreSQL's own share is not in it), the
errors by status (there must be none), and then counts in the database
that exactly ``--opt-ins`` OptInRecords, ExchangeRequests, members, pull schedules and kept
keys exist (nothing lost, nothing doubled), that the ids answered are theirs, and that as
many tasks wait in Redis.

Then a replay: ``--replays`` (1,000) of the same POSTs, spread over the run, sent again with
their keys; each must come back ``Idempotent-Replayed: true`` with the first answer's ids,
and the counts must not move.

The bare floor, in the same run, before and after the hub: the same clients, the same
concurrency and the very same orjson-encoded bodies and headers, POSTed to a WSGI app of a
few lines (``bare_app`` below: it reads the body, parses it with orjson and answers 201 with
a small JSON) served by gunicorn with the hub's worker class, worker and thread count. What
is left between the two is the hub's own work: Django and DRF, the token check, validation,
the opt-in's rows in PostgreSQL, the enqueue to Redis.

Real parts only, all on 127.0.0.1: PostgreSQL (a dedicated database, dropped, re-created and
migrated at every run), Redis, the hub served by gunicorn (``--hub-workers`` 2 processes of
``--threads`` 4 threads, gthread: as ``make demo`` serves it, one process per core of the
2-core machine the figures come from), and South's FHIR server, a sandbox payer started as a
subprocess: South takes part in the hub with a FHIR endpoint that offers SMART Backend
Services, which the opt-in service checks (exchange/enrollment.py). No Celery worker runs:
the ``exchange_request_advance`` tasks the opt-ins enqueue stay in the broker's Redis
database, whose queues the benchmark purges at start and at the end (so use a Redis
database nothing else uses). The access token comes from the hub's token endpoint
(``/fhir/auth/token``: client_credentials with a signed assertion, the JWKS fetched from the
stub) through Django's test client in the benchmark's process, as the API tests get theirs;
it lives 5 minutes, so the clients take a fresh one every 4. The benchmark's clients run on
the same machine as the hub and PostgreSQL.

Run from a fresh clone, on a machine where nothing else uses the Redis database named below
(the benchmark purges its queues):

    make venv services    # .venv, then PostgreSQL, Redis and sshd (apt-get when missing)
    SECRET_KEY=bench-only-secret-key-not-for-production-0123456789abcdef \\
    ALLOWED_HOSTS=testserver,localhost,127.0.0.1 \\
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/payer_hub \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/7 \\
    FIELD_ENCRYPTION_KEYS=$(python3 -c 'import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode())') \\
    OUTBOUND_ALLOWED_HOSTS=127.0.0.1 \\
    HTTPS=false \\
    LOG_LEVEL=WARNING \\
    .venv/bin/python bench/api_opt_ins.py --opt-ins 10000 --clients 8 \\
        --database payer_hub_bench_optin

DATABASE_URL names the PostgreSQL server only: the benchmark drops, creates and migrates
the database ``--database`` on it. PAYLOAD_STORAGE_DIR (a temporary folder) and
HUB_PUBLIC_URL (the gunicorn it starts) are set by the benchmark itself. Other options:
``--replays 1000``, ``--hub-workers 2``, ``--threads 4``. It takes a few minutes.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.member_exchange_large_record import (  # noqa: E402
    benchmark_in_workdir,
    hub_environment_prepare,
    tenant_create,
)
from tests.sandbox.harness import running_sandbox  # noqa: E402
from tests.support.net import free_loopback_port, wait_until_listening  # noqa: E402

OPT_INS_PATH = "/api/v1/opt-ins"
# The API's scopes the enrollment system asks for: post opt-ins; read one back (warm-up).
SCOPES = ("hub/opt-ins.write", "hub/opt-ins.read")
# Access tokens live 5 minutes (exchange/consents/endpoint/auth.py); renew before that.
TOKEN_RENEW_SECONDS = 240.0
# Requests per client before the timed phase: connections, worker threads, DB connections.
WARM_UP_PER_CLIENT = 5
HTTP_TIMEOUT = 60.0
# The sandbox's showcase members (those with a note) are left out: not one member each.
EXTRA_SANDBOX_MEMBERS = 10


# --- the bare floor: a WSGI app of a few lines, served by the same gunicorn ---


def bare_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Read the body, parse it with orjson, answer 201 with a small JSON (a GET gets 200)."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    if environ["REQUEST_METHOD"] == "POST":
        opt_in = orjson.loads(body)
        answer = orjson.dumps({"id": 1, "member_id": opt_in["member"]["member_id"]})
        status = "201 Created"
    else:
        answer, status = b"{}", "200 OK"
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))]
    )
    return [answer]


@contextmanager
def gunicorn_serving(
    app: str, *, port: int, workers: int, threads: int, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Serve ``app`` with gunicorn (gthread: ``workers`` processes of ``threads`` threads)."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", app, "--bind", f"127.0.0.1:{port}",
             "--workers", str(workers), "--threads", str(threads), "--worker-class", "gthread",
             "--log-level", "warning"],
            cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_until_listening(port, timeout=30)
            yield process
        finally:
            process.terminate()
            process.wait(timeout=30)


def serving_arguments_add(parser: argparse.ArgumentParser) -> None:
    """Add the options of the gunicorn that serves the hub and the bare floor alike."""
    parser.add_argument("--hub-workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")


# --- the opt-ins ---


@dataclass(frozen=True)
class Post:
    """One POST as the clients send it: its idempotency key and its orjson-encoded body."""

    key: str
    body: bytes


def opt_in_posts(members: Sequence[dict[str, Any]], *, former_npi: str) -> list[Post]:
    """Return one valid opt-in per sandbox member: a new enrollee of North who left South
    (by NPI) four days ago, each with an idempotency key of its own."""
    today = datetime.now(UTC).date()
    obtained_at = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0).isoformat()
    posts = []
    for number, member in enumerate(members, start=1):
        body = {
            "member": {
                "member_id": f"NB{number:06d}",
                "family_name": member["family"],
                "given_names": member["given"],
                "birth_date": member["birth_date"],
                "gender": member["gender"],
            },
            "new_coverage": {"start": (today - timedelta(days=3)).isoformat()},
            "previous_payers": [
                {
                    "payer": former_npi,
                    "member_id": member["card_number"],
                    "coverage_start": "2019-01-01",
                    "coverage_end": (today - timedelta(days=4)).isoformat(),
                }
            ],
            "consent": {"choice": "everything"},
            "attestation": {
                "obtained_at": obtained_at,
                "method": "enrollment_form",
                "education_text_version": "2026-01",
            },
        }
        posts.append(Post(key=str(uuid.uuid4()), body=orjson.dumps(body)))
    return posts


class Token:
    """The enrollment system's access token, renewed before it expires; shared by the clients."""

    def __init__(self, issue: Callable[[], str]) -> None:
        self._issue = issue
        self._lock = threading.Lock()
        self._token = ""
        self._issued = 0.0

    def header(self) -> str:
        with self._lock:
            if time.monotonic() - self._issued > TOKEN_RENEW_SECONDS:
                self._token = self._issue()
                self._issued = time.monotonic()
            return f"Bearer {self._token}"


@dataclass
class Answer:
    """What one POST got, and how long it took."""

    index: int
    status: int | str  # the HTTP status, or the name of the transport error
    seconds: float
    replayed: bool
    body: bytes


@dataclass
class Phase:
    """A batch of POSTs sent by the clients: its answers, its wall time, and the CPU time
    the server's worker processes spent meanwhile."""

    answers: list[Answer]
    wall_s: float
    server_cpu_s: float

    @property
    def cpu_ms_per_post(self) -> float:
        return self.server_cpu_s * 1000 / len(self.answers)

    @property
    def throughput(self) -> float:
        return len(self.answers) / self.wall_s

    def latencies_ms(self) -> list[float]:
        return sorted(answer.seconds * 1000 for answer in self.answers)

    def statuses(self) -> Counter[int | str]:
        return Counter(answer.status for answer in self.answers)


def workers_cpu_s(master: int) -> float:
    """Return the CPU seconds (user + system) used so far by the worker processes of the
    gunicorn whose master is ``master`` (from /proc, the children of the master)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # After "pid (comm) ": state, ppid, ... utime and stime are the 12th and 13th.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a process that ended meanwhile
        if int(fields[1]) == master:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def posts_send(
    *,
    base: str,
    posts: Sequence[Post],
    indices: Sequence[int],
    clients: int,
    token: Token | None,
    server: subprocess.Popen[bytes],
) -> Phase:
    """Send ``posts[i]`` for each of ``indices`` from ``clients`` threads (each with its own
    keep-alive connection, taking the next POST when its last one is answered)."""
    following = iter(indices)
    taking = threading.Lock()

    def client() -> list[Answer]:
        answers: list[Answer] = []
        with httpx.Client(base_url=base, timeout=HTTP_TIMEOUT) as http:
            for _ in range(WARM_UP_PER_CLIENT):
                headers = {"Authorization": token.header()} if token else {}
                http.get(f"{OPT_INS_PATH}/0", headers=headers)
            start.wait()
            while True:
                with taking:
                    index = next(following, None)
                if index is None:
                    return answers
                post = posts[index]
                headers = {
                    "Content-Type": "application/json",
                    "Idempotency-Key": post.key,
                    "Authorization": token.header() if token else "Bearer bare",
                }
                sent = time.perf_counter()
                try:
                    response = http.post(OPT_INS_PATH, content=post.body, headers=headers)
                except httpx.TransportError as exc:
                    elapsed = time.perf_counter() - sent
                    answers.append(Answer(index, type(exc).__name__, elapsed, False, b""))
                    continue
                elapsed = time.perf_counter() - sent
                answers.append(
                    Answer(
                        index,
                        response.status_code,
                        elapsed,
                        response.headers.get("Idempotent-Replayed") == "true",
                        response.content,
                    )
                )

    # Every client is connected and warmed up before the clock starts.
    start = threading.Barrier(clients + 1)
    with ThreadPoolExecutor(max_workers=clients) as pool:
        futures = [pool.submit(client) for _ in range(clients)]
        start.wait()
        began, cpu = time.perf_counter(), workers_cpu_s(server.pid)
        answers = [answer for future in futures for answer in future.result()]
        wall_s, cpu = time.perf_counter() - began, workers_cpu_s(server.pid) - cpu
    return Phase(
        answers=sorted(answers, key=lambda answer: answer.index), wall_s=wall_s, server_cpu_s=cpu
    )


# --- the report ---


def _percentile(ordered: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of an ascending list."""
    rank = max(1, round(fraction * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def phase_line(label: str, phase: Phase) -> str:
    ms = phase.latencies_ms()
    statuses = ", ".join(
        f"{status}: {count:,}" for status, count in sorted(phase.statuses().items(), key=str)
    )
    return (
        f"| {label} | {len(phase.answers):,} | {phase.wall_s:.1f} s | "
        f"**{phase.throughput:,.0f}/s** | {_percentile(ms, 0.50):.1f} / "
        f"{_percentile(ms, 0.95):.1f} / {_percentile(ms, 0.99):.1f} / {ms[-1]:.0f} ms | "
        f"{statistics.fmean(ms):.1f} ms | {phase.cpu_ms_per_post:.1f} ms | {statuses} |"
    )


def problems_print(problems: Sequence[str], *, workdir: Path) -> None:
    """Print the problems found, then the end of the hub's and the bare floor's logs."""
    print("\nPROBLEMS:\n" + "\n".join(f"  - {problem}" for problem in problems))
    for log in ("hub.log", "bare.log"):
        print(f"--- {log} (last 40 lines)")
        print("\n".join((workdir / log).read_text().splitlines()[-40:]))


def errors(phase: Phase, *, expected: int) -> Counter[int | str]:
    """Return the answers' statuses other than ``expected``, counted."""
    return Counter(a.status for a in phase.answers if a.status != expected)


def loadavg() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


def machine_cpu_ticks() -> list[int]:
    """Return the machine's CPU time so far, in ticks: user, nice, system, idle, iowait, irq,
    softirq, steal (the first line of /proc/stat)."""
    return [int(field) for field in Path("/proc/stat").read_text().split()[1:9]]


def machine_cpu_share(before: list[int], after: list[int]) -> str:
    """Say how the machine's CPU time went between two readings of ``machine_cpu_ticks``:
    busy, idle, and stolen by the hypervisor (a virtual machine's cores are not all its own)."""
    spent = [later - earlier for earlier, later in zip(before, after, strict=True)]
    total = sum(spent) or 1
    busy = sum(spent[:3]) + sum(spent[5:7])
    return (
        f"busy {busy / total:.0%}, idle {(spent[3] + spent[4]) / total:.0%}, "
        f"stolen {spent[7] / total:.0%}"
    )


# --- the run ---


def broker_waiting() -> dict[str, int]:
    """Return the messages waiting in each of the hub's Celery queues (as the operations view
    reads them)."""
    from exchange.operations import celery_queue_depths

    depths = celery_queue_depths()
    if depths.problem:
        raise RuntimeError(depths.problem)
    return {queue.name: queue.waiting for queue in depths.queues}


def database_check(*, north: Any, hub: Phase, opt_ins: int) -> list[str]:
    """Check in the database that each opt-in was written once; return the problems found."""
    from api.models import IdempotencyKey
    from exchange.models import ExchangeRequest, OptInRecord, PullSchedule

    problems = []
    records = OptInRecord.objects.for_payer(north.payer)
    requests = ExchangeRequest.objects.for_payer(north.payer)
    counts = {
        "OptInRecords": records.count(),
        "ExchangeRequests": requests.count(),
        "members with an opt-in": records.values("member").distinct().count(),
        "ExchangeRequests of an opt-in": requests.filter(opt_in_record__isnull=False).count(),
        "idempotency keys kept": IdempotencyKey.objects.for_payer(north.payer).count(),
        # Each previous coverage ended days ago: its run-off pull is scheduled (schedules.py).
        "pull schedules opened": PullSchedule.objects.for_payer(north.payer).count(),
    }
    for what, count in counts.items():
        print(f"  {what}: {count:,}")
        if count != opt_ins:
            problems.append(f"{count:,} {what}, not {opt_ins:,}")
    answered = [orjson.loads(a.body) for a in hub.answers if a.status == 201]
    answered_ids = {body["id"] for body in answered}
    request_ids = {request["id"] for body in answered for request in body["requests"]}
    if answered_ids != set(records.values_list("pk", flat=True)):
        problems.append("the opt-in ids answered are not the opt-ins in the database")
    if request_ids != set(requests.values_list("pk", flat=True)):
        problems.append("the request ids answered are not the requests in the database")
    return problems


def replays_check(*, hub: Phase, replay: Phase) -> list[str]:
    """Check that each replayed POST got the first answer back, marked as a replay."""
    first = {answer.index: answer for answer in hub.answers}
    problems = []
    not_marked = sum(1 for answer in replay.answers if not answer.replayed)
    if not_marked:
        problems.append(f"{not_marked:,} replays were not marked Idempotent-Replayed")
    different = sum(
        1
        for answer in replay.answers
        if answer.status == 201
        and orjson.loads(answer.body) != orjson.loads(first[answer.index].body)
    )
    if different:
        problems.append(f"{different:,} replays answered otherwise than the first time")
    return problems


def run(args: argparse.Namespace, workdir: Path) -> int:
    """Set up every part, take the measures, print them; return the exit status."""
    hub_port = hub_environment_prepare(database=args.database, workdir=workdir)
    from exchange.models import ExchangeRequest, OptInRecord
    from hub.celery import app
    from hub.models import FhirEndpoint
    from tests.api.payer_systems import payer_systems_registered
    from tests.support.exchange_setup import NORTH_NPI, SOUTH_NPI, SOUTH_SANDBOX_ARGS

    app.control.purge()  # nothing left over from earlier runs on this broker
    bare_port = free_loopback_port()
    serving = {"workers": args.hub_workers, "threads": args.threads}
    started = time.monotonic()
    with (
        running_sandbox(
            "Southern Cross Health", *SOUTH_SANDBOX_ARGS,
            "--members", str(args.opt_ins + EXTRA_SANDBOX_MEMBERS),
        ) as sandbox,
        gunicorn_serving("hub.wsgi", port=hub_port, log=workdir / "hub.log", **serving) as hub_server,
        gunicorn_serving(
            "bench.api_opt_ins:bare_app", port=bare_port, log=workdir / "bare.log", **serving
        ) as bare_server,
    ):  # fmt: skip
        north = tenant_create(name="North Star Health", slug="north", npi=NORTH_NPI)
        south = tenant_create(name="Southern Cross Health", slug="south", npi=SOUTH_NPI)
        FhirEndpoint.objects.create(
            payer=south.payer,
            base_url=sandbox.fhir,
            offers_backend_services=True,
            offers_member_authorization=False,
        )
        members = [m for m in sandbox.member_list()["members"] if not m.get("note")]
        if len(members) < args.opt_ins:
            raise SystemExit(f"the sandbox has {len(members):,} plain members, too few")
        posts = opt_in_posts(members[: args.opt_ins], former_npi=SOUTH_NPI)
        print(
            f"sandbox ({args.opt_ins + EXTRA_SANDBOX_MEMBERS:,} members), hub and bare app up "
            f"in {time.monotonic() - started:.1f} s; {len(posts):,} opt-ins, "
            f"{statistics.fmean(len(p.body) for p in posts):.0f} bytes each",
            flush=True,
        )
        with payer_systems_registered(north.payer) as systems:

            def issue() -> str:
                from django.db import connection

                try:
                    return systems.client(north.payer, SCOPES).token
                finally:
                    connection.close()  # this thread's own connection

            token = Token(issue)
            everything = range(len(posts))
            send = {"posts": posts, "clients": args.clients}
            load = {"before": loadavg()}
            bare_before = posts_send(
                base=f"http://127.0.0.1:{bare_port}",
                indices=everything,
                token=None,
                server=bare_server,
                **send,
            )
            print(phase_line("bare floor, before", bare_before), flush=True)
            hub = posts_send(
                base=f"http://127.0.0.1:{hub_port}",
                indices=everything,
                token=token,
                server=hub_server,
                **send,
            )
            load["hub"] = loadavg()
            print(phase_line("hub", hub), flush=True)
            waiting = broker_waiting()
            before_replay = (
                OptInRecord.objects.for_payer(north.payer).count(),
                ExchangeRequest.objects.for_payer(north.payer).count(),
            )
            spread = list(itertools.islice(everything, 0, None, max(1, len(posts) // args.replays)))
            replay = posts_send(
                base=f"http://127.0.0.1:{hub_port}",
                indices=spread[: args.replays],
                token=token,
                server=hub_server,
                **send,
            )
            print(phase_line("hub, replays", replay), flush=True)
            after_replay = (
                OptInRecord.objects.for_payer(north.payer).count(),
                ExchangeRequest.objects.for_payer(north.payer).count(),
            )
            bare_after = posts_send(
                base=f"http://127.0.0.1:{bare_port}",
                indices=everything,
                token=None,
                server=bare_server,
                **send,
            )
            load["after"] = loadavg()
            print(phase_line("bare floor, after", bare_after), flush=True)

        print("\nin the database after the hub's phase:")
        problems = database_check(north=north, hub=hub, opt_ins=len(posts))
        print(f"  tasks waiting in Redis: {waiting}")
        if sum(waiting.values()) != len(posts):
            problems.append(f"{sum(waiting.values()):,} tasks enqueued, not {len(posts):,}")
        problems += replays_check(hub=hub, replay=replay)
        if after_replay != before_replay:
            problems.append(f"the replays changed the counts: {before_replay} → {after_replay}")
        for label, phase in (
            ("bare floor, before", bare_before),
            ("hub", hub),
            ("hub, replays", replay),
            ("bare floor, after", bare_after),
        ):
            wrong = errors(phase, expected=201)
            if wrong:
                problems.append(f"{label}: errors {dict(wrong)}")
        app.control.purge()  # the tasks the opt-ins enqueued: no worker is to run them

    bare = (
        min(bare_before.throughput, bare_after.throughput),
        max(bare_before.throughput, bare_after.throughput),
    )
    print("\n## Figures\n")
    print(
        f"{len(posts):,} opt-ins, {args.clients} concurrent clients, gunicorn "
        f"{args.hub_workers} workers x {args.threads} threads (gthread); load average "
        f"(1/5/15 min) before {load['before']}, after the hub {load['hub']}, "
        f"at the end {load['after']}\n"
    )
    print(
        "| phase | POSTs | wall | throughput | latency p50 / p95 / p99 / max | mean "
        "| server workers' CPU per POST | statuses |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, phase in (
        ("bare floor (orjson WSGI app), before", bare_before),
        ("**hub**, `POST /api/v1/opt-ins`", hub),
        ("hub, replays (same keys)", replay),
        ("bare floor, after", bare_after),
    ):
        print(phase_line(label, phase))
    print(
        f"\nhub throughput / bare floor: {hub.throughput / bare[1]:.3f}-"
        f"{hub.throughput / bare[0]:.3f} ({bare[0] / hub.throughput:.1f}-"
        f"{bare[1] / hub.throughput:.1f}x slower); replays {replay.throughput:,.0f}/s"
    )
    if problems:
        problems_print(problems, workdir=workdir)
        return 1
    print(
        f"\nchecked: {len(posts):,} OptInRecords, ExchangeRequests, members, idempotency "
        f"keys and pull schedules, one per POST, the answered ids theirs; {len(posts):,} tasks waiting in Redis "
        f"(purged); {len(replay.answers):,} replays answered with the first ids, marked "
        "Idempotent-Replayed, counts unchanged; no errors"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--opt-ins", type=int, default=10_000, help="distinct opt-ins posted")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--replays", type=int, default=1000, help="opt-ins posted again")
    serving_arguments_add(parser)
    parser.add_argument("--database", default="payer_hub_bench_optin")
    args = parser.parse_args()
    if not 0 < args.replays <= args.opt_ins:
        parser.error("--replays must be between 1 and --opt-ins")
    return benchmark_in_workdir(run, args, prefix="api-opt-ins-bench-")


if __name__ == "__main__":
    raise SystemExit(main())
