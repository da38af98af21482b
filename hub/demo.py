"""`make demo`: run the whole hub on this machine, with embedded defaults where no server is.

Starts the web app (gunicorn), a real Celery worker and beat, the hub's SFTP repository
and — once the sandbox exists in the tree — three sandbox payers; prints where everything
is and how to sign in. Uses PostgreSQL / Redis when DATABASE_URL / CELERY_BROKER_URL are
set, otherwise an SQLite file and Kombu's filesystem broker under .demo/. Ctrl-C (or
SIGTERM) stops every process in order and exits 0 (hub/demo_supervisor.py).

Standard library only before Django: this module sets up the environment Django reads.
"""

import base64
import csv
import datetime as dt
import io
import json
import os
import secrets
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from hub.demo_supervisor import DemoSupervisor
from hub.totp_secrets import totp_secret_base32

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".demo"
HUB_PORT = int(os.environ.get("HUB_PORT", "8000"))
SFTP_PORT = int(os.environ.get("SFTP_PORT", "2222"))
# The key a demo collecting system of North signs in to the SFTP repository with.
DEMO_SFTP_KEY = STATE / "north_sftp_key"
# The pinned host key of the SFTP repository, for the printed `sftp` command.
DEMO_KNOWN_HOSTS = STATE / "known_hosts"
SANDBOXES = {"north": 8101, "south": 8102, "west": 8103}
# The demo payers: hub tenants and, under the same identifiers, sandbox payers — so a
# Consent naming the hub's payer by NPI names the organization the sandbox knows.
# slug, name, NPI (valid check digit), payer id, states, plan types
DEMO_PAYERS = [
    ("north", "North Star Health", "1234567893", "NSH01", ["MN", "WI"], ["medicare_advantage"]),
    ("south", "Southern Cross Health", "1245319599", "SCH02", ["TX", "LA"], ["medicaid", "qhp"]),
    ("west", "Western Peaks Health", "1367902453", "WPH03", ["CO", "UT"], ["qhp"]),
]
# A roster of South's sandbox members as new members of North, written at start-up for the
# cohort page (exchange/bulk/roster.py has the columns).
DEMO_ROSTER = STATE / "cohort-roster.csv"
ROSTER_EXAMPLE = ROOT / "exchange" / "bulk" / "roster_example.csv"
DEMO_ROSTER_MEMBERS = 50
# Former payers the hub reaches only by the member signing in there (SMART standalone
# launch): the demo shows that path too, since backend services is preferred wherever
# offered (exchange/services.py authorization_mode_for).
MEMBER_AUTHORIZATION_ONLY = frozenset({"west"})


def _persistent_secrets() -> dict[str, str]:
    """Return the demo's secrets, made once, so its SQLite data stays readable across runs."""
    path = STATE / "secrets.json"
    made = {
        "SECRET_KEY": lambda: secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "OPERATOR_PASSWORD": lambda: secrets.token_urlsafe(12),
        "OPERATOR_AUTHENTICATOR_KEY": lambda: secrets.token_hex(20),
    }
    values: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [name for name in made if name not in values]
    if missing:
        # A demo made by an earlier version keeps its secrets and gains the new ones.
        values.update({name: made[name]() for name in missing})
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


