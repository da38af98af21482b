"""A member exchange under faults, end to end (issue 5, "What it must show": fault and kill tests).

Real parts only: Celery worker processes, the hub served over HTTP (the former payer fetches
the hub's JWKS from it), sandbox payers started with ``--faults`` (sandbox/faults.py), the
test-only holder proxy where the sandbox has no such fault, and a real OpenSSH sshd receiving
the delivery; one worker serves the module's cases that need not kill or stop theirs.
Patricia, a member of North, asks for her records from South payer-to-payer ($member-match).
Every case ends ``delivered`` with the content checked against South's own record of her
(``delivery_check``), or ``failed`` with a reason a person understands; there is never a
partial file under its final name and never a second delivery. Workers are killed with
SIGKILL and the reaper (``exchange_requests_resume_stuck``) resumes their work.

The sandbox's fault dice are seeded (``FaultDice``, seed ``SEED``): a worker asks one thing
at a time, so the faults it meets are known in advance, and each test first states them.
"""

import json
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings as django_settings

from exchange.models import ConsentPolicy, Delivery, ExchangeRequest, ExchangeStatus
from exchange.screening.reasons import QUARANTINE_CODE
from exchange.services import exchange_request_create
from exchange.state_machine import ENDED
from exchange.tasks import exchange_requests_resume_stuck
from hub.audit import ENGINE
from hub.models import AuditEvent, SftpDestination
from hub.ssh_keys import parse_public_key_line
from sandbox.faults import FaultDice, parse_faults
from tests.conftest import Tenant
from tests.exchange.holder_proxy import HolderProxy, Rewrite, holder_proxy, on_path
from tests.exchange.holders import hub_url
from tests.sandbox.harness import FORMER, SEED, RunningSandbox, running_sandbox
from tests.support.celery_worker import ModuleWorker, running_worker, wait_for
from tests.support.exchange_setup import (
    NORTH_NPI,
    SHOWCASE_CARD,
    SHOWCASE_MEMBER,
    SOUTH_SANDBOX_ARGS,
    Key,
    delivery_check,
    exchange_payers_configure,
    member_demographics_set,
    sandbox_everything,
    sandbox_member,
)
from tests.support.slow_link import slow_link
from tests.support.sshd import SftpServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]

S = ExchangeStatus
# Patricia's record is 548 resources: two $everything pages of the hub's 500.
EVERYTHING_PAGES = 2
# The FHIR data requests of one exchange: $member-match, then the $everything pages.
DATA_REQUESTS = 1 + EVERYTHING_PAGES
# FhirClient's max_attempts: how often one call is tried before the task retries instead.
FHIR_CLIENT_ATTEMPTS = 4


def south_sandbox(*faults: str) -> Any:
    """Start South's FHIR server; with the same arguments, every start holds the same data."""
    fault_args = ["--faults", ",".join(faults)] if faults else []
    return running_sandbox(FORMER, *SOUTH_SANDBOX_ARGS, "--members", "5", *fault_args)


def faults_met(spec: str) -> list[list[str]]:
    """Return, for each FHIR data request of an exchange in turn, the faults a client asking
    one thing at a time meets before that request's answer gets through, at a sandbox
    started with ``--faults spec``."""
    dice = FaultDice(parse_faults(spec), SEED)
    met: list[list[str]] = []
    for _ in range(DATA_REQUESTS):
        faults: list[str] = []
        while (decision := dice.roll()).status is not None or decision.drop:
            faults.append(str(decision.status) if decision.status is not None else "drop")
        met.append(faults)
    return met


def answers_containing(text: bytes, seen: list[str]) -> Rewrite:
    """Return a holder-proxy rewrite that notes the path of every answer containing ``text``."""

    def note(path: str, body: bytes) -> bytes:
        if text in body:
            seen.append(path)
        return body

    return note


def current(exchange_request: ExchangeRequest) -> ExchangeRequest:
    exchange_request.refresh_from_db()
    return exchange_request


