"""The scheduler's cost to find due work among 1,000,000 scheduled pulls, and its bare floor.

Issue 13, "What it must show": "the scheduler's cost to find due work among 1,000,000
scheduled pulls (query time and plan)". Every beat tick, the scheduler asks one question
across payers (exchange/schedules.py ``pull_schedules_due``): which live schedules (neither
paused nor ended) are due now, the longest waiting first, at most RUN_BATCH of them; then
``pull_schedules_run`` claims those rows with ``SELECT ... FOR UPDATE SKIP LOCKED``, their
payers, former payers and consents joined. Its cost must stay that of the work due, not of
the table: the partial index ``schedule_due`` (next_run_at, live rows only) is there for it.

The benchmark fills ``--schedules`` (1,000,000) PullSchedule rows across ``--payers`` (20)
payers with set-based SQL (``INSERT ... SELECT ... FROM generate_series``), after the rows
they reference: the payers (by the ORM), a member for every two schedules and a consent per
schedule (by SQL likewise; the columns a statement does not set take the model's default,
so a new column does not break it). Each member has a refresh schedule at a concurrent
payer and a run-off schedule at a previous one. By a seeded random draw per row: 25% ended
(no next run), 3% paused by a plan administrator (next run kept, in the past or ahead),
1% due (next run within the last 48 hours), the rest ahead (next run up to 92 days away for
a refresh, 60 for a run-off). Then VACUUM (ANALYZE), as autovacuum would leave a table
that has settled.

Then, at the moment of the fill, each query is timed, median of ``--runs`` (21) runs, on a
connection that has run it before ("warm"), and once as the first query of a new connection
(a new PostgreSQL backend: empty catalog caches, nothing planned; "cold"). Cold is no
more than that: the server is shared and is not restarted, nor the OS's page cache
dropped, so the data pages are wherever the fill and the vacuum left them (the plans,
taken after the timings, show them all in shared buffers). The queries:

- the selector, as Django runs it: ``list(pull_schedules_due(now=..., limit=RUN_BATCH))``
  (SQL plus building the model instances);
- its SQL alone (as Django compiles it), through psycopg: query time, and its plan by
  ``EXPLAIN (ANALYZE, BUFFERS)``;
- the claiming form ``pull_schedules_run`` runs (``select_for_update(skip_locked=True)``,
  ``select_related`` of the payers and the consent), in a transaction rolled back;
- all the due rows at once (no limit short of them), the worst case of a backlog.

Each SQL's time is taken on the client (sent, run, every row fetched and parsed by psycopg)
and, apart, on the server: planning plus execution by ``EXPLAIN (ANALYZE, TIMING OFF)``,
median of as many runs; the difference is the rows' way to the client.

The bare floor, in the same run: the same query shape (``WHERE next_run_at <= now ORDER BY
next_run_at LIMIT n``) over a table with only (id, next_run_at) and a plain B-tree index on
next_run_at, holding the same 1,000,000 ids with the live schedules' next_run_at (NULL for
the paused and ended ones, so it answers with the very same rows, which is checked), also
vacuumed and analyzed.

Real parts only: PostgreSQL on 127.0.0.1 (a dedicated database, dropped, re-created and
migrated at every run). No web server, worker or Redis is used (Django's settings still
want a broker URL).

Run from a fresh clone:

    make venv services    # .venv, then PostgreSQL, Redis and sshd (apt-get when missing)
    SECRET_KEY=bench-only-secret-key-not-for-production-0123456789abcdef \\
    ALLOWED_HOSTS=testserver,localhost,127.0.0.1 \\
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/payer_hub \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/7 \\
    FIELD_ENCRYPTION_KEYS=$(python3 -c 'import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode())') \\
    OUTBOUND_ALLOWED_HOSTS=127.0.0.1 \\
    HTTPS=false \\
    LOG_LEVEL=WARNING \\
    .venv/bin/python bench/pull_schedules.py --schedules 1000000 --payers 20 \\
        --database payer_hub_bench_optin

DATABASE_URL names the PostgreSQL server only: the benchmark drops, creates and migrates
the database ``--database`` on it. Other options: ``--runs 21``, ``--seed 0.42`` (the
random draw's). The fill takes a minute or two; the database is left behind for a look
(``psql``), and dropped by the next run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.member_exchange_large_record import (  # noqa: E402
    benchmark_in_workdir,
    hub_environment_prepare,
)

FLOOR_TABLE = "bench_schedule_floor"
# Shares of the schedules, drawn per row (see the docstring).
ENDED, PAUSED, DUE = 0.25, 0.03, 0.01
# A consent resource of the size the hub keeps (exchange/consents: an HRex Consent).
CONSENT_RESOURCE = """{"resourceType": "Consent", "status": "active",
 "meta": {"profile": ["http://hl7.org/fhir/us/davinci-hrex/StructureDefinition/hrex-consent"]},
 "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
   "code": "patient-privacy"}]},
 "category": [{"coding": [{"system": "http://loinc.org", "code": "IDSCL"}]}],
 "patient": {"reference": "Patient/bench"}, "dateTime": "2026-11-20",
 "performer": [{"reference": "Patient/bench"}],
 "sourceReference": {"reference": "http://example.org/DocumentReference/someconsent"},
 "policy": [{"uri": "http://hl7.org/fhir/us/davinci-hrex/StructureDefinition-hrex-consent.html#sensitive"}],
 "provision": {"type": "permit", "period": {"start": "2026-11-20", "end": "2027-11-20"},
   "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
     "code": "performer"}]}, "reference": {"identifier": {"system": "http://hl7.org/fhir/sid/us-npi",
     "value": "1245319599"}}},
   {"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
     "code": "IRCP"}]}, "reference": {"identifier": {"system": "http://hl7.org/fhir/sid/us-npi",
     "value": "1234567893"}}}],
   "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction",
     "code": "disclose"}]}]}}"""


# --- the fill ---


def rows_insert(
    model: Any, *, values: dict[str, str], source: str, params: dict[str, Any]
) -> tuple[int, float]:
    """Insert ``model`` rows with one ``INSERT ... SELECT <values> FROM <source>``; return the
    rows inserted and the seconds it took.

    ``values`` maps columns to SQL expressions (named ``%(...)s`` parameters from ``params``);
    every other column takes NULL if it may, else the model field's default, and a column
    with neither is an error (the model grew a field this benchmark must set).
    """
    from django.db import connection

    columns, expressions = [], []
    arguments = dict(params)
    for model_field in model._meta.concrete_fields:
        if model_field.primary_key:
            continue
        columns.append(connection.ops.quote_name(model_field.column))
        if model_field.column in values:
            expressions.append(values[model_field.column])
        elif model_field.null:
            expressions.append("NULL")
        elif (default := model_field.get_default()) is not None:  # a CharField's is ""
            name = f"default_{model_field.column}"
            arguments[name] = model_field.get_db_prep_save(default, connection)
            expressions.append(f"%({name})s")
        else:
            raise ValueError(f"{model.__name__}.{model_field.name}: give it a value")
    unknown = set(values) - {model_field.column for model_field in model._meta.concrete_fields}
    if unknown:
        raise ValueError(f"{model.__name__} has no columns {sorted(unknown)}")
    # The benchmark's own SQL; values travel as parameters.
    statement = (
        f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({', '.join(columns)}) "  # noqa: S608
        f"SELECT {', '.join(expressions)} FROM {source}"
    )
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(statement, arguments)
        inserted = cursor.rowcount
    return inserted, time.perf_counter() - started


def id_base(model: Any, *, where: str, count: int) -> int:
    """Return the first id of the ``count`` rows just inserted (``where`` picks them), which
    one INSERT ... SELECT numbered without a gap in a database nobody else writes to."""
    from django.db import connection

    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT min(id), max(id), count(*) FROM {table} WHERE {where}")  # noqa: S608
        low, high, found = cursor.fetchone()
    if found != count or high - low + 1 != count:
        raise RuntimeError(f"{table}: {found} rows, ids {low}..{high}, not {count} in a row")
    return int(low)


@dataclass(frozen=True)
class Filled:
    now: datetime
    schedules: int
    members: int
    seconds: dict[str, float]


# Schedule n (1..N) belongs to member m = (n + 1) / 2 at the new payer p = (m - 1) % P; odd
# n is the member's refresh at a concurrent payer, even n its run-off at a previous payer;
# consent n is the schedule's. The former payers are other payers of the twenty.
_MEMBER = "((g.n + 1) / 2)"


def payer_of(member: str) -> str:
    """Return the SQL of the payer id of member number ``member`` (1, 2, ...)."""
    return f"(%(payers)s::bigint[])[(({member} - 1) %% %(payer_count)s) + 1]"


_PAYER = payer_of(_MEMBER)
_FORMER = (
    f"(%(payers)s::bigint[])[((({_MEMBER} - 1) %% %(payer_count)s) + "
    f"CASE WHEN g.n %% 2 = 1 THEN 1 + {_MEMBER} %% 3 ELSE 4 + {_MEMBER} %% 5 END) "
    "%% %(payer_count)s + 1]"
)
_REFRESH = "g.n %% 2 = 1"


def schedules_fill(*, schedules: int, payer_count: int, seed: float) -> Filled:
    """Create the payers, members, consents and schedules; return when "now" is."""
    from django.db import connection, transaction
    from django.utils import timezone

    from exchange.models import Consent, PullSchedule
    from hub.models import Payer, PayerStatus, Role, User

    now = timezone.now()
    seconds: dict[str, float] = {}
    members = (schedules + 1) // 2
    with transaction.atomic():
        payers = [
            Payer.objects.create(
                name=f"Bench Health {number:02d}",
                slug=f"bench-{number:02d}",
                npi=f"19{number:08d}",
                status=PayerStatus.PARTICIPATING,
            ).pk
            for number in range(1, payer_count + 1)
        ]
    params = {
        "now": now,
        "payers": payers,
        "payer_count": payer_count,
        "members": members,
        "schedules": schedules,
        "consent_resource": CONSENT_RESOURCE,
    }
    with connection.cursor() as cursor:
        cursor.execute("SELECT setseed(%s)", [seed])
    _, seconds["members"] = rows_insert(
        User,
        values={
            "password": "'!'",  # unusable: created for an opt-in, claimed at sign-in
            "username": "'bench-member-' || g.n",
            "first_name": "'Pat'",
            "last_name": "'Member ' || g.n",
            "payer_id": payer_of("g.n"),
            "role": f"'{Role.MEMBER.value}'",
            "plan_member_id": "'BM' || lpad(g.n::text, 8, '0')",
            "date_joined": "%(now)s",
        },
        source="generate_series(1, %(members)s) AS g(n)",
        params=params,
    )
    params["member_base"] = id_base(User, where="username LIKE 'bench-member-%%'", count=members)
    _, seconds["consents"] = rows_insert(
        Consent,
        values={
            "payer_id": _PAYER,
            "member_id": f"%(member_base)s + {_MEMBER} - 1",
            "former_payer_id": _FORMER,
            "policy": "'sensitive'",
            "period_start": "(%(now)s::timestamptz - interval '200 days')::date",
            "period_end": "(%(now)s::timestamptz + interval '165 days')::date",
            "status": "'active'",
            "fhir_resource": "%(consent_resource)s::jsonb",
            "opted_in_at": "%(now)s::timestamptz - interval '200 days'",
        },
        source="generate_series(1, %(schedules)s) AS g(n)",
        params=params,
    )
    params["consent_base"] = id_base(Consent, where="TRUE", count=schedules)
    # One draw per row: r picks the row's fate, s where in its window it falls.
    ended, paused, due = (
        f"g.r < {ENDED}",
        f"g.r < {ENDED + PAUSED}",
        f"g.r < {ENDED + PAUSED + DUE}",
    )
    ahead = (
        f"%(now)s::timestamptz + g.s * CASE WHEN {_REFRESH} THEN interval '92 days' "
        "ELSE interval '60 days' END"
    )
    _, seconds["schedules"] = rows_insert(
        PullSchedule,
        values={
            "payer_id": _PAYER,
            "member_id": f"%(member_base)s + {_MEMBER} - 1",
            "former_payer_id": _FORMER,
            "consent_id": "%(consent_base)s + g.n - 1",
            "kind": f"CASE WHEN {_REFRESH} THEN 'refresh' ELSE 'run_off' END",
            "coverage_end": f"CASE WHEN {_REFRESH} THEN NULL "
            "ELSE (%(now)s::timestamptz - g.s * interval '50 days')::date END",
            "next_run_at": f"CASE WHEN {ended} THEN NULL "
            f"WHEN {paused} THEN %(now)s::timestamptz + (g.s - 0.5) * interval '90 days' "
            f"WHEN {due} THEN %(now)s::timestamptz - g.s * interval '48 hours' "
            f"ELSE {ahead} END",
            "runs": "floor(g.s * 6)::int",
            "watermark": "%(now)s::timestamptz - (1 + g.s) * interval '90 days'",
            "last_delivered_at": "%(now)s::timestamptz - (1 + g.s) * interval '90 days'",
            "paused_at": f"CASE WHEN {paused} AND NOT {ended} "
            "THEN %(now)s::timestamptz - g.s * interval '30 days' END",
            "paused_by": f"CASE WHEN {paused} AND NOT {ended} THEN 'plan-admin:bench' ELSE '' END",
            "ended_at": f"CASE WHEN {ended} THEN %(now)s::timestamptz - g.s * interval '300 days' END",
            "end_reason": f"CASE WHEN NOT {ended} THEN '' WHEN {_REFRESH} THEN 'consent_ended' "
            "ELSE 'run_off_done' END",
            "created_at": "%(now)s::timestamptz - interval '400 days'",
        },
        source="(SELECT n, random() AS r, random() AS s "
        "FROM generate_series(1, %(schedules)s) AS n) AS g(n, r, s)",
        params=params,
    )
    return Filled(now=now, schedules=schedules, members=members, seconds=seconds)


def floor_fill() -> float:
    """Create the bare floor's table from the schedules: each id with its next run if live."""
    from django.db import connection

    from exchange.models import PullSchedule

    table = PullSchedule._meta.db_table
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")
        cursor.execute(
            f"CREATE TABLE {FLOOR_TABLE} (id bigint PRIMARY KEY, next_run_at timestamptz)"
        )
        cursor.execute(
            f"INSERT INTO {FLOOR_TABLE} (id, next_run_at) "  # noqa: S608
            f"SELECT id, CASE WHEN ended_at IS NULL AND paused_at IS NULL THEN next_run_at END "
            f"FROM {table}"
        )
        cursor.execute(f"CREATE INDEX {FLOOR_TABLE}_next ON {FLOOR_TABLE} (next_run_at)")
    return time.perf_counter() - started


