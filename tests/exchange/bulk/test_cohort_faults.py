"""Cohorts under faults (issue 12 "What it must show"): every member ends in exactly one
outcome, every delivered member holds exactly South's record, nothing partial lands.

Real parts only: Celery worker processes (one kept for the module's cases; killed with
SIGKILL where a case says so, then resumed by the reapers), the hub served over HTTP,
sandbox payers started with ``--faults`` (sandbox/faults.py), the holder proxy
(tests/exchange/holder_proxy.py) where a holder must misbehave in a way the sandbox does
not, and a real OpenSSH sshd receiving the deliveries.
"""

import shutil
import signal
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial
from typing import Any

import orjson
import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from exchange.bulk.tasks import bulk_jobs_resume_stuck
from exchange.models import (
    BulkJob,
    BulkJobKind,
    BulkJobState,
    CohortStatus,
    ExchangeRequest,
    ExchangeStatus,
)
from exchange.tasks import exchange_requests_resume_stuck
from tests.conftest import Tenant
from tests.exchange.bulk.cohorts import CohortScene, ordinary_members, wait_for_job
from tests.exchange.holder_proxy import holder_proxy
from tests.exchange.holders import hub_url
from tests.sandbox.harness import FORMER, RunningSandbox, running_sandbox
from tests.support.celery_worker import ModuleWorker, running_worker, wait_for
from tests.support.exchange_setup import SOUTH_SANDBOX_ARGS
from tests.support.sshd import SftpServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]
S = ExchangeStatus
J = BulkJobState
MEMBERS = 8
CHUNK = 4


def south_sandbox(*faults: str) -> Any:
    """Start South; with the same arguments every start holds the same members and data."""
    fault_args = ["--faults", ",".join(faults)] if faults else []
    return running_sandbox(FORMER, *SOUTH_SANDBOX_ARGS, "--members", "12", *fault_args)


@pytest.fixture(scope="module")
def clean_south() -> Iterator[RunningSandbox]:
    """South without faults: the oracle of what South holds (the faulty ones hold the same)."""
    with south_sandbox() as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def module_worker(live_server: Any) -> Iterator[ModuleWorker]:
    """The worker of the cases that need not kill theirs (the hub's URL is the session's)."""
    workers = ModuleWorker(HUB_PUBLIC_URL=hub_url(live_server))
    yield workers
    workers.stop()


@pytest.fixture
def scene(
    north: Tenant, south: Tenant, sftp_server: SftpServer, live_server: Any, settings: Any
) -> Iterator[CohortScene]:
    settings.HUB_PUBLIC_URL = hub_url(live_server)
    # The reapers run in the test process and look for work idle this long.
    settings.BULK_JOB_STUCK_AFTER_SECONDS = 1
    settings.EXCHANGE_STUCK_AFTER_SECONDS = 1
    case = CohortScene(north, south, sftp_server)
    yield case
    shutil.rmtree(case.deliveries, ignore_errors=True)


def worker(scene: CohortScene) -> Any:
    return running_worker(HUB_PUBLIC_URL=str(django_settings.HUB_PUBLIC_URL))


def run_cohort(
    scene: CohortScene,
    holder: RunningSandbox,
    workers: ModuleWorker,
    *,
    fhir: str | None = None,
    members: int = MEMBERS,
) -> tuple[Any, list[dict[str, Any]]]:
    """Upload a roster of ``members`` of South's, run it to its end, return it and its rows."""
    scene.configure(fhir or holder.fhir, chunk_size=CHUNK)
    rows = [dict(m) for m in ordinary_members(holder, members)]
    workers.ready()
    cohort = scene.upload(rows)
    cohort = scene.wait_until(cohort, CohortStatus.COMPLETED)
    return cohort, rows


def kick_offs(scene: CohortScene, cohort: Any) -> list[int]:
    return [j.kick_offs for kind in BulkJobKind.values for j in scene.jobs(cohort, kind)]


def kill(process: Any) -> None:
    """SIGKILL the worker (solo pool: one process): no clean-up, no ack."""
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


# --- transient faults: waited out, nothing kicked off twice ---


def test_429_503_and_dropped_connections_are_waited_out(
    scene: CohortScene, clean_south: RunningSandbox, module_worker: ModuleWorker
) -> None:
    with south_sandbox("429=0.2", "503=0.15", "drop=0.15", "retry-after=1s") as faulty:
        cohort, rows = run_cohort(scene, faulty, module_worker)
        members = scene.assert_every_member_ended_once(cohort)

        assert [m.exchange_request.status for m in members] == [S.DELIVERED] * MEMBERS
        scene.assert_delivered_as_south_holds_them(clean_south, cohort, rows)
    assert set(kick_offs(scene, cohort)) == {1}


def test_an_access_token_that_ends_early_is_renewed(
    scene: CohortScene, clean_south: RunningSandbox, module_worker: ModuleWorker
) -> None:
    with south_sandbox("token-ttl=3s", "latency=400ms") as short_lived:
        cohort, rows = run_cohort(scene, short_lived, module_worker)
        members = scene.assert_every_member_ended_once(cohort)

        assert [m.exchange_request.status for m in members] == [S.DELIVERED] * MEMBERS
        scene.assert_delivered_as_south_holds_them(clean_south, cohort, rows)