def counts_per_type(resources: list[dict[str, Any]]) -> dict[str, int]:
    """Return how many resources of each type there are (what retrieval counts, each once)."""
    return dict(Counter(resource["resourceType"] for resource in resources))


@dataclass
class Scene:
    """One case: North and its member Patricia, South, the sshd, the hub, South's record."""

    north: Tenant
    south: Tenant
    sftp_server: SftpServer
    hub: str
    oracle: list[dict[str, Any]]
    workers: ModuleWorker

    @property
    def deliveries(self) -> Path:
        """North's folder of deliveries from South on the sshd."""
        return self.sftp_server.incoming / "south"

    def patricia_asks(
        self, holder: RunningSandbox, *, through: HolderProxy | None = None
    ) -> ExchangeRequest:
        """Set up both payers, South reached payer-to-payer at ``holder`` (or ``through`` a
        proxy in front of it); then Patricia, signed in at North, asks South for all her
        records (#sensitive: under #regular South itself withholds a third, and the rest
        fits one page). The request waits in the broker until a worker runs."""
        exchange_payers_configure(
            new=self.north,
            former=self.south,
            former_fhir_base=(through or holder).fhir,
            sftp_server=self.sftp_server,
            payer_to_payer=True,
        )
        patricia = sandbox_member(holder, SHOWCASE_MEMBER)
        member_demographics_set(user=self.north.member, member=patricia)
        return exchange_request_create(
            member=self.north.member,
            former_payer=self.south.payer,
            card_member_id=SHOWCASE_CARD,
            coverage_start=date(2019, 1, 1),
            coverage_end=None,
            policy=ConsentPolicy.SENSITIVE,
        )

    def own_worker(self) -> Any:
        """Start a Celery worker process of the case's own, to kill or to stop with work still
        scheduled (stopped at the end of the ``with`` block); the module's is stopped first,
        or the two would share the work."""
        self.workers.stop()
        return running_worker(HUB_PUBLIC_URL=self.hub)

    def run_to_the_end(self, exchange_request: ExchangeRequest) -> None:
        """Let the module's worker run until the request ends."""
        self.workers.ready()
        until_ended(exchange_request)

    def assert_delivered_once(
        self, exchange_request: ExchangeRequest, *, withheld: tuple[Key, ...] = ()
    ) -> dict[str, Any]:
        """Assert the whole record was retrieved, each resource once, and one complete,
        correct set of files arrived by one successful attempt; return its manifest."""
        assert exchange_request.status == S.DELIVERED, exchange_request.reason_message
        assert exchange_request.resource_counts == counts_per_type(self.oracle)
        assert [p.name for p in self.deliveries.iterdir()] == [str(exchange_request.pk)]
        manifest = delivery_check(
            self.deliveries / str(exchange_request.pk),
            self.oracle,
            policy="sensitive",
            withheld=withheld,
        )
        assert exchange_request.delivery.attempts.filter(succeeded=True).count() == 1
        self.assert_disclosures_audited(exchange_request, manifest)
        return manifest

    def assert_disclosures_audited(
        self, exchange_request: ExchangeRequest, manifest: dict[str, Any]
    ) -> None:
        """South's disclosure to the hub is in both payers' audit logs with the counts per
        type, and the delivery in North's with each file's path, size and sha256: once each,
        however often the work was retried or resumed (HIPAA §164.312(b))."""
        counts = counts_per_type(self.oracle)
        received = AuditEvent.objects.for_payer(self.north.payer).get(
            action="exchange_request.records_received", object_id=str(exchange_request.pk)
        )
        disclosed = AuditEvent.objects.for_payer(self.south.payer).get(
            action="exchange_request.records_disclosed", object_id=str(exchange_request.pk)
        )
        for event in (received, disclosed):
            assert event.actor_label == ENGINE
            assert event.changes["disclosed_by"] == "south"
            assert event.changes["disclosed_to"] == "north"
            assert event.changes["resources"] == counts
        delivered = AuditEvent.objects.for_payer(self.north.payer).get(
            action="exchange_request.deliver", object_id=str(exchange_request.pk)
        )
        assert delivered.changes["status"] == {"before": S.DELIVERING, "after": S.DELIVERED}
        files = {Path(f["path"]).name: (f["size"], f["sha256"]) for f in delivered.changes["files"]}
        assert files == {
            entry["name"]: (entry["size"], entry["sha256"]) for entry in manifest["files"]
        } | {"manifest.json": files["manifest.json"]}

    def assert_failed_with_nothing_delivered(self, exchange_request: ExchangeRequest) -> None:
        assert exchange_request.status == S.FAILED
        assert not self.deliveries.exists() or not any(self.deliveries.iterdir())


