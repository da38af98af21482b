"""An enrollment system posts an opt-in through the API and both records arrive, with no
member sign-in (issue 13 "What it must show"), against the real database, a real Celery
worker, two sandbox payers and the real sshd.

North's enrollment system names South as Patricia's previous payer and West as her
concurrent one; each is a sandbox holding the same seeded records under its own NPI. The
oracle is each sandbox itself: the delivered folders are checked against its own
``$everything`` of Patricia, read by the test as a client of its own (``delivery_check``).
"""

import shutil
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from exchange.models import ExchangeRequest, ExchangeStatus
from exchange.state_machine import ENDED
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

        def all_ended() -> bool:
            statuses = ExchangeRequest.objects.for_payer(north.payer).filter(pk__in=ids)
            return all(s in ENDED | {S.FAILED} for s in statuses.values_list("status", flat=True))

        try:
            wait_for(all_ended, timeout=180)
        except TimeoutError:
            raise AssertionError(_report(systems.client(north.payer), ids)) from None

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


def _report(client: Any, ids: list[int]) -> str:
    return "; ".join(
        f"{i}: {d['status']} {d['reason']} {[e['message'] for e in d['events']]}"
        for i in ids
        for d in [client.get(f"/api/v1/requests/{i}").json()]
    )
