"""Both portals and the API under load at once, set against the bare floor of the server.

Issue 15, "What it must show": "p50/p95/p99 and errors for 200 concurrent members polling
status while 20 administrators page the request list and 10 payer systems post opt-ins ...
no 5xx, nothing lost". Locust (bench/portal_load_users.py, in a process of its own: locust
runs on gevent) drives, for ``--seconds`` after every user is running:

- ``--members`` (200) members, half of North's, half of South's, each with a request still
  in progress open in the portal: htmx asks for the page's live part every 2 s
  (``GET /p/<payer>/me/requests/<id>/?seen=<status>&version=<v>`` with ``HX-Request``, as
  templates/members/_request_live.html does: the first poll has no version and gets the
  part, the next ones send the version it shows and get a 204 while nothing changes);
- ``--admins`` (20) plan administrators, half of each payer, paging through their payer's
  request list (``/p/<payer>/admin/requests/?page=1..k``, 50 a page), 1-3 s on each page;
- ``--systems`` (10) payer systems, North's and South's enrollment systems alike, each
  posting one opt-in a second to ``POST /api/v1/opt-ins`` (a new member of its payer who
  left the other, its own ``Idempotency-Key``), with an access token of the hub's token
  endpoint (SMART Backend Services: the benchmark signs the client assertions with a key
  whose JWKS it serves on loopback, tests/api/payer_systems.py).

The members and administrators carry real sessions of the hub (tests/support/sessions.py:
the session a sign-in through the payer's identity provider ends in, written without one).
Each payer is seeded as bench/plan_admin_requests.py seeds its payer (``--requests-per-payer``
requests of 2,000 members, a year of them, the usual mix of states), so the list has
``--requests-per-payer / 50`` pages.

The report gives, for each kind of user, the requests in the window and per second, the
latency p50/p95/p99/max (locust's, from the client), the failures and the statuses; the CPU
the hub's web workers used (read from /proc), in all and per request, and the load
generator's; then it checks that
nothing answered 5xx, from the first user started to the last stopped, and that nothing
was lost: every opt-in answered 201 is in the database exactly once (its OptInRecord, the
ExchangeRequest it opened, its kept idempotency key, the id answered its own) and its first
task waits in Redis; nothing else was written.

The bare floor, first, in the same run: the same locust users, the same paths, cookies,
tokens and opt-in bodies, sent to a WSGI app of a few lines (``bare_app`` of
bench/api_opt_ins.py: a GET gets ``{}``, a POST is parsed with orjson and answered 201)
served by gunicorn with the hub's settings. It shows what the machine, gunicorn and the load
generator do on their own; what is left between the two is the hub's work.

Real parts only, all on 127.0.0.1: PostgreSQL (a dedicated database, dropped, re-created and
migrated at every run), Redis, the hub served by gunicorn (``--hub-workers`` 2 processes of
``--threads`` 4 threads, gthread, as ``make demo`` serves it). No Celery worker runs: the
tasks the opt-ins enqueue are counted in the broker's Redis database and purged, at start
and at the end (so use a Redis database nothing else uses). The load generator runs on the
same machine as the hub and PostgreSQL.

Run from a fresh clone, on a machine where nothing else uses the Redis database named below:

    make venv services    # .venv, then PostgreSQL, Redis and sshd (apt-get when missing)
    .venv/bin/pip install -r requirements-bench.txt    # locust, beside the dev tools
    SECRET_KEY=bench-only-secret-key-not-for-production-0123456789abcdef \\
    ALLOWED_HOSTS=testserver,localhost,127.0.0.1 \\
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/payer_hub \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/8 \\
    FIELD_ENCRYPTION_KEYS=$(python3 -c 'import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode())') \\
    OUTBOUND_ALLOWED_HOSTS=127.0.0.1 \\
    HTTPS=false \\
    LOG_LEVEL=WARNING \\
    .venv/bin/python bench/portal_load.py --seconds 60 --database payer_hub_bench_load

DATABASE_URL names the PostgreSQL server only: the benchmark drops, creates and migrates
the database ``--database`` on it. PAYLOAD_STORAGE_DIR (a temporary folder) and
HUB_PUBLIC_URL (the gunicorn it starts) are set by the benchmark itself. Other options:
``--members 200 --admins 20 --systems 10 --requests-per-payer 2000 --hub-workers 2
--threads 4``. It takes about three minutes with ``--seconds 60``; ``--seconds`` is at most
240, the life of an access token less a minute.
"""

from __future__ import annotations

