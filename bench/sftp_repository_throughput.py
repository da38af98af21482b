"""Download throughput of the hub's SFTP repository next to OpenSSH's sshd, in the same run.

One collector: a 200 MB file (``--megabytes``), ``--rounds`` downloads each with OpenSSH's
``sftp`` client and with paramiko (the client the hub's workers use).

Many collectors at once (issue 15: "SFTP repository throughput with 20 concurrent
collectors"): ``--collectors`` (20) payer systems, ``--collectors-per-payer`` (5) of each of
4 payers (the repository lets a payer hold 8 sessions at once), each in a process of its
own with paramiko, sign in one after the other, then all download at once a delivered file
of their own (``--collector-megabytes``, 20 MB, random bytes); each file's sha256 is checked
against what was delivered. The report gives the total throughput (all bytes over the time
from the start to the last file done) and each collector's time (p50/p95/max).

Both serve the same plaintext, on this machine, in the same run. The repository runs as in
production (``manage.py sftp_repository`` in its own process: one asyncio loop) and
decrypts each file as it serves it; sshd (a process per connection) serves it from disk.
The hub is a throwaway one (its own SQLite database, keys and folders, whatever the
caller's environment), so the run needs no service but OpenSSH's sshd, and root for sshd's
chroot (as ``make test``). From a fresh clone:

    make venv services    # .venv, then PostgreSQL, Redis and sshd (apt-get when missing)
    .venv/bin/python bench/sftp_repository_throughput.py [--megabytes 200] [--rounds 3] \\
        [--collectors 20] [--collector-megabytes 20]

``--rounds 0`` leaves out the single collector, ``--collectors 0`` the many. The files are
made in a temporary folder (about three times their size: plaintext, encrypted staging,
the repository's copy) and in sshd's chroot, removed at the end.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import math
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORKDIR = Path(tempfile.mkdtemp(prefix="sftp-bench-"))
# A throwaway hub: its own SQLite database, keys and folders, whatever the caller's environment.
os.environ.update(
    {
        "SECRET_KEY": "bench-only-secret-key-" + "x" * 40,
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": f"sqlite:///{WORKDIR / 'hub.sqlite3'}",
        "CELERY_BROKER_URL": f"filesystem://{WORKDIR / 'broker'}",
        "FIELD_ENCRYPTION_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "OUTBOUND_ALLOWED_HOSTS": "127.0.0.1",
        "HTTPS": "false",
        "LOG_LEVEL": "WARNING",
        "PAYLOAD_STORAGE_DIR": str(WORKDIR / "payloads"),
        "SFTP_REPOSITORY_DIR": str(WORKDIR / "repository"),
        "SFTP_REPOSITORY_HOST_KEY_FILE": str(WORKDIR / "host_key"),
        # Every collector comes from 127.0.0.1 here; in production each payer's from its own
        # addresses, each held to the default (16 connections at a time).
        "SFTP_REPOSITORY_MAX_CONNECTIONS_PER_ADDRESS": "64",
        "DJANGO_SETTINGS_MODULE": "hub.settings",
    }
)

import django  # noqa: E402

django.setup()

import paramiko  # noqa: E402
from django.core.management import call_command  # noqa: E402

from bench.api_opt_ins import machine_cpu_share, machine_cpu_ticks  # noqa: E402
from exchange.delivery import deliver_files  # noqa: E402
from exchange.delivery.sftp import sftp_host_key_fetch  # noqa: E402
from exchange.payloads.backends import payload_storage  # noqa: E402
from exchange.repository.services import repository_key_register  # noqa: E402
from hub.models import Payer, Role, User  # noqa: E402
from tests.exchange.repository.harness import ClientKey, client_key  # noqa: E402
from tests.support.net import free_loopback_port, wait_until_listening  # noqa: E402
from tests.support.sshd import running_sshd  # noqa: E402

MB = 1_000_000


def openssh_download(port: int, user: str, key: Path, known_hosts: Path, path: str) -> float:
    started = time.monotonic()
    subprocess.run(
        ["sftp", "-F", "/dev/null", "-P", str(port), "-i", str(key), "-o", "IdentitiesOnly=yes",
         "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
         "-o", f"UserKnownHostsFile={known_hosts}", "-b", "-", f"{user}@127.0.0.1"],
        input=f"get {path} /dev/null\n", text=True, check=True, capture_output=True,
    )  # fmt: skip
    return time.monotonic() - started


def paramiko_download(port: int, user: str, pkey: paramiko.PKey, path: str) -> float:
    started = time.monotonic()
    transport = paramiko.Transport(("127.0.0.1", port))
    try:
        transport.connect(username=user, pkey=pkey)
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        with sftp.open(path) as remote:
            remote.prefetch()
            while remote.read(1 << 20):
                pass
    finally:
        transport.close()
    return time.monotonic() - started


def measure(label: str, rounds: int, size: int, download: object) -> list[str]:
    times = [download() for _ in range(rounds)]  # type: ignore[operator]
    rates = [size / MB / t for t in times]
    return [label, f"{statistics.median(rates):.0f}", f"{max(rates):.0f}"]


# --- many collectors at once ---


@dataclass(frozen=True)
class Collection:
    """What one collector is to fetch: as whom, with which key, and the file's sha256."""

    user: str
    pkey: paramiko.PKey
    path: str
    sha256: str


