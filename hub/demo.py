"""`make demo`: run the whole hub on this machine, with embedded defaults where no server is.

Starts the web app (gunicorn), a real Celery worker and beat, and — once the sandbox
exists in the tree — two sandbox payers; prints where everything is. Uses
PostgreSQL / Redis when DATABASE_URL / CELERY_BROKER_URL are set, otherwise an SQLite
file and Kombu's filesystem broker under .demo/. Ctrl-C stops everything.

Standard library only before Django: this module sets up the environment Django reads.
"""

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".demo"
HUB_PORT = int(os.environ.get("HUB_PORT", "8000"))
SFTP_PORT = int(os.environ.get("SFTP_PORT", "2222"))
# The key a demo collecting system of North signs in to the SFTP repository with.
DEMO_SFTP_KEY = STATE / "north_sftp_key"
SANDBOXES = {"north": 8101, "south": 8102}
# The demo payers: hub tenants and, under the same identifiers, sandbox payers — so a
# Consent naming the hub's payer by NPI names the organization the sandbox knows.
# slug, name, NPI (valid check digit), payer id, states, plan types
DEMO_PAYERS = [
    ("north", "North Star Health", "1234567893", "NSH01", ["MN", "WI"], ["medicare_advantage"]),
    ("south", "Southern Cross Health", "1245319599", "SCH02", ["TX", "LA"], ["medicaid", "qhp"]),
]


def _persistent_secrets() -> dict[str, str]:
    """Return the demo's secrets, made once, so its SQLite data stays readable across runs."""
    path = STATE / "secrets.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    values = {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "OPERATOR_PASSWORD": secrets.token_urlsafe(12),
    }
    path.write_text(json.dumps(values))
    path.chmod(0o600)
    return values


def _environment(demo_secrets: dict[str, str]) -> dict[str, str]:
    broker_dir = STATE / "broker"
    (broker_dir / "control").mkdir(parents=True, exist_ok=True)
    env = {
        "SECRET_KEY": demo_secrets["SECRET_KEY"],
        "FIELD_ENCRYPTION_KEYS": demo_secrets["FIELD_ENCRYPTION_KEYS"],
        "DATABASE_URL": f"sqlite:///{STATE / 'hub.sqlite3'}",
        "CELERY_BROKER_URL": f"filesystem://{broker_dir}",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "OUTBOUND_ALLOWED_HOSTS": "127.0.0.1",
        "HTTPS": "false",
        "HUB_PUBLIC_URL": f"http://127.0.0.1:{HUB_PORT}",
        "PAYLOAD_STORAGE_DIR": str(STATE / "payloads"),
        "SFTP_REPOSITORY_DIR": str(STATE / "repository"),
        "SFTP_REPOSITORY_HOST_KEY_FILE": str(STATE / "sftp_host_key"),
        "SFTP_REPOSITORY_PUBLIC_PORT": str(SFTP_PORT),
        "LOG_LEVEL": "WARNING",
    }
    # A real PostgreSQL or Redis, when the person points at one, replaces the embedded default.
    chosen = {k: os.environ[k] for k in ("DATABASE_URL", "CELERY_BROKER_URL") if os.environ.get(k)}
    return {**os.environ, **env, **chosen}


