"""An enrollment system posts an opt-in through the API and both records arrive, with no
member sign-in; the recurring pulls follow on the hub's clock; withdrawal through the API
stops them (issue 13 "What it must show"), against the real database, a real Celery worker,
two sandbox payers and the real sshd.

North's enrollment system names South as Patricia's previous payer and West as her
concurrent one; each is a sandbox holding the same seeded records under its own NPI. The
oracle is each sandbox itself: the delivered folders are checked against its own
``$everything`` of Patricia, read by the test as a client of its own (``delivery_check``).
Then the hub's clock is moved on: 60 days (South's run-off, nothing new there) and a quarter
(West's refresh, after Patricia had a visit at West): each pull asks with ``_since`` the
previous pull's ``records_as_of`` and delivers only what changed.
"""

import json
import shutil
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from typing import Any

import httpx
import pytest
from django.utils import timezone

from exchange.fhir.instants import fhir_instant
from exchange.models import ExchangeRequest, ExchangeStatus, PullKind, PullSchedule, PullScheduleEnd
from exchange.schedules import pull_schedules_run
from exchange.state_machine import ENDED
from exchange.tasks import exchange_request_advance
from hub.models import FhirEndpoint, Payer, PayerStatus
from tests.api.conftest import WEST_NPI
from tests.api.payer_systems import PayerSystems, payer_systems_registered
from tests.conftest import Tenant
from tests.exchange.holders import hub_url
from tests.factories import PayerFactory
from tests.sandbox.harness import FORMER, SEED, RunningSandbox, running_sandbox
from tests.support.celery_worker import running_worker, wait_for
from tests.support.exchange_setup import (
    NORTH_NPI,
    SHOWCASE_CARD,
    SHOWCASE_MEMBER,
    SOUTH_SANDBOX_ARGS,
    delivery_check,
    exchange_payers_configure,
    sandbox_everything,
    sandbox_member,
)
from tests.support.sshd import SftpServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]
S = ExchangeStatus


@pytest.fixture(scope="module")
def south_holder() -> Iterator[RunningSandbox]:
    with running_sandbox(FORMER, *SOUTH_SANDBOX_ARGS, "--members", "5") as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def west_holder() -> Iterator[RunningSandbox]:
    with running_sandbox(
        "Western Peaks Health", "--seed", SEED, "--npi", WEST_NPI, "--members", "5"
    ) as sandbox:
        yield sandbox


@pytest.fixture
def west_payer(db: None) -> Payer:
    return PayerFactory(
        slug="west", name="Western Peaks Health", npi=WEST_NPI, status=PayerStatus.PARTICIPATING
    )


def _opt_in(patricia: dict[str, Any]) -> dict[str, Any]:
    today = timezone.localdate()
    return {
        "member": {
            "member_id": "NSH-PAT-1",
            "family_name": patricia["family"],
            "given_names": patricia["given"],
            "birth_date": patricia["birth_date"],
            "gender": patricia["gender"],
        },
        "new_coverage": {"start": (today - timedelta(days=2)).isoformat()},
        "previous_payers": [
            {
                "payer": "1245319599",  # South, by NPI
                "member_id": SHOWCASE_CARD,
                "coverage_start": "2019-01-01",
                "coverage_end": (today - timedelta(days=3)).isoformat(),
            }
        ],
        "concurrent_payers": [
            {"payer": "west", "member_id": SHOWCASE_CARD, "coverage_start": "2024-01-01"}
        ],
        "consent": {"choice": "everything"},
        "attestation": {
            "obtained_at": (timezone.now() - timedelta(hours=1)).replace(microsecond=0).isoformat(),
            "method": "enrollment_form",
            "education_text_version": "2026-01",
        },
    }


