"""Download throughput of a 200 MB file: the hub's SFTP repository next to OpenSSH's sshd.

Both serve the same plaintext, on this machine, in the same run; each is downloaded with
OpenSSH's ``sftp`` client and with paramiko (the client the hub's workers use). The
repository runs as in production (``manage.py sftp_repository`` in its own process) and
decrypts the file as it serves it; sshd serves it from disk. Needs root (sshd's chroot).

Run: .venv/bin/python bench/sftp_repository_throughput.py [--megabytes 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
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
        "DJANGO_SETTINGS_MODULE": "hub.settings",
    }
)

import django  # noqa: E402

django.setup()

import paramiko  # noqa: E402
from django.core.management import call_command  # noqa: E402

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
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

    port = free_loopback_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "sftp_repository", "--port", str(port)],
        cwd=ROOT, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    rows: list[list[str]] = []
    try:
        wait_until_listening(port)
        line = sftp_host_key_fetch(host="127.0.0.1", port=port)
        known = WORKDIR / "known_hosts_repository"
        known.write_text(f"[127.0.0.1]:{port} {line}\n")
        path = "/former/1/member.ndjson"
        rows.append(measure("hub repository, OpenSSH sftp client", args.rounds, size,
                            lambda: openssh_download(port, "bench", key.path, known, path)))  # fmt: skip
        rows.append(measure("hub repository, paramiko client", args.rounds, size,
                            lambda: paramiko_download(port, "bench", key.pkey, path)))  # fmt: skip
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)

    with running_sshd() as sshd:
        shutil.copy(plaintext, sshd.incoming / "member.ndjson")
        known = WORKDIR / "known_hosts_sshd"
        known.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_key_line}\n")
        sshd_key = WORKDIR / "sshd_client_key"
        sshd_key.write_text(sshd.client_key_text)
        sshd_key.chmod(0o600)
        path = "/incoming/member.ndjson"
        rows.append(measure("OpenSSH sshd, OpenSSH sftp client", args.rounds, size,
                            lambda: openssh_download(sshd.port, sshd.username, sshd_key, known, path)))  # fmt: skip
        rows.append(measure("OpenSSH sshd, paramiko client", args.rounds, size,
                            lambda: paramiko_download(sshd.port, sshd.username, sshd.client_key, path)))  # fmt: skip

    print(f"download of a {args.megabytes} MB file, {args.rounds} rounds each, same machine:")
    print(f"{'server, client':<40} {'median MB/s':>12} {'best MB/s':>10}")
    for label, median, best in rows:
        print(f"{label:<40} {median:>12} {best:>10}")
    print(
        f"delivery into the repository (encrypt + write + verify): {size / MB / delivered_s:.0f} MB/s"
    )
    shutil.rmtree(WORKDIR, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