def collector(
    collection: Collection, port: int, signed_in: Connection, start: Barrier, done: Connection
) -> None:
    """Sign in, say so, wait for the others, then download the file hashing it; send
    (start, end, bytes, sha256) or the error's text."""
    try:
        transport = paramiko.Transport(("127.0.0.1", port))
        transport.connect(username=collection.user, pkey=collection.pkey)
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
    except Exception as exc:  # told to the parent, which reports it
        signed_in.send(f"sign-in: {exc!r}")
        return
    signed_in.send("")
    start.wait()
    began = time.monotonic()
    try:
        digest, size = hashlib.sha256(), 0
        with sftp.open(collection.path) as remote:
            remote.prefetch()
            while block := remote.read(1 << 20):
                digest.update(block)
                size += len(block)
        done.send((began, time.monotonic(), size, digest.hexdigest()))
    except Exception as exc:
        done.send(f"download: {exc!r}")
    finally:
        transport.close()


def collectors_download(label: str, port: int, collections: list[Collection]) -> list[str]:
    """Run one process per collection, signed in one after the other (sshd refuses some
    sign-ins past 10 at once, its MaxStartups), then all downloading at once; return the
    report's row, or raise if a file is missing or its sha256 differs."""
    context = multiprocessing.get_context("fork")  # the keys go to the children as objects
    start = context.Barrier(len(collections) + 1)
    pipes, processes = [], []
    for collection in collections:
        receive_signed_in, send_signed_in = context.Pipe(duplex=False)
        receive_done, send_done = context.Pipe(duplex=False)
        process = context.Process(
            target=collector, args=(collection, port, send_signed_in, start, send_done)
        )
        process.start()
        processes.append(process)
        pipes.append(receive_done)
        if problem := receive_signed_in.recv():
            start.abort()
            raise RuntimeError(f"{label}: {collection.user}: {problem}")
    start.wait()
    began, machine = time.monotonic(), machine_cpu_ticks()
    answers = [pipe.recv() for pipe in pipes]
    machine_share = machine_cpu_share(machine, machine_cpu_ticks())
    for process in processes:
        process.join(timeout=60)
    problems = [
        f"{c.path}: {a}" if isinstance(a, str) else f"{c.path}: sha256 differs"
        for c, a in zip(collections, answers, strict=True)
        if isinstance(a, str) or a[3] != c.sha256
    ]
    if problems:
        raise RuntimeError(f"{label}: " + "; ".join(problems))
    wall = max(ended for _, ended, _, _ in answers) - began
    total = sum(size for _, _, size, _ in answers)
    seconds = sorted(ended - started for started, ended, _, _ in answers)
    p95 = seconds[min(len(seconds), math.ceil(0.95 * len(seconds))) - 1]
    return [
        label, f"{total / MB / wall:.0f}", f"{wall:.1f}",
        f"{statistics.median(seconds):.1f} / {p95:.1f} / {seconds[-1]:.1f}", machine_share,
    ]  # fmt: skip