def test_an_opt_in_posted_at_enrollment_is_delivered_from_both_payers_without_sign_in(
    north: Tenant,
    south: Tenant,
    west_payer: Payer,
    south_holder: RunningSandbox,
    west_holder: RunningSandbox,
    sftp_server: SftpServer,
    live_server: Any,
    settings: Any,
) -> None:
    # The former payers fetch North's JWKS from the live hub.
    settings.HUB_PUBLIC_URL = hub_url(live_server)
    exchange_payers_configure(
        new=north,
        former=south,
        former_fhir_base=south_holder.fhir,
        sftp_server=sftp_server,
        payer_to_payer=True,
    )
    FhirEndpoint.objects.create(
        payer=west_payer,
        base_url=west_holder.fhir,
        offers_backend_services=True,
        offers_member_authorization=False,
    )
    patricia = sandbox_member(south_holder, SHOWCASE_MEMBER)
    try:
        with payer_systems_registered(north.payer) as systems:
            _post_and_follow(
                north, systems, patricia, south_holder, west_holder, sftp_server, settings
            )
    finally:
        for folder in ("south", "west"):
            shutil.rmtree(sftp_server.incoming / folder, ignore_errors=True)


def _post_and_follow(
    north: Tenant,
    systems: PayerSystems,
    patricia: dict[str, Any],
    south_holder: RunningSandbox,
    west_holder: RunningSandbox,
    sftp_server: SftpServer,
    settings: Any,
) -> None:
    client = systems.client(north.payer)
    response = client.post("/api/v1/opt-ins", _opt_in(patricia), **{"Idempotency-Key": "pat-1"})
    assert response.status_code == 201, response.json()
    requests = {r["former_payer"]["slug"]: r for r in response.json()["requests"]}
    assert set(requests) == {"south", "west"}

    with running_worker(HUB_PUBLIC_URL=settings.HUB_PUBLIC_URL):
        ids = [r["id"] for r in requests.values()]
        _wait_until_ended(north, systems, ids)

    client = systems.client(north.payer)  # a fresh token: the last may have run out meanwhile

    # Nobody signed in: the member was made from the opt-in, and has never signed in.
    member = ExchangeRequest.objects.for_payer(north.payer).get(pk=ids[0]).member
    assert (member.plan_member_id, member.oidc_subject, member.last_login) == (
        "NSH-PAT-1",
        "",
        None,
    )
    for slug, holder in (("south", south_holder), ("west", west_holder)):
        request_id = requests[slug]["id"]
        detail = client.get(f"/api/v1/requests/{request_id}").json()
        assert detail["status"] == "delivered", _report(client, ids)
        oracle = sandbox_everything(holder, member=patricia, recipient_npi=NORTH_NPI)
        manifest = delivery_check(
            sftp_server.incoming / slug / str(request_id), oracle, policy="sensitive"
        )
        (delivery,) = client.get(f"/api/v1/requests/{request_id}/deliveries").json()
        listed = {f["path"].rsplit("/", 1)[-1]: (f["size"], f["sha256"]) for f in delivery["files"]}
        assert {
            entry["name"]: (entry["size"], entry["sha256"]) for entry in manifest["files"]
        }.items() <= listed.items()
        assert "manifest.json" in listed

    _recurring_pulls_follow(
        north,
        systems,
        patricia,
        requests,
        response.json()["id"],
        west_holder,
        sftp_server,
        settings,
    )


def _wait_until_ended(north: Tenant, systems: PayerSystems, ids: list[int]) -> None:
    def all_ended() -> bool:
        statuses = ExchangeRequest.objects.for_payer(north.payer).filter(pk__in=ids)
        return all(s in ENDED | {S.FAILED} for s in statuses.values_list("status", flat=True))

    try:
        wait_for(all_ended, timeout=180)
    except TimeoutError:
        raise AssertionError(_report(systems.client(north.payer), ids)) from None


def _pulls_run(
    north: Tenant, systems: PayerSystems, *, days_later: int
) -> dict[str, ExchangeRequest]:
    """Run the scheduler as beat would, the hub's clock ``days_later`` days on; wait for the
    pulls it started; return them by former payer."""
    started = pull_schedules_run(now=timezone.now() + timedelta(days=days_later))
    for pull in started:
        exchange_request_advance.delay(pull.request_id, pull.payer_id)
    _wait_until_ended(north, systems, [pull.request_id for pull in started])
    pulls = ExchangeRequest.objects.for_payer(north.payer).filter(
        pk__in=[pull.request_id for pull in started]
    )
    return {pull.former_payer.slug: pull for pull in pulls.select_related("former_payer")}