def until_ended(exchange_request: ExchangeRequest, *, timeout: float = 90) -> None:
    try:
        wait_for(lambda: current(exchange_request).status in ENDED | {S.FAILED}, timeout=timeout)
    except TimeoutError:
        timeline = [event.message for event in exchange_request.events.all()]
        raise AssertionError(f"stuck in {exchange_request.status}: {timeline}") from None


def kill(worker: Any) -> None:
    """SIGKILL the whole worker (solo pool: one process): no clean-up, no ack."""
    worker.kill()
    worker.wait(timeout=10)


def resume_stuck_work() -> int:
    """Run the reaper once the work is older than EXCHANGE_STUCK_AFTER_SECONDS."""
    time.sleep(django_settings.EXCHANGE_STUCK_AFTER_SECONDS + 0.2)
    return exchange_requests_resume_stuck()


def bytes_landed(path: Path) -> int:
    """Return the size of ``path`` on the sshd, 0 while it is not there."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@pytest.fixture(scope="module")
def clean_south() -> Iterator[RunningSandbox]:
    with south_sandbox() as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def oracle(clean_south: RunningSandbox) -> list[dict[str, Any]]:
    """South's own record of Patricia, read by the test from a sandbox without faults."""
    patricia = sandbox_member(clean_south, SHOWCASE_MEMBER)
    return sandbox_everything(clean_south, member=patricia, recipient_npi=NORTH_NPI)


@pytest.fixture(scope="module")
def module_worker(live_server: Any) -> Iterator[ModuleWorker]:
    """The worker of the cases that need not kill theirs (the hub's URL is the session's)."""
    workers = ModuleWorker(HUB_PUBLIC_URL=hub_url(live_server))
    yield workers
    workers.stop()


@pytest.fixture
def scene(
    north: Tenant,
    south: Tenant,
    sftp_server: SftpServer,
    live_server: Any,
    settings: Any,
    oracle: list[dict[str, Any]],
    module_worker: ModuleWorker,
) -> Iterator[Scene]:
    # The former payer fetches North's JWKS from the live hub.
    settings.HUB_PUBLIC_URL = hub_url(live_server)
    case = Scene(north, south, sftp_server, settings.HUB_PUBLIC_URL, oracle, module_worker)
    yield case
    shutil.rmtree(case.deliveries, ignore_errors=True)


# --- Transient faults: waited out, and the record arrives whole ---


def test_bursts_of_429_and_503_are_waited_out_and_the_record_arrives_whole(scene: Scene) -> None:
    spec = "429=0.35,503=0.35,retry-after=1s"
    met = faults_met(spec)
    assert {"429", "503"} <= {fault for faults in met for fault in faults}
    # The second page meets a burst longer than one call's own attempts, so the Celery task
    # itself retries, after the Retry-After, and retrieval resumes from its cursor.
    assert len(met[2]) > FHIR_CLIENT_ATTEMPTS
    with south_sandbox(spec) as faulty:
        exchange_request = scene.patricia_asks(faulty)
        scene.run_to_the_end(exchange_request)

    scene.assert_delivered_once(exchange_request)


def test_a_connection_dropped_mid_download_is_fetched_again(scene: Scene) -> None:
    spec = "drop=0.3"
    # The second page of $everything is cut off halfway through its body, twice.
    assert faults_met(spec) == [[], [], ["drop", "drop"]]
    with south_sandbox(spec) as faulty:
        exchange_request = scene.patricia_asks(faulty)
        scene.run_to_the_end(exchange_request)

    scene.assert_delivered_once(exchange_request)