def vacuum_analyze(*tables: str) -> float:
    """VACUUM (ANALYZE) ``tables``: statistics for the planner, the visibility map set."""
    started = time.perf_counter()
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as connection:
        for table in tables:
            connection.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
    return time.perf_counter() - started


# --- the timings ---


@dataclass
class Timing:
    label: str
    rows: int
    cold_ms: float
    warm_ms: list[float]
    # The server's own time (EXPLAIN ANALYZE: planning + execution), for SQL run directly.
    server_ms: list[float] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.warm_ms)

    @property
    def server(self) -> str:
        return f"{statistics.median(self.server_ms):.2f} ms" if self.server_ms else "-"


@contextmanager
def fresh_connection() -> Iterator[psycopg.Connection[Any]]:
    """A new connection (a new backend: nothing cached, nothing planned)."""
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as connection:
        yield connection


def sql_timing(label: str, statement: str, params: Any, *, runs: int) -> tuple[Timing, list[Any]]:
    """Time ``statement`` (rows fetched) first on a new connection, then ``runs`` times on
    it, then the server's own time ``runs`` times; return the timing and the rows.

    A locking statement runs in a transaction rolled back each time, as the claim would be
    committed or undone.
    """

    def once(connection: psycopg.Connection[Any], query: str) -> list[Any]:
        if "FOR UPDATE" not in query:
            return connection.execute(query, params).fetchall()
        with connection.transaction(force_rollback=True):
            return connection.execute(query, params).fetchall()

    with fresh_connection() as connection:
        connection.execute("SELECT 1")  # the connection's own start-up is not the query's
        started = time.perf_counter()
        rows = once(connection, statement)
        cold = (time.perf_counter() - started) * 1000
        warm, server = [], []
        for _ in range(runs):
            started = time.perf_counter()
            once(connection, statement)
            warm.append((time.perf_counter() - started) * 1000)
        for _ in range(runs):
            # TIMING OFF: the plan's total without timing every node of it.
            (document,) = once(
                connection, f"EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {statement}"
            )
            server.append(document[0][0]["Planning Time"] + document[0][0]["Execution Time"])
    return Timing(label, len(rows), cold, warm, server), rows


