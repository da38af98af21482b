"""A cohort end to end (issue 12 "What it must show"), against a running sandbox payer.

Real parts only: a Celery worker process, the hub served over HTTP (South fetches North's
JWKS from it), South's FHIR server (a sandbox with ``--no-segmentation``, so a #regular
consent is one it cannot honour: consent-constrained), and a real OpenSSH sshd receiving
North's deliveries. North's administrator uploads a roster naming South's members; some
lines carry a wrong card number (no match) or a #regular consent (consent constraint).

The oracle is South itself: each delivered member's folder is checked against South's own
``$everything`` of that member, read by the test as a client of its own
(``delivery_check``: nothing outside the record, the rule's limits held, every recent
encounter there, the manifest's sha256 and sizes right).
"""

import csv
import io
import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.utils import timezone

from exchange.bulk.roster import roster_read
from exchange.bulk.services import cohorts_create
from exchange.models import (
    BulkJob,
    BulkJobKind,
    BulkJobState,
    Cohort,
    CohortMember,
    CohortPath,
    CohortStatus,
    ExchangeStatus,
    MatchOutcome,
)
from exchange.state_machine import ENDED
from hub.models import FhirEndpoint
from tests.conftest import Tenant
from tests.exchange.holders import hub_url
from tests.sandbox.harness import (
    FORMER,
    BackendClient,
    RunningSandbox,
    current_consent,
    everything,
    matched_patient,
    running_sandbox,
)
from tests.support.celery_worker import running_worker, wait_for
from tests.support.exchange_setup import (
    NORTH_NPI,
    SOUTH_SANDBOX_ARGS,
    delivery_check,
    exchange_payers_configure,
)
from tests.support.sshd import SftpServer

pytestmark = pytest.mark.django_db(transaction=True)
S = ExchangeStatus
# Bounded for `make test`; the benchmark (bench/cohort_exchange.py) runs 1,000 and more.
COHORT_SIZE = 24
CHUNK_SIZE = 10
ROSTER_COLUMNS = (
    "member_id,family_name,given_names,birth_date,gender,former_payer_npi,former_member_id,"
    "former_coverage_start,former_coverage_end,new_coverage_start,consent,opted_in_at"
)


def ordinary_members(sandbox: RunningSandbox) -> list[dict[str, Any]]:
    """South's members who match uniquely (not the showcase duplicates)."""
    return [
        m
        for m in sandbox.member_list()["members"]
        if not m["username"].startswith(("casey.", "patricia."))
    ]


def roster_csv(rows: list[dict[str, Any]], *, former_npi: str) -> bytes:
    """Return a roster naming ``rows`` (members of South's list, with the test's twists)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(ROSTER_COLUMNS.split(","))
    opted_in = timezone.now().replace(microsecond=0).isoformat()
    for number, member in enumerate(rows, start=1):
        writer.writerow(
            [
                f"N{number:05d}",
                member["family"],
                " ".join(member["given"]),
                member["birth_date"],
                member["gender"],
                former_npi,
                member.get("card_override") or member["card_number"],
                "2020-01-01",
                "2026-10-31",
                "2026-11-01",
                member.get("consent", "everything"),
                opted_in,
            ]
        )
    return out.getvalue().encode()


@pytest.fixture(scope="module")
def south_holder() -> Iterator[RunningSandbox]:
    with running_sandbox(
        FORMER, *SOUTH_SANDBOX_ARGS, "--members", str(COHORT_SIZE + 6), "--no-segmentation"
    ) as sandbox:
        yield sandbox


@pytest.fixture(autouse=True)
def _empty_broker() -> Iterator[None]:
    broker = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    broker.flushdb()
    yield
    broker.flushdb()
    broker.close()


def south_record(sandbox: RunningSandbox, members: list[dict[str, Any]]) -> dict[str, Any]:
    """Return South's own $everything of each member (by card number), read as a client of
    the test's own for a #sensitive consent to North."""
    client = BackendClient(sandbox=sandbox, organization_npi=NORTH_NPI).register()
    records = {}
    with client.http() as http:
        for member in members:
            patient_id = matched_patient(http, member, current_consent(recipient_npi=NORTH_NPI))
            records[member["card_number"]] = everything(http, patient_id, _count="500")
    return records