def test_a_file_gone_before_it_is_read_has_the_export_kicked_off_again(
    scene: CohortScene,
    clean_south: RunningSandbox,
    module_worker: ModuleWorker,
) -> None:
    gone: list[str] = []

    def first_export_file_gone(method: str, path: str, body: bytes) -> tuple[int, bytes] | None:
        # The first data file of the first export answers 410, as an expired file does.
        data_file = "/bulkfiles/" in path and not path.endswith("Group.ndjson")
        if method == "GET" and data_file and not gone:
            gone.append(path)
            return 410, b""
        return None

    with south_sandbox() as holder, holder_proxy(holder) as proxy:
        proxy.refusals.append(first_export_file_gone)
        cohort, rows = run_cohort(scene, holder, module_worker, fhir=proxy.fhir)
        members = scene.assert_every_member_ended_once(cohort)

        assert [m.exchange_request.status for m in members] == [S.DELIVERED] * MEMBERS
        scene.assert_delivered_as_south_holds_them(clean_south, cohort, rows)
    assert gone
    exports = scene.jobs(cohort, BulkJobKind.DATA_EXPORT)
    assert sorted(j.kick_offs for j in exports) == [1, 2]
    # The job the hub gave up on was DELETEd at the holder, and so was every finished one.
    deletes = [path for method, path, _ in proxy.received if method == "DELETE"]
    assert len(deletes) == len(scene.jobs(cohort, BulkJobKind.MEMBER_MATCH)) + 3


# --- bad answers: the members they touch fail with a sentence, the others carry on ---


def a_group_without_its_last_member(dropped: list[str]) -> Callable[[str, bytes], bytes]:
    """Drop the last member of the first matched Group served."""

    def rewrite(path: str, body: bytes) -> bytes:
        if not path.endswith("Group.ndjson") or dropped:
            return body
        lines = []
        for line in body.splitlines():
            group = orjson.loads(line)
            if [c["code"] for c in group["code"]["coding"]] == ["match"] and not dropped:
                dropped.append(group["member"][-1]["entity"]["reference"])
                group["member"] = group["member"][:-1]
                group["quantity"] = len(group["member"])
            lines.append(orjson.dumps(group))
        return b"\n".join(lines) + b"\n"

    return rewrite


def an_observation_in_the_condition_file(victim: list[str]) -> Callable[[str, bytes], bytes]:
    """Make the first line of the first Condition file served an Observation (its member's)."""

    def rewrite(path: str, body: bytes) -> bytes:
        if not path.endswith("Condition.ndjson") or victim:
            return body
        first, rest = body.split(b"\n", 1)
        stray = orjson.loads(first)
        victim.append(stray["subject"]["reference"])
        stray = {**stray, "resourceType": "Observation", "status": "final", "code": {"text": "x"}}
        return orjson.dumps(stray) + b"\n" + rest

    return rewrite


def test_a_group_that_omits_a_member_and_a_line_of_the_wrong_type_fail_only_those_members(
    scene: CohortScene,
    clean_south: RunningSandbox,
    module_worker: ModuleWorker,
) -> None:
    victim: list[str] = []
    dropped: list[str] = []
    with south_sandbox() as holder, holder_proxy(holder) as proxy:
        proxy.rewrites += [
            a_group_without_its_last_member(dropped),
            an_observation_in_the_condition_file(victim),
        ]
        cohort, rows = run_cohort(scene, holder, module_worker, fhir=proxy.fhir)
        members = scene.assert_every_member_ended_once(cohort)
        failed = {
            m.line: m.exchange_request.reason_message
            for m in members
            if m.exchange_request.status == S.FAILED
        }

        assert len(failed) == 2, scene.report(cohort)
        reasons = sorted(failed.values())
        assert "left this member out of every Group" in reasons[0] + reasons[1]
        assert (
            "holds a resource of type Observation in the file of Condition"
            in reasons[0] + reasons[1]
        )
        assert [m.exchange_request.status for m in members].count(S.DELIVERED) == MEMBERS - 2
        scene.assert_delivered_as_south_holds_them(clean_south, cohort, rows)
    assert victim and dropped