def test_an_access_token_that_ends_early_is_renewed_and_the_record_arrives_whole(
    scene: Scene,
) -> None:
    # Tokens live 4 s; each request waits 2 s at the holder before its token is checked.
    # The hub reuses a token for its next request when less than 4/5 of its life is gone,
    # so that request arrives with a token that has lapsed meanwhile: 401, renew, repeat.
    with (
        south_sandbox("token-ttl=4s", "latency=2s") as short_lived,
        holder_proxy(short_lived) as proxy,
    ):
        refused: list[str] = []
        proxy.rewrites.append(answers_containing(b"access token is unknown or expired", refused))
        exchange_request = scene.patricia_asks(short_lived, through=proxy)
        scene.run_to_the_end(exchange_request)

    assert refused, "no request arrived with a lapsed token; the case tested nothing"
    scene.assert_delivered_once(exchange_request)


# --- Bad data: quarantined and reported, the rest delivered ---


def test_a_malformed_resource_is_quarantined_and_reported_and_the_rest_delivered(
    scene: Scene, clean_south: RunningSandbox
) -> None:
    # The latest Encounter, which the rule would otherwise deliver, arrives broken.
    latest = max(
        (r for r in scene.oracle if r["resourceType"] == "Encounter"),
        key=lambda r: r["period"]["start"],
    )
    broken: Key = ("Encounter", latest["id"])

    def break_latest_encounter(body: bytes) -> bytes:
        bundle = json.loads(body)
        for entry in bundle.get("entry", []):
            if (entry["resource"]["resourceType"], entry["resource"]["id"]) == broken:
                # FHIR R4 Encounter.period is a Period (an object), never a string.
                entry["resource"]["period"] = "last spring"
        return json.dumps(bundle).encode()

    with holder_proxy(clean_south) as proxy:
        proxy.rewrites.append(on_path("$everything", break_latest_encounter))
        exchange_request = scene.patricia_asks(clean_south, through=proxy)
        scene.run_to_the_end(exchange_request)

    manifest = scene.assert_delivered_once(exchange_request, withheld=(broken,))
    assert manifest["quarantined"] == 1
    quarantine_rows = [row for row in manifest["screenedOut"] if row["code"] == QUARANTINE_CODE]
    assert [row["count"] for row in quarantine_rows] == [1]
    assert exchange_request.screened_out_counts[QUARANTINE_CODE] == 1


# --- Permanent failures: the request ends failed, saying why, and nothing is sent ---


def test_a_mismatched_sftp_host_key_fails_naming_both_fingerprints(
    scene: Scene, clean_south: RunningSandbox
) -> None:
    impostor = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
        .decode()
    )
    exchange_request = scene.patricia_asks(clean_south)
    SftpDestination.objects.filter(payer=scene.north.payer).update(host_key=impostor)
    scene.run_to_the_end(exchange_request)

    scene.assert_failed_with_nothing_delivered(exchange_request)
    assert exchange_request.reason_code == "host_key_mismatch"
    presented = parse_public_key_line(scene.sftp_server.host_key_line).fingerprint
    pinned = parse_public_key_line(impostor).fingerprint
    assert presented in exchange_request.reason_message
    assert pinned in exchange_request.reason_message
    assert "Nothing was sent" in exchange_request.reason_message
    attempt = exchange_request.delivery.attempts.get()
    assert attempt.succeeded is False and attempt.error_code == "host_key_mismatch"