def test_a_cohort_ends_with_every_member_in_one_outcome_and_the_matched_delivered_whole(
    north: Tenant,
    south: Tenant,
    south_holder: RunningSandbox,
    sftp_server: SftpServer,
    live_server: Any,
    settings: Any,
) -> None:
    settings.HUB_PUBLIC_URL = hub_url(live_server)
    exchange_payers_configure(
        new=north,
        former=south,
        former_fhir_base=south_holder.fhir,
        sftp_server=sftp_server,
        payer_to_payer=True,
    )
    FhirEndpoint.objects.for_payer(south.payer).update(bulk_match_chunk_size=CHUNK_SIZE)
    members = ordinary_members(south_holder)[:COHORT_SIZE]
    rows = [dict(m) for m in members]
    rows[3]["card_override"] = "NOT-A-CARD-1"
    rows[11]["card_override"] = "NOT-A-CARD-2"
    rows[5]["consent"] = "non_sensitive"
    roster = roster_read(
        data=roster_csv(rows, former_npi=south.payer.npi),
        filename="november.csv",
        new_payer=north.payer,
        now=timezone.now(),
    )
    (cohort,) = cohorts_create(
        new_payer=north.payer,
        created_by=north.admin,
        roster=roster,
        name="November enrollees",
        roster_name="november.csv",
    )

    with running_worker(HUB_PUBLIC_URL=settings.HUB_PUBLIC_URL):
        wait_for(
            lambda: (
                Cohort.objects.for_payer(north.payer).get(pk=cohort.pk).status
                == CohortStatus.COMPLETED
            ),
            timeout=240,
        )

    cohort.refresh_from_db()
    assert cohort.path == CohortPath.DAVINCI_DATA_EXPORT, cohort.path_reason
    cohort_members = list(
        CohortMember.objects.for_payer(north.payer)
        .filter(cohort=cohort)
        .select_related("exchange_request")
        .order_by("line")
    )
    statuses = [m.exchange_request.status for m in cohort_members]
    assert all(status in ENDED | {S.FAILED} for status in statuses)
    expected = [S.DELIVERED] * COHORT_SIZE
    expected[3] = expected[11] = S.NO_MATCH
    expected[5] = S.CONSENT_CONSTRAINED
    assert statuses == expected, [
        (m.line, m.exchange_request.status, m.exchange_request.reason_message)
        for m in cohort_members
    ]
    assert [m.match_outcome for m in cohort_members].count(MatchOutcome.MATCH) == COHORT_SIZE - 3
    # Three match chunks of at most 10 members; one export per matched Group; all done.
    jobs = BulkJob.objects.for_payer(north.payer).filter(cohort=cohort)
    assert jobs.filter(kind=BulkJobKind.MEMBER_MATCH).count() == 3
    assert jobs.filter(kind=BulkJobKind.DATA_EXPORT).count() == 3
    assert set(jobs.values_list("state", flat=True)) == {BulkJobState.DONE}
    assert all(job.kick_offs == 1 for job in jobs)

    # Each delivered member's folder holds exactly South's own record within the rule.
    records = south_record(
        south_holder, [m for i, m in enumerate(members) if expected[i] == S.DELIVERED]
    )
    deliveries = sftp_server.incoming / "south"
    try:
        for member, cohort_member in zip(members, cohort_members, strict=True):
            request = cohort_member.exchange_request
            if request.status != S.DELIVERED:
                continue
            delivery_check(
                deliveries / str(request.pk), records[member["card_number"]], policy="sensitive"
            )
        manifest = json.loads(
            (deliveries / f"cohort-{cohort.pk}" / "cohort-manifest.json").read_text()
        )
    finally:
        shutil.rmtree(deliveries, ignore_errors=True)
    assert manifest["memberCount"] == COHORT_SIZE
    assert manifest["outcomes"] == {
        S.DELIVERED: COHORT_SIZE - 3,
        S.NO_MATCH: 2,
        S.CONSENT_CONSTRAINED: 1,
    }
    assert [entry["line"] for entry in manifest["members"]] == [m.line for m in cohort_members]