def orm_timing(label: str, evaluate: Callable[[], int], *, runs: int) -> Timing:
    """Time ``evaluate`` (an ORM query run to the end) first on a new Django connection,
    then ``runs`` times."""
    from django.db import connection

    connection.close()
    connection.ensure_connection()
    started = time.perf_counter()
    rows = evaluate()
    cold = (time.perf_counter() - started) * 1000
    warm = []
    for _ in range(runs):
        started = time.perf_counter()
        evaluate()
        warm.append((time.perf_counter() - started) * 1000)
    return Timing(label, rows, cold, warm)


def plan(statement: str, params: Any) -> str:
    """Return ``EXPLAIN (ANALYZE, BUFFERS)`` of ``statement`` on a new connection."""
    with fresh_connection() as connection:
        rows = connection.execute(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", params).fetchall()
    return "\n".join(row[0] for row in rows)


def sql_of(queryset: Any) -> tuple[str, tuple[Any, ...]]:
    """Return the SQL Django runs for ``queryset`` and its parameters (psycopg placeholders)."""
    from django.db import connection

    statement, params = queryset.query.get_compiler(connection=connection).as_sql()
    return statement, tuple(params)


def sql_of_claim(build: Callable[[], Any]) -> tuple[str, tuple[Any, ...]]:
    """Return the SQL of a ``select_for_update`` query (Django compiles it only inside a
    transaction)."""
    from django.db import transaction

    with transaction.atomic():
        return sql_of(build())


def relation_sizes() -> dict[str, str]:
    from django.db import connection

    from exchange.models import PullSchedule

    table = PullSchedule._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_size_pretty(pg_relation_size(c.oid)) FROM pg_class c "
            "WHERE c.relname = %s OR c.relname = %s OR c.oid IN "
            "(SELECT indexrelid FROM pg_index WHERE indrelid IN (%s::regclass, %s::regclass)) "
            "ORDER BY c.relname",
            [table, FLOOR_TABLE, table, FLOOR_TABLE],
        )
        return dict(cursor.fetchall())