def test_a_page_of_malformed_json_fails_the_request_saying_so(
    scene: Scene, clean_south: RunningSandbox
) -> None:
    with holder_proxy(clean_south) as proxy:
        # The second page breaks off halfway: a complete HTTP answer, but not JSON.
        proxy.rewrites.append(on_path("_offset=", lambda body: body[: len(body) // 2]))
        exchange_request = scene.patricia_asks(clean_south, through=proxy)
        scene.run_to_the_end(exchange_request)

    scene.assert_failed_with_nothing_delivered(exchange_request)
    assert exchange_request.reason_code == "malformed_json"
    assert exchange_request.reason_message.startswith(
        "Southern Cross Health's server sent malformed JSON"
    )
    assert (
        not Delivery.objects.for_payer(scene.north.payer)
        .filter(exchange_request=exchange_request)
        .exists()
    )


# --- The reaper ---


def test_work_waiting_out_a_long_retry_after_is_not_taken_for_stuck(
    scene: Scene, settings: Any
) -> None:
    settings.EXCHANGE_STUCK_AFTER_SECONDS = 1
    # South asks for 45 s, longer than a call waits in the worker: the task retries then.
    with (
        south_sandbox("429=1.0,retry-after=45s") as throttled,
        holder_proxy(throttled) as proxy,
    ):
        throttling: list[str] = []
        proxy.rewrites.append(answers_containing(b"injected fault: 429", throttling))
        exchange_request = scene.patricia_asks(throttled, through=proxy)
        # Its own worker: stopped below with the long retry still scheduled.
        with scene.own_worker():
            wait_for(lambda: bool(throttling), timeout=30)
            # Longer than EXCHANGE_STUCK_AFTER_SECONDS, far shorter than the Retry-After.
            assert resume_stuck_work() == 0

    assert current(exchange_request).status == S.MATCHING
    assert exchange_request.resume_count == 0


# --- The kill test ---


def test_a_worker_killed_mid_retrieval_and_mid_upload_delivers_exactly_once(
    scene: Scene, settings: Any
) -> None:
    settings.EXCHANGE_STUCK_AFTER_SECONDS = 1
    # Uploads to the sshd crawl.
    with (
        south_sandbox() as holder,
        holder_proxy(holder) as proxy,
        slow_link(target_port=scene.sftp_server.port, upload_rate=100_000) as link,
    ):
        exchange_request = scene.patricia_asks(holder, through=proxy)
        SftpDestination.objects.filter(payer=scene.north.payer).update(port=link.port)
        folder = scene.deliveries / str(exchange_request.pk)

        # 1. Killed while retrieving, with the first page staged and the second on its way:
        # the proxy holds the request for it (sent ahead, while the first page is staged) until
        # the worker is gone.
        later_pages = proxy.hold("_offset=")
        with scene.own_worker() as worker:
            wait_for(
                lambda: (
                    later_pages.arrived >= 1
                    and current(exchange_request).retrieval_cursor.get("page", 0) >= 1
                ),
                timeout=60,
            )
            kill(worker)
        later_pages.released.set()
        assert current(exchange_request).status == S.RETRIEVING
        assert current(exchange_request).retrieval_cursor["page"] == 1
        assert exchange_request.retrieval_cursor["done"] is False

        # 2. Restarted and resumed by the reaper; killed again in the middle of the upload.
        uploading = folder / "bundle.json.uploading"
        with scene.own_worker() as worker:
            assert resume_stuck_work() == 1
            wait_for(lambda: bytes_landed(uploading) > 0, timeout=90)
            kill(worker)
        assert current(exchange_request).status == S.DELIVERING
        # Never a partial file under its final name: the bundle is still on its way.
        assert not (folder / "bundle.json").exists()
        assert not (folder / "manifest.json").exists()

        # 3. Restarted and resumed again, on a link back to full speed: delivered once.
        link.upload_rate = None
        with scene.own_worker():
            assert resume_stuck_work() == 1
            until_ended(exchange_request)

    scene.assert_delivered_once(exchange_request)
    # The killed upload is recorded as interrupted; the resumed one succeeded.
    attempts = list(exchange_request.delivery.attempts.values_list("succeeded", "error_code"))
    assert attempts == [(False, "interrupted"), (True, "")]
    # Retrieval resumed from its cursor: the first page was fetched once, never again.
    everything_requests = [path for _, path, _ in proxy.received if "$everything" in path]
    assert len([path for path in everything_requests if "_offset=" not in path]) == 1
