"""One member's large record, end to end: pulled, screened, packaged and delivered over SFTP.

Issue 5, "What it must show": a member whose record holds at least 50,000 resources
(``patricia.person`` at a sandbox payer started with ``--large-member patricia.person=FACTOR``,
about 300 resources per factor) goes through the real pipeline — SMART Backend Services
registration and token, ``$member-match``, ``Patient/$everything`` paged into encrypted
staging, screening, packaging, and a push over SFTP — run by a real Celery worker process
(``--pool solo``: the one process that runs every step, so its VmHWM in /proc is the
worker's peak resident memory). The figures are set against the time to merely download
the same ``$everything`` pages (``_count`` as retrieval asks, 500) and parse them with
orjson, measured in the same run against the same warmed-up sandbox.

Real parts only, all on 127.0.0.1: PostgreSQL (a dedicated database, dropped, re-created and
migrated at every run), Redis (the caller's broker; its queues are purged first), the sandbox
payer as a subprocess, the hub served by gunicorn (the sandbox fetches the new payer's JWKS
from it), and OpenSSH's sshd receiving the delivery (the new payer's own SFTP server,
``push_sftp``; sshd needs root for its chroot). The payers are set up as the browser test sets
them up (tests/support/exchange_setup.py), and the delivered folder is checked the way it is
checked there: sha256 and sizes against the manifest, every resource from the sandbox's own
record of the member (fetched apart from the hub, after the timings), the rule's limits kept.

Run from a fresh clone, as root (sshd needs root for its chroot), on a machine where nothing
else uses the Redis database named below (the benchmark purges its queues):

    make venv services    # .venv, then PostgreSQL, Redis and sshd (apt-get when missing)
    SECRET_KEY=bench-only-secret-key-not-for-production-0123456789abcdef \
    ALLOWED_HOSTS=testserver,localhost,127.0.0.1 \
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/payer_hub \
    CELERY_BROKER_URL=redis://127.0.0.1:6379/6 \
    FIELD_ENCRYPTION_KEYS=$(python3 -c 'import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode())') \
    OUTBOUND_ALLOWED_HOSTS=127.0.0.1 \
    HTTPS=false \
    LOG_LEVEL=WARNING \
    .venv/bin/python bench/member_exchange_large_record.py --care-factor 180 \
        --database payer_hub_bench

DATABASE_URL names the PostgreSQL server only: the benchmark drops, creates and migrates
the database ``--database`` on it. PAYLOAD_STORAGE_DIR (a temporary folder) and
HUB_PUBLIC_URL (the gunicorn it starts) are set by the benchmark itself.

``--profile OUT`` runs the worker under cProfile (bench/timed_celery_worker.py, every thread
merged), writes the stats to OUT and prints the heaviest functions. cProfile slows the worker
down a lot: a profiled run says where the time goes, never how long things take.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.sandbox.harness import (  # noqa: E402
    BackendClient,
    current_consent,
    matched_patient,
    running_sandbox,
)
from tests.support.net import free_loopback_port, wait_until_listening  # noqa: E402

REQUIRED_RESOURCES = 50_000


def database_recreate(server_url: str, name: str) -> str:
    """Drop and create database ``name`` on the server of ``server_url``; return its URL."""
    parts = urlsplit(server_url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise SystemExit(f"DATABASE_URL must name a PostgreSQL server, not {parts.scheme!r}")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as connection:
        identifier = sql.Identifier(name)
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(identifier))
        connection.execute(sql.SQL("CREATE DATABASE {}").format(identifier))
    return urlunsplit(parts._replace(path=f"/{name}"))


def proc_status_kib(pid: int, field: str) -> int:
    """Return a memory figure (VmRSS, VmHWM, ...) of process ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(f"/proc/{pid}/status has no {field}")


def download_and_parse(http: httpx.Client, patient_id: str, page_size: int) -> dict[str, float]:
    """Fetch every $everything page and parse it with orjson; return counts and seconds."""
    started = time.perf_counter()
    resources = pages = size = 0
    url: str | None = f"/Patient/{patient_id}/$everything?_count={page_size}"
    while url:
        response = http.get(url)
        response.raise_for_status()
        bundle = orjson.loads(response.content)
        pages += 1
        size += len(response.content)
        resources += len(bundle.get("entry", []))
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    return {
        "resources": resources,
        "pages": pages,
        "mib": size / 2**20,
        "seconds": time.perf_counter() - started,
    }