def _wait_for_health(url: str, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False


def main() -> int:
    STATE.mkdir(exist_ok=True)
    demo_secrets = _persistent_secrets()
    env = _environment(demo_secrets)
    python = sys.executable
    has_sandbox = (ROOT / "sandbox" / "__main__.py").exists()

    def manage(*args: str) -> None:
        subprocess.run([python, "manage.py", *args], cwd=ROOT, env=env, check=True)  # noqa: S603

    manage("migrate", "--noinput", "-v0")
    manage("collectstatic", "--noinput", "-v0")
    seed = ["demo_seed", "--operator-password", demo_secrets["OPERATOR_PASSWORD"]]
    if has_sandbox:
        seed += [f"--sandbox={slug}=http://127.0.0.1:{port}" for slug, port in SANDBOXES.items()]
    manage(*seed)
    if not DEMO_SFTP_KEY.exists():
        subprocess.run(  # noqa: S603
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "north-demo-collector",  # noqa: S607
             "-f", str(DEMO_SFTP_KEY)], check=True,
        )  # fmt: skip
    manage("sftp_repository_key", "--payer", "north", "--label", "demo collector",
           "--public-key-file", f"{DEMO_SFTP_KEY}.pub")  # fmt: skip

    commands = {
        "web": [python, "-m", "gunicorn", "hub.wsgi", "--bind", f"127.0.0.1:{HUB_PORT}",
                "--workers", "2", "--threads", "4", "--access-logfile", "-"],
        "worker": [python, "-m", "celery", "-A", "hub", "worker", "--pool", "threads",
                   "--concurrency", "4", "--queues", "default,pull,screen,deliver,bulk",
                   "--loglevel", "WARNING"],
        "beat": [python, "-m", "celery", "-A", "hub", "beat", "--loglevel", "WARNING",
                 "--schedule", str(STATE / "beat-schedule")],
        "sftp-repository": [python, "manage.py", "sftp_repository", "--host", "127.0.0.1",
                            "--port", str(SFTP_PORT)],
    }  # fmt: skip
    if has_sandbox:
        for slug, _name, npi, payer_id, *_ in DEMO_PAYERS:
            commands[f"sandbox-{slug}"] = [
                python, "-m", "sandbox", "--name", slug, "--port", str(SANDBOXES[slug]),
                "--seed", "2027", "--npi", npi, "--payer-id", payer_id,
                "--data-dir", str(STATE / f"sandbox-{slug}"),
                "--redirect-uri", f"http://127.0.0.1:{HUB_PORT}/oidc/callback/",
                "--hub-client-id", slug,
            ]  # fmt: skip
    processes = {name: subprocess.Popen(cmd, cwd=ROOT, env=env) for name, cmd in commands.items()}  # noqa: S603

    def stop(*_: object) -> None:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        hub = f"http://127.0.0.1:{HUB_PORT}"
        if not _wait_for_health(f"{hub}/healthz"):
            print("The hub did not become healthy; see the messages above.", file=sys.stderr)
            return 1
        lines = [
            "",
            "The payer-to-payer hub is running.",
            f"  Hub:               {hub}/",
            f"  Health:            {hub}/healthz",
            f"  Operator console:  {hub}/operator/  (user: operator, password: "
            f"{demo_secrets['OPERATOR_PASSWORD']})",
            f"  JWKS of North:     {hub}/p/north/.well-known/jwks.json",
            f"  JWKS of South:     {hub}/p/south/.well-known/jwks.json",
            f"  Database:          {env['DATABASE_URL'].split('@')[-1]}",
            f"  Broker:            {env['CELERY_BROKER_URL'].split('@')[-1]}",
            f"  SFTP repository:   127.0.0.1:{SFTP_PORT} (North's delivered files; collect with:)",
            f"    sftp -P {SFTP_PORT} -i {DEMO_SFTP_KEY} north@127.0.0.1",
        ]
        if has_sandbox:
            for slug, port in SANDBOXES.items():
                lines.append(f"  Sandbox {slug}:     http://127.0.0.1:{port}/fhir  "
                             f"(members: http://127.0.0.1:{port}/sandbox/members.json)")  # fmt: skip
            lines += [
                f"  Member sign-in:    {hub}/p/north/sign-in/  (at North's sandbox: "
                "patricia.person / sandbox-demo; then ask Southern Cross Health, card DH10001235)",
                f"  Admin sign-in:     {hub}/p/north/sign-in/  (admin / sandbox-demo)",
            ]
        else:
            lines.append(
                "  (The sandbox payers are not in this tree yet; the demo runs without them.)"
            )
        lines.append("Press Ctrl-C to stop.")
        print("\n".join(lines), flush=True)
        while all(process.poll() is None for process in processes.values()):
            time.sleep(1)
        dead = [name for name, process in processes.items() if process.poll() is not None]
        print(f"Stopped because {', '.join(dead)} exited.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