def _wait_for_health(url: str, *, give_up: Callable[[], bool], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not give_up():
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False


def known_hosts_write(
    host_key_file: Path, *, port: int, destination: Path, give_up: Callable[[], bool]
) -> str | None:
    """Write the repository's host key to ``destination`` as a known_hosts line; return it.

    Taken from the server's own key file, not from the network (ssh-keyscan would trust
    whatever answered). The server makes the key when it first starts, so wait for it.
    """
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not give_up():
        public = subprocess.run(  # noqa: S603
            ["ssh-keygen", "-y", "-f", str(host_key_file)],  # noqa: S607
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if public.returncode == 0 and public.stdout.strip():
            # OpenSSH names a host on a port other than 22 [host]:port (sshd(8) §SSH_KNOWN_HOSTS).
            line = f"[127.0.0.1]:{port} {public.stdout.strip()}"
            destination.write_text(line + "\n")
            return line
        time.sleep(0.5)
    return None


def demo_roster_write(*, members_url: str, former_npi: str, destination: Path, count: int) -> int:
    """Write a roster of ``count`` of a sandbox's members (as listed at ``members_url``) who
    left that payer for North last month; return how many it names."""
    with urllib.request.urlopen(members_url, timeout=10) as answer:  # noqa: S310 - loopback
        listed = json.load(answer)["members"]
    # Not the showcase members: several share a name on purpose (sandbox/README.md).
    members = [m for m in listed if not m["username"].startswith(("casey.", "patricia."))]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    left = now.date().replace(day=1) - dt.timedelta(days=1)
    opted_in = now.isoformat()
    out = io.StringIO()
    writer = csv.writer(out)
    # The documented example's header: the roster's columns have one home (exchange/bulk/).
    writer.writerow(next(csv.reader(ROSTER_EXAMPLE.open(encoding="utf-8"))))
    for number, member in enumerate(members[:count], start=1):
        writer.writerow(
            [
                f"NSH-{900000 + number}", member["family"], " ".join(member["given"]),
                member["birth_date"], member["gender"], former_npi, member["card_number"],
                "2020-01-01", left.isoformat(), (left + dt.timedelta(days=1)).isoformat(),
                "everything", opted_in,
            ]
        )  # fmt: skip
    destination.write_text(out.getvalue())
    return min(count, len(members))


def sftp_command(*, port: int, key: str, known_hosts: str) -> list[str]:
    """Return the `sftp` command a collecting system of North runs: host key pinned, no prompt."""
    return [
        "sftp", "-P", str(port), "-i", key,
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
        "north@127.0.0.1",
    ]  # fmt: skip


def _shown(path: Path) -> str:
    """Return ``path`` as short as it can be typed from the current directory."""
    return os.path.relpath(path) if Path.cwd() == ROOT else str(path)


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
    seed = [
        "demo_seed",
        "--operator-password", demo_secrets["OPERATOR_PASSWORD"],
        "--operator-authenticator-key", demo_secrets["OPERATOR_AUTHENTICATOR_KEY"],
    ]  # fmt: skip
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

    commands: dict[str, list[str]] = {}
    # Started first and stopped last: the hub calls the sandboxes, not the other way round.
    if has_sandbox:
        for slug, _name, npi, payer_id, *_ in DEMO_PAYERS:
            commands[f"sandbox-{slug}"] = [
                python, "-m", "sandbox", "--name", slug, "--port", str(SANDBOXES[slug]),
                "--seed", "2027", "--npi", npi, "--payer-id", payer_id,
                "--data-dir", str(STATE / f"sandbox-{slug}"),
                "--redirect-uri", f"http://127.0.0.1:{HUB_PORT}/oidc/callback/",
                "--hub-client-id", slug,
            ]  # fmt: skip
    commands |= {
        "sftp-repository": [python, "manage.py", "sftp_repository", "--host", "127.0.0.1",
                            "--port", str(SFTP_PORT)],
        "worker": [python, "-m", "celery", "-A", "hub", "worker", "--pool", "threads",
                   "--concurrency", "4", "--queues", "default,pull,screen,deliver,bulk",
                   "--loglevel", "WARNING"],
        # Its schedule is in the database (hub/beat_scheduler.py): no --schedule file.
        "beat": [python, "-m", "celery", "-A", "hub", "beat", "--loglevel", "WARNING"],
        "web": [python, "-m", "gunicorn", "hub.wsgi", "--bind", f"127.0.0.1:{HUB_PORT}",
                "--workers", "2", "--threads", "4", "--config", "python:hub.gunicorn_config"],
    }  # fmt: skip
    supervisor = DemoSupervisor(commands, cwd=ROOT, env=env)
    supervisor.install_signal_handlers()
    try:
        supervisor.start()
        hub = f"http://127.0.0.1:{HUB_PORT}"
        healthy = _wait_for_health(f"{hub}/healthz", give_up=lambda: supervisor.stop_requested)
        if not healthy and not supervisor.stop_requested:
            print("The hub did not become healthy; see the messages above.", file=sys.stderr)
            return 1
        known_hosts = known_hosts_write(
            Path(env["SFTP_REPOSITORY_HOST_KEY_FILE"]),
            port=SFTP_PORT,
            destination=DEMO_KNOWN_HOSTS,
            give_up=lambda: supervisor.stop_requested,
        )
        roster = 0
        if has_sandbox and not supervisor.stop_requested:
            roster = demo_roster_write(
                members_url=f"http://127.0.0.1:{SANDBOXES['south']}/sandbox/members.json",
                former_npi=DEMO_PAYERS[1][2],
                destination=DEMO_ROSTER,
                count=DEMO_ROSTER_MEMBERS,
            )
        if not supervisor.stop_requested:
            print(
                _running_message(hub, env, demo_secrets, known_hosts, has_sandbox, roster),
                flush=True,
            )
        return supervisor.supervise()
    finally:
        supervisor.stop()


def _running_message(
    hub: str,
    env: dict[str, str],
    demo_secrets: dict[str, str],
    known_hosts: str | None,
    has_sandbox: bool,
    roster: int,
) -> str:
    """Return what is running where, and how to sign in and collect files."""
    sftp = shlex.join(
        sftp_command(
            port=SFTP_PORT, key=_shown(DEMO_SFTP_KEY), known_hosts=_shown(DEMO_KNOWN_HOSTS)
        )
    )
    lines = [
        "",
        "The payer-to-payer hub is running.",
        f"  Hub:               {hub}/",
        f"  Health:            {hub}/healthz",
        f"  Operator console:  {hub}/operator/  (user: operator, password: "
        f"{demo_secrets['OPERATOR_PASSWORD']},",
        "                     and the code of an authenticator app given this key: "
        f"{totp_secret_base32(bytes.fromhex(demo_secrets['OPERATOR_AUTHENTICATOR_KEY']))})",
        f"  JWKS of North:     {hub}/p/north/.well-known/jwks.json",
        f"  JWKS of South:     {hub}/p/south/.well-known/jwks.json",
        f"  Database:          {env['DATABASE_URL'].split('@')[-1]}",
        f"  Broker:            {env['CELERY_BROKER_URL'].split('@')[-1]}",
        f"  SFTP repository:   127.0.0.1:{SFTP_PORT} (North's delivered files; collect with:)",
        f"    {sftp}",
    ]
    if known_hosts:
        lines.append(f"    host key, pinned in {_shown(DEMO_KNOWN_HOSTS)}: {known_hosts}")
    if has_sandbox:
        for slug, port in SANDBOXES.items():
            lines.append(f"  Sandbox {slug + ':':<11}http://127.0.0.1:{port}/fhir  "
                         f"(members: http://127.0.0.1:{port}/sandbox/members.json)")  # fmt: skip
        lines += [
            "  Sign in (every password at a sandbox is sandbox-demo):",
            f"    Member:          {hub}/p/north/sign-in/  as patricia.person at North's sandbox;",
            "                     ask Southern Cross Health, card DH10001235 (payer to payer:",
            "                     no second sign-in).",
            f"    Second member:   {hub}/p/south/sign-in/  as patricia.person at Southern Cross's",
            "                     sandbox; ask Western Peaks Health, card DH10001235. Western Peaks",
            "                     offers only member sign-in: you are sent to sign in there as",
            "                     patricia.person and allow the transfer.",
            f"    Plan admin:      {hub}/p/north/sign-in/  as admin at North's sandbox.",
            f"  Cohort:            upload {_shown(DEMO_ROSTER)} ({roster} of Southern Cross's",
            f"                     members) at {hub}/p/north/admin/cohorts/new/",
        ]
    else:
        lines.append("  (The sandbox payers are not in this tree yet; the demo runs without them.)")
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        # Ctrl-C while migrating or seeding, before the supervisor's handlers are in place.
        print("\nDemo stopped.")
        sys.exit(0)