def test_a_malformed_manifest_fails_its_chunk_and_the_other_chunk_is_delivered(
    scene: CohortScene,
    clean_south: RunningSandbox,
    module_worker: ModuleWorker,
) -> None:
    broken: list[str] = []

    def first_export_manifest_without_transaction_time(path: str, body: bytes) -> bytes:
        if "/bulkstatus/" not in path or b'"output"' not in body or b'"Group"' in body:
            return body
        if broken:
            return body
        broken.append(path)
        manifest = orjson.loads(body)
        del manifest["transactionTime"]
        return orjson.dumps(manifest)

    with south_sandbox() as holder, holder_proxy(holder) as proxy:
        proxy.rewrites.append(first_export_manifest_without_transaction_time)
        cohort, rows = run_cohort(scene, holder, module_worker, fhir=proxy.fhir)
        members = scene.assert_every_member_ended_once(cohort)
        statuses = [m.exchange_request.status for m in members]

        assert sorted(statuses) == sorted([S.DELIVERED] * CHUNK + [S.FAILED] * CHUNK)
        failed = [m.exchange_request for m in members if m.exchange_request.status == S.FAILED]
        assert {r.reason_code for r in failed} == {"malformed_manifest"}
        assert all("transactionTime" in r.reason_message for r in failed)
        scene.assert_delivered_as_south_holds_them(clean_south, cohort, rows)
    jobs = scene.jobs(cohort, BulkJobKind.DATA_EXPORT)
    assert sorted(j.state for j in jobs) == [J.DONE, J.FAILED]


def test_malformed_ndjson_fails_what_it_touches_with_a_sentence_naming_file_and_line(
    scene: CohortScene, clean_south: RunningSandbox, module_worker: ModuleWorker
) -> None:
    # One chunk: the sandbox's dice meet the files in a known order.
    with south_sandbox("bad-ndjson=0.05") as faulty:
        scene.configure(faulty.fhir, chunk_size=MEMBERS)
        rows = [dict(m) for m in ordinary_members(faulty, MEMBERS)]
        module_worker.ready()
        cohort = scene.upload(rows)
        cohort = scene.wait_until(cohort, CohortStatus.COMPLETED)
        members = scene.assert_every_member_ended_once(cohort)
        failed = [m.exchange_request for m in members if m.exchange_request.status == S.FAILED]

        # The sandbox cuts a file's first line in half: the member it names fails, or, when
        # the half names none, the whole chunk, each with a sentence naming file and line.
        assert failed, "no line was broken: the case tested nothing"
        assert all("line 1 is not valid JSON" in r.reason_message for r in failed), scene.report(
            cohort
        )
        scene.assert_delivered_as_south_holds_them(clean_south, cohort, rows)


# --- a worker killed mid-way: resumed, no second kick-off, nothing partial or twice ---


def resume_after_kill(scene: CohortScene) -> None:
    """Let the reapers find the killed worker's work idle, and hand it out again."""
    time.sleep(2.5)
    bulk_jobs_resume_stuck()
    exchange_requests_resume_stuck()


def downloading_since(scene: CohortScene, cohort: Any, moment: datetime) -> bool:
    """Return whether an export job went on to download its files after ``moment``."""
    return (
        BulkJob.objects.for_payer(scene.north.payer)
        .filter(
            cohort=cohort,
            kind=BulkJobKind.DATA_EXPORT,
            state=J.DOWNLOADING,
            last_progress_at__gte=moment,
        )
        .exists()
    )


def packaging_since(scene: CohortScene, cohort: Any, moment: datetime) -> bool:
    """Return whether a member went on to be screened, packaged or delivered after ``moment``."""
    return (
        ExchangeRequest.objects.for_payer(scene.north.payer)
        .filter(
            cohort_member__cohort=cohort,
            status__in=(S.SCREENING, S.PACKAGING, S.DELIVERING),
            status_changed_at__gte=moment,
        )
        .exists()
    )


def test_a_worker_killed_polling_downloading_and_packaging_is_resumed_without_a_second_kick_off(
    scene: CohortScene, clean_south: RunningSandbox, module_worker: ModuleWorker
) -> None:
    # One cohort, its worker killed at each moment in turn, each time restarted and its work
    # handed out by the reapers. A moment counts only once the restarted worker reached it
    # (never a state the killed one left behind). Slow answers keep the worker in each phase
    # long enough to be caught there.
    module_worker.stop()
    with south_sandbox("latency=300ms") as slow:
        scene.configure(slow.fhir, chunk_size=CHUNK)
        rows = [dict(m) for m in ordinary_members(slow, MEMBERS)]
        cohort = scene.upload(rows)
        with worker(scene) as first:
            wait_for_job(scene, cohort, BulkJobKind.DATA_EXPORT, J.RUNNING)  # polling
            kill(first)
        for reached in (downloading_since, packaging_since):
            restarted = timezone.now()
            with worker(scene) as again:
                resume_after_kill(scene)
                try:
                    wait_for(partial(reached, scene, cohort, restarted), timeout=120)
                except TimeoutError:
                    raise AssertionError(f"{reached.__name__}: {scene.report(cohort)}") from None
                kill(again)
        with worker(scene):
            resume_after_kill(scene)
            cohort = scene.wait_until(cohort, CohortStatus.COMPLETED)
        members = scene.assert_every_member_ended_once(cohort)

        assert [m.exchange_request.status for m in members] == [S.DELIVERED] * MEMBERS, (
            scene.report(cohort)
        )
        scene.assert_delivered_as_south_holds_them(clean_south, cohort, rows)
    assert set(kick_offs(scene, cohort)) == {1}
    for member in members:
        attempts = member.exchange_request.delivery.attempts
        assert attempts.filter(succeeded=True).count() == 1