def run(args: argparse.Namespace, workdir: Path) -> int:
    hub_environment_prepare(database=args.database, workdir=workdir)
    from django.db import connection, transaction

    from exchange.models import PullSchedule
    from exchange.schedules import RUN_BATCH, pull_schedules_due

    filled = schedules_fill(schedules=args.schedules, payer_count=args.payers, seed=args.seed)
    filled.seconds["floor table"] = floor_fill()
    table = PullSchedule._meta.db_table
    filled.seconds["VACUUM (ANALYZE)"] = vacuum_analyze(
        table, "exchange_consent", "hub_user", FLOOR_TABLE
    )
    now = filled.now
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*), count(*) FILTER (WHERE ended_at IS NOT NULL), "  # noqa: S608
            f"count(*) FILTER (WHERE paused_at IS NOT NULL), "
            f"count(*) FILTER (WHERE ended_at IS NULL AND paused_at IS NULL "
            f"AND next_run_at <= %s), count(DISTINCT payer_id) FROM {table}",
            [now],
        )
        total, ended, paused, due, payers = cursor.fetchone()
    print(
        f"{total:,} schedules of {filled.members:,} members at {payers} payers: {ended:,} "
        f"ended, {paused:,} paused, {due:,} due now, {total - ended - paused - due:,} ahead; "
        + ", ".join(f"{what} {s:.1f} s" for what, s in filled.seconds.items()),
        flush=True,
    )
    print("sizes: " + ", ".join(f"{name} {size}" for name, size in relation_sizes().items()))

    def claiming_form() -> Any:
        """Return the query pull_schedules_run claims its batch with."""
        return (
            pull_schedules_due(now=now, limit=RUN_BATCH)
            .select_for_update(skip_locked=True, of=("self",))
            .select_related("payer", "former_payer", "consent")
        )

    # A QuerySet keeps its rows once read: each run builds its own.
    selector = pull_schedules_due(now=now, limit=RUN_BATCH)
    backlog = pull_schedules_due(now=now, limit=args.schedules)
    floor = (
        f"SELECT id, next_run_at FROM {FLOOR_TABLE} "  # noqa: S608
        "WHERE next_run_at <= %s ORDER BY next_run_at LIMIT %s"
    )

    def claim() -> int:
        with transaction.atomic():
            rows = len(list(claiming_form()))
            transaction.set_rollback(True)
        return rows

    timings = []
    # The first run of each: cold. The hub's first, then the floor's (another table).
    selector_sql, selector_params = sql_of(selector)
    hub_sql, hub_rows = sql_timing(
        f"selector's SQL, LIMIT {RUN_BATCH}", selector_sql, selector_params, runs=args.runs
    )
    floor_sql, floor_rows = sql_timing(
        f"bare floor, LIMIT {RUN_BATCH}", floor, (now, RUN_BATCH), runs=args.runs
    )
    timings += [
        orm_timing(
            f"`pull_schedules_due(limit={RUN_BATCH})`, Django ORM",
            lambda: len(list(pull_schedules_due(now=now, limit=RUN_BATCH))),
            runs=args.runs,
        ),
        hub_sql,
        orm_timing(
            f"claiming form (FOR UPDATE SKIP LOCKED, 3 joins), ORM, LIMIT {RUN_BATCH}",
            claim,
            runs=args.runs,
        ),
    ]
    backlog_sql, backlog_params = sql_of(backlog)
    backlog_timing, backlog_rows = sql_timing(
        "selector's SQL, every due row", backlog_sql, backlog_params, runs=args.runs
    )
    floor_backlog, floor_backlog_rows = sql_timing(
        "bare floor, every due row", floor, (now, args.schedules), runs=args.runs
    )
    claiming_sql, claiming_params = sql_of_claim(claiming_form)
    claiming_timing, _ = sql_timing(
        f"claiming form's SQL, LIMIT {RUN_BATCH}", claiming_sql, claiming_params, runs=args.runs
    )
    timings += [claiming_timing, floor_sql, backlog_timing, floor_backlog]

    problems = []
    hub_ids = [row[0] for row in hub_rows]
    if hub_ids != [row[0] for row in floor_rows]:
        problems.append("the floor's first rows are not the selector's")
    if {row[0] for row in backlog_rows} != {row[0] for row in floor_backlog_rows}:
        problems.append("the floor's due rows are not the selector's")
    if len(backlog_rows) != due:
        problems.append(f"{len(backlog_rows):,} due rows found, {due:,} counted")

    plans = [
        (f"selector, LIMIT {RUN_BATCH}", selector_sql, selector_params),
        (f"claiming form, LIMIT {RUN_BATCH}", claiming_sql, claiming_params),
        ("selector, every due row", backlog_sql, backlog_params),
        (f"bare floor, LIMIT {RUN_BATCH}", floor, (now, RUN_BATCH)),
    ]
    for label, statement, params in plans:
        if "FOR UPDATE" in statement:
            # EXPLAIN ANALYZE of a locking query takes the locks: in a transaction, undone.
            with fresh_connection() as connection_, connection_.transaction(force_rollback=True):
                text = "\n".join(
                    row[0]
                    for row in connection_.execute(
                        f"EXPLAIN (ANALYZE, BUFFERS) {statement}", params
                    ).fetchall()
                )
        else:
            text = plan(statement, params)
        print(f"\n### EXPLAIN (ANALYZE, BUFFERS): {label}\n\n{statement}\n  -- {params}\n\n{text}")
        if label.startswith("selector") and "schedule_due" not in text:
            problems.append(f"{label}: the plan does not use the index schedule_due")

    print("\n## Figures\n")
    print(
        f"{total:,} schedules ({payers} payers; {ended:,} ended, {paused:,} paused, "
        f"{due:,} due), VACUUM (ANALYZE)d; median of {args.runs} warm runs; load average "
        f"{'/'.join(f'{v:.1f}' for v in os.getloadavg())}\n"
    )
    print(
        "| query | rows | cold (new connection) | warm, median | warm, min-max "
        "| server's own, median |"
    )
    print("|---|---|---|---|---|---|")
    for timing in timings:
        print(
            f"| {timing.label} | {timing.rows:,} | {timing.cold_ms:.2f} ms | "
            f"**{timing.median_ms:.2f} ms** | {min(timing.warm_ms):.2f}-"
            f"{max(timing.warm_ms):.2f} ms | {timing.server} |"
        )
    print(
        f"\nselector's SQL / bare floor, LIMIT {RUN_BATCH}: "
        f"{hub_sql.median_ms / floor_sql.median_ms:.2f}x; every due row: "
        f"{backlog_timing.median_ms / floor_backlog.median_ms:.2f}x"
    )
    if problems:
        print("\nPROBLEMS:\n" + "\n".join(f"  - {problem}" for problem in problems))
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--schedules", type=int, default=1_000_000)
    parser.add_argument("--payers", type=int, default=20)
    parser.add_argument("--runs", type=int, default=21, help="warm runs of each query")
    parser.add_argument("--seed", type=float, default=0.42, help="setseed() of the draw")
    parser.add_argument("--database", default="payer_hub_bench_optin")
    args = parser.parse_args()
    if args.payers < 10:
        parser.error("--payers must be 10 or more (a member's former payers are 1 to 8 on)")
    return benchmark_in_workdir(run, args, prefix="pull-schedules-bench-")


if __name__ == "__main__":
    raise SystemExit(main())