import argparse
import math
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.api_opt_ins import (  # noqa: E402
    OPT_INS_PATH,
    SCOPES,
    TOKEN_RENEW_SECONDS,
    broker_waiting,
    gunicorn_serving,
    loadavg,
    machine_cpu_share,
    machine_cpu_ticks,
    opt_in_posts,
    problems_print,
    serving_arguments_add,
    workers_cpu_s,
)
from bench.member_exchange_large_record import (  # noqa: E402
    benchmark_in_workdir,
    hub_environment_prepare,
)
from tests.support.net import free_loopback_port  # noqa: E402

USERS = ROOT / "bench" / "portal_load_users.py"
# Past the window, the users' ramp-up and their last requests (STOP_TIMEOUT there).
LOCUST_SPARE_SECONDS = 300


def payers_seed(*, requests: int) -> list[Any]:
    """Seed North and South as bench/plan_admin_requests.py seeds its payer; give each a FHIR
    endpoint offering SMART Backend Services, so each may be named in the other's opt-ins
    (exchange/enrollment.py refuses a previous payer the hub cannot ask)."""
    from bench.plan_admin_requests import seed
    from hub.models import FhirEndpoint
    from tests.support.exchange_setup import NORTH_NPI, SOUTH_NPI

    payers = []
    for slug, name, npi in (
        ("north", "North Star Health", NORTH_NPI),
        ("south", "Southern Cross Health", SOUTH_NPI),
    ):
        payer, _admin, _former_admin = seed(requests, slug=slug, name=name, npi=npi)
        # Never called: no worker runs, and an opt-in only reads what the endpoint offers.
        FhirEndpoint.objects.create(
            payer=payer,
            base_url=f"http://127.0.0.1:9/{slug}/fhir",
            offers_backend_services=True,
            offers_member_authorization=False,
        )
        payers.append(payer)
    return payers


def session_cookie(user: Any) -> str:
    """Return the Cookie header of a fresh hub session of ``user``."""
    from django.conf import settings

    from tests.support.sessions import signed_in

    name = settings.SESSION_COOKIE_NAME
    return f"{name}={signed_in(user).cookies[name].value}"


def members_plan(*, payers: list[Any], count: int) -> list[dict[str, str]]:
    """Return ``count`` members (split between ``payers``) whose request is in progress,
    each with a session and the URL htmx polls."""
    from django.urls import reverse

    from exchange.models import ExchangeRequest
    from members.selectors import SETTLED

    plan = []
    for index, payer in enumerate(payers):
        share = count // len(payers) + (index < count % len(payers))
        requests = (
            ExchangeRequest.objects.for_payer(payer)
            .exclude(status__in=SETTLED)
            .order_by("member_id", "pk")
            .distinct("member_id")
            .select_related("member")[:share]
        )
        if len(requests) < share:
            raise SystemExit(f"{payer.slug} has {len(requests)} members with a request open")
        for request in requests:
            page = reverse(
                "members:request-detail",
                kwargs={"payer_slug": payer.slug, "request_id": request.pk},
            )
            plan.append(
                {
                    "cookie": session_cookie(request.member),
                    "path": f"{page}?seen={request.status}",
                    "page_url": f"http://127.0.0.1{page}",
                }
            )
    return plan


def admins_plan(*, payers: list[Any], count: int, requests: int) -> list[dict[str, Any]]:
    """Return ``count`` plan administrators (split between ``payers``), each with a session,
    the request list's path and its number of pages."""
    from django.urls import reverse

    from hub.models import Role, User
    from plan_admin.views.requests import REQUESTS_PER_PAGE

    plan: list[dict[str, Any]] = []
    for index in range(count):
        payer = payers[index % len(payers)]
        admin = User.objects.create(
            username=f"{payer.slug}-load-admin-{index}", payer=payer, role=Role.PLAN_ADMIN
        )
        plan.append(
            {
                "cookie": session_cookie(admin),
                "list_path": reverse("plan_admin:request-list", kwargs={"payer_slug": payer.slug}),
                "pages": math.ceil(requests / REQUESTS_PER_PAGE),
            }
        )
    return plan


def opt_in_pools(*, payers: list[Any], systems: int, per_system: int) -> list[list[dict[str, str]]]:
    """Return each system's opt-ins, distinct members of its payer (North's and South's systems
    in turn) who left the other payer."""
    pools: list[list[dict[str, str]]] = [[] for _ in range(systems)]
    for index in range(len(payers)):
        mine = range(index, systems, len(payers))
        former = payers[(index + 1) % len(payers)]
        members = [
            {
                "family": f"Loadtest{number}",
                "given": [f"Given{number}"],
                "birth_date": f"19{50 + number % 50}-0{1 + number % 9}-1{number % 10}",
                "gender": ("female", "male")[number % 2],
                "card_number": f"{former.slug.upper()}-{number:07d}",
            }
            for number in range(len(mine) * per_system)
        ]
        posts = opt_in_posts(members, former_npi=former.npi)
        for offset, system in enumerate(mine):
            pools[system] = [
                {"key": post.key, "body": post.body.decode()}
                for post in posts[offset * per_system : (offset + 1) * per_system]
            ]
    return pools