def _bundle_keys(folder: Any) -> set[tuple[str, str]]:
    bundle = json.loads((folder / "bundle.json").read_text())
    return {
        (entry["resource"]["resourceType"], entry["resource"]["id"])
        for entry in bundle["entry"]
        if not entry["resource"]["id"].startswith("hub-request-")  # the hub's own Provenance
    }


def _recurring_pulls_follow(
    north: Tenant,
    systems: PayerSystems,
    patricia: dict[str, Any],
    first: dict[str, dict[str, Any]],
    opt_in_id: int,
    west_holder: RunningSandbox,
    sftp_server: SftpServer,
    settings: Any,
) -> None:
    first_pull = {
        slug: ExchangeRequest.objects.for_payer(north.payer).get(pk=r["id"])
        for slug, r in first.items()
    }
    schedules = {
        s.former_payer.slug: s
        for s in PullSchedule.objects.for_payer(north.payer).select_related("former_payer")
    }
    # West is concurrent: refreshed every quarter; South's coverage ended 3 days ago: one
    # run-off pull 60 days after its end. Each watermark is its first pull's records_as_of.
    assert (schedules["west"].kind, schedules["south"].kind) == (PullKind.REFRESH, PullKind.RUN_OFF)
    for slug, schedule in schedules.items():
        assert schedule.watermark == first_pull[slug].records_as_of is not None
    south_end = timezone.localdate() - timedelta(days=3)
    assert first_pull["south"].coverage_end == south_end
    assert schedules["south"].next_run_at == timezone.make_aware(
        datetime.combine(south_end + timedelta(days=60), time.min)
    )
    # Nothing is due on the hub's own clock: a second beat finds nothing to do.
    assert pull_schedules_run() == []

    visit = httpx.post(f"{west_holder.base}/sandbox/members/{patricia['username']}/visits")
    assert visit.status_code == 201, visit.text
    visit_keys = {(r["resourceType"], r["id"]) for r in visit.json()["added"]}

    with running_worker(HUB_PUBLIC_URL=settings.HUB_PUBLIC_URL):
        run_off = _pulls_run(north, systems, days_later=60)
        assert set(run_off) == {"south"}
        refresh = _pulls_run(north, systems, days_later=92)
        assert set(refresh) == {"west"}
        assert _pulls_run(north, systems, days_later=93) == {}

    client = systems.client(north.payer)
    for slug, pull in (("south", run_off["south"]), ("west", refresh["west"])):
        assert pull.status == S.DELIVERED, _report(client, [pull.pk])
        assert (pull.schedule_run, pull.records_since) == (1, first_pull[slug].records_as_of)
        folder = sftp_server.incoming / slug / str(pull.pk)
        window = json.loads((folder / "manifest.json").read_text())["window"]
        assert window == {
            "changedSince": fhir_instant(first_pull[slug].records_as_of),
            "asOf": fhir_instant(pull.records_as_of),
            "pull": 1,
        }
    # Only what changed: nothing at South, Patricia's visit at West.
    assert _bundle_keys(sftp_server.incoming / "south" / str(run_off["south"].pk)) == set()
    assert _bundle_keys(sftp_server.incoming / "west" / str(refresh["west"].pk)) == visit_keys

    schedules = {
        s.former_payer.slug: s
        for s in PullSchedule.objects.for_payer(north.payer).select_related("former_payer")
    }
    assert schedules["south"].end_reason == PullScheduleEnd.RUN_OFF_DONE
    assert schedules["west"].watermark == refresh["west"].records_as_of
    assert schedules["west"].ended_at is None

    # Withdrawal through the API stops the schedule: a year on, nothing is pulled again.
    assert client.post(f"/api/v1/opt-ins/{opt_in_id}/withdraw").status_code == 200
    schedules["west"].refresh_from_db()
    assert schedules["west"].end_reason == PullScheduleEnd.CONSENT_WITHDRAWN
    assert pull_schedules_run(now=timezone.now() + timedelta(days=365)) == []


def _report(client: Any, ids: list[int]) -> str:
    return "; ".join(
        f"{i}: {d['status']} {d['reason']} {[e['message'] for e in d['events']]}"
        for i in ids
        for d in [client.get(f"/api/v1/requests/{i}").json()]
    )