def collectors_deliver(
    *, collectors: int, per_payer: int, megabytes: int
) -> tuple[list[Collection], list[Path]]:
    """Deliver a file of random bytes to each collector's payer (``per_payer`` collectors of
    each); return what each collector is to fetch from the repository, and the plaintexts."""
    staging = payload_storage()
    collections, plaintexts = [], []
    for number in range(collectors):
        slug = f"collect-{number // per_payer + 1}"
        payer = Payer.objects.filter(slug=slug).first()
        if payer is None:
            payer = Payer.objects.create(name=f"Collecting Health {slug}", slug=slug)
            admin = User.objects.create(username=f"{slug}-admin", payer=payer, role=Role.PLAN_ADMIN)
            key = client_key(WORKDIR, f"{slug}_key")
            repository_key_register(
                payer=payer, label="bench", public_key=key.public_line, allowed_sources=[],
                expires_at=None, created_by=admin,
            )  # fmt: skip
        plaintext = WORKDIR / f"collector-{number}.ndjson"
        digest = hashlib.sha256()
        with (
            staging.writer(f"collectors/{number}/member.ndjson") as writer,
            plaintext.open("wb") as out,
        ):
            for _ in range(megabytes):
                block = os.urandom(MB)
                writer.write(block)
                out.write(block)
                digest.update(block)
        staging.write_bytes(f"collectors/{number}/manifest.json", b"{}")
        deliver_files(
            payer=payer, remote_directory=f"collected/{number}", storage=staging,
            files=[(f"collectors/{number}/member.ndjson", "member.ndjson"),
                   (f"collectors/{number}/manifest.json", "manifest.json")],
        )  # fmt: skip
        pkey = paramiko.Ed25519Key.from_private_key_file(str(WORKDIR / f"{slug}_key"))
        collections.append(
            Collection(slug, pkey, f"/collected/{number}/member.ndjson", digest.hexdigest())
        )
        plaintexts.append(plaintext)
    return collections, plaintexts


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--megabytes", type=int, default=200, help="the single file's size")
    parser.add_argument("--rounds", type=int, default=3, help="downloads of it per pair")
    parser.add_argument("--collectors", type=int, default=20, help="collectors at once")
    parser.add_argument("--collectors-per-payer", type=int, default=5)
    parser.add_argument("--collector-megabytes", type=int, default=20, help="each one's file")
    args = parser.parse_args()
    if not 0 < args.collectors_per_payer <= 8:
        parser.error("--collectors-per-payer: the repository lets a payer hold 8 sessions")
    size = args.megabytes * MB

    call_command("migrate", verbosity=0)
    payer = Payer.objects.create(name="Bench Health", slug="bench")
    admin = User.objects.create(username="bench-admin", payer=payer, role=Role.PLAN_ADMIN)
    key: ClientKey = client_key(WORKDIR, "client_key")
    repository_key_register(
        payer=payer, label="bench", public_key=key.public_line, allowed_sources=[],
        expires_at=None, created_by=admin,
    )  # fmt: skip

    plaintext = WORKDIR / "member.ndjson"
    delivered_s = 0.0
    if args.rounds:
        with plaintext.open("wb") as out:
            for _ in range(size // MB):
                out.write(os.urandom(MB))
        staging = payload_storage()
        with staging.writer("requests/1/member.ndjson") as writer, plaintext.open("rb") as source:
            while block := source.read(1 << 20):
                writer.write(block)
        staging.write_bytes("requests/1/manifest.json", b"{}")
        started = time.monotonic()
        deliver_files(
            payer=payer, remote_directory="former/1", storage=staging,
            files=[("requests/1/member.ndjson", "member.ndjson"), ("requests/1/manifest.json", "manifest.json")],
        )  # fmt: skip
        delivered_s = time.monotonic() - started
    started = time.monotonic()
    collections, collected = collectors_deliver(
        collectors=args.collectors,
        per_payer=args.collectors_per_payer,
        megabytes=args.collector_megabytes,
    )
    if collections:
        print(
            f"{len(collections)} collectors' files made and delivered in {time.monotonic() - started:.0f} s"
        )

    port = free_loopback_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "sftp_repository", "--port", str(port)],
        cwd=ROOT, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    rows: list[list[str]] = []
    together: list[list[str]] = []
    try:
        wait_until_listening(port)
        line = sftp_host_key_fetch(host="127.0.0.1", port=port)
        known = WORKDIR / "known_hosts_repository"
        known.write_text(f"[127.0.0.1]:{port} {line}\n")
        path = "/former/1/member.ndjson"
        if args.rounds:
            rows.append(measure("hub repository, OpenSSH sftp client", args.rounds, size,
                                lambda: openssh_download(port, "bench", key.path, known, path)))  # fmt: skip
            rows.append(measure("hub repository, paramiko client", args.rounds, size,
                                lambda: paramiko_download(port, "bench", key.pkey, path)))  # fmt: skip
        if collections:
            together.append(collectors_download("hub repository", port, collections))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)

    with running_sshd() as sshd:
        known = WORKDIR / "known_hosts_sshd"
        known.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_key_line}\n")
        sshd_key = WORKDIR / "sshd_client_key"
        sshd_key.write_text(sshd.client_key_text)
        sshd_key.chmod(0o600)
        if args.rounds:
            shutil.copy(plaintext, sshd.incoming / "member.ndjson")
            path = "/incoming/member.ndjson"
            rows.append(measure("OpenSSH sshd, OpenSSH sftp client", args.rounds, size,
                                lambda: openssh_download(sshd.port, sshd.username, sshd_key, known, path)))  # fmt: skip
            pkey = sshd.client_key
            rows.append(measure("OpenSSH sshd, paramiko client", args.rounds, size,
                                lambda: paramiko_download(sshd.port, sshd.username, pkey, path)))  # fmt: skip
        if collections:
            for file in collected:
                shutil.copy(file, sshd.incoming / file.name)
                file.unlink()
            on_sshd = [
                Collection(sshd.username, sshd.client_key, f"/incoming/{file.name}", c.sha256)
                for c, file in zip(collections, collected, strict=True)
            ]
            together.append(collectors_download("OpenSSH sshd", sshd.port, on_sshd))

    if rows:
        print(f"download of a {args.megabytes} MB file, {args.rounds} rounds each, same machine:")
        print(f"{'server, client':<40} {'median MB/s':>12} {'best MB/s':>10}")
        for label, median, best in rows:
            print(f"{label:<40} {median:>12} {best:>10}")
        print(
            f"delivery into the repository (encrypt + write + verify): {size / MB / delivered_s:.0f} MB/s"
        )
    if together:
        print(
            f"\n{len(collections)} collectors at once (paramiko, a process each, "
            f"{args.collectors_per_payer} per payer), {args.collector_megabytes} MB each, "
            f"sha256 of every file checked; load average {'/'.join(f'{v:.1f}' for v in os.getloadavg())}:"
        )
        print(
            "| server | total MB/s | all done in | per collector p50 / p95 / max | machine's CPU |"
        )
        print("|---|---|---|---|---|")
        for label, rate, wall, each, machine in together:
            print(f"| {label} | {rate} | {wall} s | {each} s | {machine} |")
    shutil.rmtree(WORKDIR, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