def tokens_issue(*, payers: list[Any], systems: int) -> list[str]:
    """Return an access token for each system, from the hub's token endpoint."""
    from tests.api.payer_systems import payer_systems_registered

    with payer_systems_registered(*payers) as registered:
        return [
            registered.client(payers[index % len(payers)], SCOPES).token for index in range(systems)
        ]


def users_run(*, plan: dict[str, Any], workdir: Path, server: Any, label: str) -> dict[str, Any]:
    """Run the locust users on ``plan``; return their result, with the CPU seconds of the
    server's workers and of the load generator within the run."""
    plan_path, result_path = workdir / f"{label}-plan.json", workdir / f"{label}-result.json"
    plan_path.write_bytes(orjson.dumps(plan))
    load_before = loadavg()
    server_cpu = workers_cpu_s(server.pid)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    machine = machine_cpu_ticks()
    began = time.monotonic()
    subprocess.run(
        [sys.executable, str(USERS), str(plan_path), str(result_path)],
        cwd=ROOT,
        check=True,
        timeout=plan["seconds"] + LOCUST_SPARE_SECONDS,
    )
    wall = time.monotonic() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result: dict[str, Any] = orjson.loads(result_path.read_bytes())
    result["wall_s"] = wall
    server_cpu = workers_cpu_s(server.pid) - server_cpu
    answered = sum(sum(counts.values()) for counts in result["all_statuses"].values())
    result["server_cores"] = server_cpu / wall
    result["server_ms_per_request"] = server_cpu * 1000 / max(1, answered)
    result["generator_cores"] = (
        after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    ) / wall
    result["load"] = f"{load_before} → {loadavg()}"
    result["machine"] = machine_cpu_share(machine, machine_cpu_ticks())
    return result


def nothing_lost(*, payers: list[Any], opt_ins: list[dict[str, Any]]) -> list[str]:
    """Check that each opt-in answered 201 is in the database once, and nothing else is;
    return the problems found."""
    from api.models import IdempotencyKey
    from exchange.models import ExchangeRequest, OptInRecord

    answered = [answer for answer in opt_ins if answer["status"] == 201]
    answered_ids = [answer["id"] for answer in answered]

    def both(model: Any, **lookups: Any) -> list[int]:
        return [
            pk
            for payer in payers
            for pk in model.objects.for_payer(payer).filter(**lookups).values_list("pk", flat=True)
        ]

    records = both(OptInRecord)
    counts = {
        "opt-ins answered 201": len(answered),
        "distinct ids answered": len(set(answered_ids)),
        "distinct keys answered": len({answer["key"] for answer in answered}),
        "OptInRecords": len(records),
        "ExchangeRequests of an opt-in": len(both(ExchangeRequest, opt_in_record__isnull=False)),
        "idempotency keys kept": len(both(IdempotencyKey)),
        "tasks waiting in Redis": sum(broker_waiting().values()),
    }
    for what, count in counts.items():
        print(f"  {what}: {count:,}")
    problems = [
        f"{count:,} {what}, not {len(answered):,}"
        for what, count in counts.items()
        if count != len(answered)
    ]
    if set(answered_ids) != set(records):
        problems.append("the opt-in ids answered are not the OptInRecords in the database")
    return problems


def result_problems(label: str, result: dict[str, Any]) -> list[str]:
    """Return the 5xx answers of the whole run and the failures and answers other than
    expected (200 a page, 201 an opt-in, 200 or 204 a status poll) within the window."""
    problems = []
    for name, statuses in result["all_statuses"].items():
        server_errors = {s: n for s, n in statuses.items() if int(s) >= 500}
        if server_errors:
            problems.append(f"{label}, {name}: 5xx {server_errors}")
    for name, kind in result["kinds"].items():
        expected = {"201"} if "POST" in name else {"200", "204"} if "poll" in name else {"200"}
        others = {s: n for s, n in kind["statuses"].items() if s not in expected}
        if kind["failures"] or others:
            problems.append(f"{label}, {name}: {kind['failures']} failures, statuses {others}")
    return problems