def tenant_create(*, name: str, slug: str, npi: str) -> Any:
    """Create a participating payer with an administrator and a member (the test personas)."""
    from hub.models import Payer, PayerStatus, Role, User
    from tests.conftest import Tenant

    payer = Payer.objects.create(name=name, slug=slug, npi=npi, status=PayerStatus.PARTICIPATING)
    return Tenant(
        payer=payer,
        admin=User.objects.create(username=f"{slug}-admin", payer=payer, role=Role.PLAN_ADMIN),
        member=User.objects.create(
            username=f"{slug}-member", payer=payer, role=Role.MEMBER, oidc_subject=f"{slug}-1"
        ),
    )


def worker_wait_ready(timeout: float = 60) -> None:
    """Wait until the Celery worker answers a ping (start-up is not part of the figures)."""
    from hub.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.control.ping(timeout=1.0):
            return
    raise TimeoutError(f"the Celery worker did not answer within {timeout:.0f} s")


@contextmanager
def profiled_worker(workdir: Path, profile: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run bench/timed_celery_worker.py under cProfile on every queue; stop it afterwards."""
    command = [
        sys.executable, str(ROOT / "bench" / "timed_celery_worker.py"),
        str(workdir / "tasks.jsonl"), "--profile", str(profile),
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT)
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=300)  # a profiled worker writes its stats first


def profile_print(path: Path) -> None:
    """Print the hub's own functions by cumulative time, then every function by its own."""
    print(f"\n### cProfile of the worker ({path})")
    stats = pstats.Stats(str(path))
    stats.sort_stats("cumulative").print_stats(r"/(exchange|hub)/", 40)
    stats.sort_stats("tottime").print_stats(30)


def exchange_run(
    *, member: Any, south: Any, card: str, worker_pid: int, timeout: float
) -> tuple[Any, int]:
    """Open the member's request, wait until it ends; return it and the worker's peak KiB."""
    from exchange.models import ConsentPolicy, ExchangeStatus
    from exchange.services import exchange_request_create
    from exchange.state_machine import ENDED

    today = dt.datetime.now(dt.UTC).date()
    exchange_request = exchange_request_create(
        member=member,
        former_payer=south,
        card_member_id=card,
        coverage_start=dt.date(2019, 1, 1),
        coverage_end=today - dt.timedelta(days=30),
        policy=ConsentPolicy.SENSITIVE,
    )
    deadline = time.monotonic() + timeout
    while exchange_request.status not in ENDED | {ExchangeStatus.FAILED}:
        if time.monotonic() > deadline:
            raise TimeoutError(f"request still {exchange_request.status} after {timeout:.0f} s")
        time.sleep(0.2)
        exchange_request.refresh_from_db()
    # Read before the worker stops: VmHWM is the peak resident set since it started.
    return exchange_request, proc_status_kib(worker_pid, "VmHWM")


def benchmark_in_workdir(
    run: Callable[[argparse.Namespace, Path], int], args: argparse.Namespace, *, prefix: str
) -> int:
    """Return ``run(args, workdir)``'s exit status, ``workdir`` a scratch folder of its own,
    removed afterwards; refuse to start without the hub's environment (the docstrings)."""
    if "DATABASE_URL" not in os.environ:
        raise SystemExit("set the hub environment first (see the docstring)")
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        return run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def hub_environment_prepare(*, database: str, workdir: Path) -> int:
    """Point this process (and the processes it starts) at a re-created, migrated benchmark
    database and a payload folder of its own, with Django set up; return the port the hub
    will serve on."""
    hub_port = free_loopback_port()
    os.environ.update(
        {
            "DATABASE_URL": database_recreate(os.environ["DATABASE_URL"], database),
            "PAYLOAD_STORAGE_DIR": str(workdir / "payloads"),
            "HUB_PUBLIC_URL": f"http://127.0.0.1:{hub_port}",
            "DJANGO_SETTINGS_MODULE": "hub.settings",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print(f"database {database}: re-created and migrated", flush=True)
    return hub_port


def run(args: argparse.Namespace, workdir: Path) -> int:
    """Set up every part, take the measures, print them; return the exit status."""
    hub_port = hub_environment_prepare(database=args.database, workdir=workdir)

    from exchange.models import ExchangeStatus
    from exchange.retrieval import PAGE_SIZE
    from hub.celery import app
    from tests.support.celery_worker import running_worker
    from tests.support.exchange_setup import (
        NORTH_NPI,
        SHOWCASE_CARD,
        SHOWCASE_MEMBER,
        SOUTH_NPI,
        SOUTH_SANDBOX_ARGS,
        delivery_check,
        exchange_payers_configure,
        member_demographics_set,
        sandbox_everything,
        sandbox_member,
    )
    from tests.support.sshd import running_sshd

    started = time.monotonic()
    with (
        running_sandbox(
            "Southern Cross Health", *SOUTH_SANDBOX_ARGS, "--members", "30",
            "--large-member", f"{SHOWCASE_MEMBER}={args.care_factor}",
        ) as former,
        running_sshd() as sftp,
    ):  # fmt: skip
        hub = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "hub.wsgi", "--bind", f"127.0.0.1:{hub_port}",
             "--workers", "1", "--threads", "4", "--log-level", "warning"],
            cwd=ROOT,
        )  # fmt: skip
        try:
            wait_until_listening(hub_port, timeout=30)
            patricia = sandbox_member(former, SHOWCASE_MEMBER)
            north = tenant_create(name="North Star Health", slug="north", npi=NORTH_NPI)
            south = tenant_create(name="Southern Cross Health", slug="south", npi=SOUTH_NPI)
            exchange_payers_configure(
                new=north,
                former=south,
                former_fhir_base=former.fhir,
                sftp_server=sftp,
                payer_to_payer=True,
            )
            member_demographics_set(user=north.member, member=patricia)
            print(f"sandbox, sshd and hub up in {time.monotonic() - started:.1f} s")

            client = BackendClient(former, organization_npi=NORTH_NPI).register()
            with client.http() as http:
                patient_id = matched_patient(
                    http, patricia, current_consent(recipient_npi=NORTH_NPI)
                )
                # The sandbox builds a record on first use and keeps it: build it untimed.
                warm = time.perf_counter()
                http.get(f"/Patient/{patient_id}/$everything", params={"_count": "1"})
                warm_s = time.perf_counter() - warm
                print(f"sandbox generated {SHOWCASE_MEMBER}'s record in {warm_s:.1f} s")
                download = download_and_parse(http, patient_id, PAGE_SIZE)
            print(
                f"download + orjson parse: {download['resources']:,.0f} resources, "
                f"{download['pages']:.0f} pages, {download['mib']:.0f} MiB in "
                f"{download['seconds']:.1f} s = "
                f"{download['resources'] / download['seconds']:,.0f} resources/s"
            )

            app.control.purge()  # nothing left over from earlier runs on this broker
            worker_context = (
                running_worker() if args.profile is None else profiled_worker(workdir, args.profile)
            )
            with worker_context as worker:
                worker_wait_ready()
                idle_kib = proc_status_kib(worker.pid, "VmRSS")
                exchange_request, peak_kib = exchange_run(
                    member=north.member,
                    south=south.payer,
                    card=SHOWCASE_CARD,
                    worker_pid=worker.pid,
                    timeout=args.timeout,
                )
        finally:
            hub.terminate()
            hub.wait(timeout=20)

        if exchange_request.status != ExchangeStatus.DELIVERED:
            print(f"request ended {exchange_request.status}: {exchange_request.reason_message}")
            return 1
        events = list(exchange_request.events.exclude(status=""))
        wall = (events[-1].created_at - events[0].created_at).total_seconds()
        retrieved = sum(exchange_request.resource_counts.values())
        # The former payer's own record, fetched apart from the hub, is the oracle.
        oracle = sandbox_everything(former, member=patricia, recipient_npi=NORTH_NPI)
        manifest = delivery_check(
            sftp.incoming / "south" / str(exchange_request.pk), oracle, policy="sensitive"
        )
        bundle_mib = manifest["files"][0]["size"] / 2**20

    print(
        f"pipeline (worker: match, retrieve, screen, package, deliver over SFTP): "
        f"{retrieved:,} resources in {wall:.1f} s = {retrieved / wall:,.0f} resources/s"
        + ("" if retrieved >= REQUIRED_RESOURCES else f" (below {REQUIRED_RESOURCES:,})")
    )
    print("  timeline (s from consent):")
    for event in events[1:]:
        at = (event.created_at - events[0].created_at).total_seconds()
        print(f"    {at:7.1f}  {event.status}")
    print(
        f"  delivered {manifest['resourceTotal']:,} resources ({bundle_mib:.0f} MiB bundle.json); "
        f"screened out {sum(row['count'] for row in manifest['screenedOut']):,}; "
        f"checked against the sandbox's own record"
    )
    print(
        f"  worker peak RSS (VmHWM): {peak_kib / 1024:.0f} MiB "
        f"(idle after start-up: {idle_kib / 1024:.0f} MiB)"
    )
    print(
        f"  pipeline / bare download+parse: {wall / download['seconds']:.1f}x the time "
        f"(resources fetched: {retrieved:,} by the pipeline, "
        f"{download['resources']:,.0f} by the bare download)"
    )
    if args.profile is not None:
        profile_print(args.profile)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--care-factor", type=int, default=180, help="--large-member factor")
    parser.add_argument("--database", default="payer_hub_bench")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for the exchange")
    parser.add_argument("--profile", type=Path, help="run the worker under cProfile, stats here")
    args = parser.parse_args()
    return benchmark_in_workdir(run, args, prefix="member-exchange-bench-")


if __name__ == "__main__":
    raise SystemExit(main())