def figures_print(phases: list[tuple[str, dict[str, Any]]], args: argparse.Namespace) -> None:
    print("\n## Figures\n")
    print(
        f"{args.members} members, {args.admins} administrators, {args.systems} payer systems; "
        f"{args.seconds} s counted after all were running; gunicorn {args.hub_workers} workers "
        f"x {args.threads} threads (gthread); {args.requests_per_payer:,} requests per payer\n"
    )
    print("| phase, user | requests | per second | p50 / p95 / p99 / max | failures | statuses |")
    print("|---|---|---|---|---|---|")
    for label, result in phases:
        for name, kind in sorted(result["kinds"].items()):
            statuses = ", ".join(f"{s}: {n:,}" for s, n in sorted(kind["statuses"].items()))
            print(
                f"| {label}, {name} | {kind['requests']:,} | "
                f"{kind['requests'] / result['seconds']:,.1f} | {kind['p50']} / {kind['p95']} / "
                f"{kind['p99']} / {kind['max']:,.0f} ms | {kind['failures']} | {statuses} |"
            )
    print()
    for label, result in phases:
        print(
            f"{label}: server workers {result['server_cores']:.2f} cores "
            f"({result['server_ms_per_request']:.1f} ms of CPU a request), load generator "
            f"{result['generator_cores']:.2f} cores (averaged over {result['wall_s']:.0f} s "
            f"with ramp-up and stop); machine's CPU {result['machine']}; "
            f"load average {result['load']}"
        )


def run(args: argparse.Namespace, workdir: Path) -> int:
    """Set up every part, run the users against the bare floor and the hub; return the
    exit status."""
    hub_port = hub_environment_prepare(database=args.database, workdir=workdir)
    from hub.celery import app

    app.control.purge()  # nothing left over from earlier runs on this broker
    started = time.monotonic()
    payers = payers_seed(requests=args.requests_per_payer)
    plan: dict[str, Any] = {
        "seconds": args.seconds,
        "opt_ins_path": OPT_INS_PATH,
        "members": members_plan(payers=payers, count=args.members),
        "admins": admins_plan(payers=payers, count=args.admins, requests=args.requests_per_payer),
        "systems": [],
    }
    # One a second each, through the window and the ramp-up before it.
    pools = opt_in_pools(payers=payers, systems=args.systems, per_system=args.seconds + 30)
    print(f"seeded and planned in {time.monotonic() - started:.1f} s", flush=True)

    serving = {"workers": args.hub_workers, "threads": args.threads}
    bare_port = free_loopback_port()
    phases = []
    with (
        gunicorn_serving("hub.wsgi", port=hub_port, log=workdir / "hub.log", **serving) as hub,
        gunicorn_serving(
            "bench.api_opt_ins:bare_app", port=bare_port, log=workdir / "bare.log", **serving
        ) as bare,
    ):
        tokens = ["bare"] * args.systems
        for label, port, server in (("bare floor", bare_port, bare), ("hub", hub_port, hub)):
            if label == "hub":
                tokens = tokens_issue(payers=payers, systems=args.systems)
            plan["host"] = f"http://127.0.0.1:{port}"
            plan["systems"] = [
                {"token": token, "posts": pool} for token, pool in zip(tokens, pools, strict=True)
            ]
            result = users_run(plan=plan, workdir=workdir, server=server, label=label)
            phases.append((label, result))
            print(f"{label}: done in {result['wall_s']:.0f} s", flush=True)

    figures_print(phases, args)
    problems = [p for label, result in phases for p in result_problems(label, result)]
    print("\nin the database after the hub's run:")
    problems += nothing_lost(payers=payers, opt_ins=phases[-1][1]["opt_ins"])
    app.control.purge()  # the tasks the opt-ins enqueued: no worker is to run them
    if problems:
        problems_print(problems, workdir=workdir)
        return 1
    print("\nchecked: no 5xx from the first user started to the last stopped; every opt-in "
          "answered 201 in the database once, with its request, its key and its task; "
          "nothing else written")  # fmt: skip
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=60, help="the counted window")
    parser.add_argument("--members", type=int, default=200, help="members polling their status")
    parser.add_argument("--admins", type=int, default=20, help="administrators paging the list")
    parser.add_argument("--systems", type=int, default=10, help="payer systems posting opt-ins")
    parser.add_argument("--requests-per-payer", type=int, default=2_000)
    serving_arguments_add(parser)
    parser.add_argument("--database", default="payer_hub_bench_load")
    args = parser.parse_args()
    if not 0 < args.seconds <= TOKEN_RENEW_SECONDS:
        parser.error(f"--seconds must be between 1 and {TOKEN_RENEW_SECONDS:.0f}")
    return benchmark_in_workdir(run, args, prefix="portal-load-bench-")


if __name__ == "__main__":
    raise SystemExit(main())
