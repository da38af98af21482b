"""Run a cohort against a sandbox payer the way an administrator would, and check it.

North's administrator uploads a roster of South's members (``roster_read`` +
``cohorts_create``, as the portal does); a real Celery worker runs it; South is a sandbox
(or a misbehaving proxy in front of one). The oracle is South itself: each delivered
member's folder on the sshd is checked against South's own ``$everything`` of that member,
read by the test as a client of its own (``delivery_check``).
"""

import csv
import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.utils import timezone

from exchange.bulk.roster import CSV_COLUMNS, roster_read
from exchange.bulk.services import cohorts_create
from exchange.models import (
    BulkJob,
    BulkJobKind,
    Cohort,
    CohortMember,
    ExchangeStatus,
)
from exchange.state_machine import ENDED
from hub.models import FhirEndpoint
from tests.conftest import Tenant
from tests.sandbox.harness import (
    BackendClient,
    RunningSandbox,
    current_consent,
    everything,
    matched_patient,
)
from tests.support.celery_worker import wait_for
from tests.support.exchange_setup import NORTH_NPI, delivery_check, exchange_payers_configure
from tests.support.sshd import SftpServer

S = ExchangeStatus


def ordinary_members(sandbox: RunningSandbox, count: int) -> list[dict[str, Any]]:
    """Return ``count`` of South's members who match uniquely (not the showcase duplicates)."""
    members = [
        m
        for m in sandbox.member_list()["members"]
        if not m["username"].startswith(("casey.", "patricia."))
    ]
    assert len(members) >= count, f"the sandbox has {len(members)} ordinary members"
    return members[:count]


def roster_csv(rows: list[dict[str, Any]], *, former_npi: str) -> bytes:
    """Return a roster naming ``rows`` (members of South's list; ``card_override`` and
    ``consent`` keys change what a line says)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
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


@dataclass
class CohortScene:
    """North asks South for a cohort; South's FHIR base is ``holder_fhir``."""

    north: Tenant
    south: Tenant
    sftp_server: SftpServer

    @property
    def deliveries(self) -> Path:
        """North's folder of deliveries from South on the sshd."""
        return self.sftp_server.incoming / "south"

    def configure(self, holder_fhir: str, *, chunk_size: int) -> None:
        exchange_payers_configure(
            new=self.north,
            former=self.south,
            former_fhir_base=holder_fhir,
            sftp_server=self.sftp_server,
            payer_to_payer=True,
        )
        FhirEndpoint.objects.for_payer(self.south.payer).update(bulk_match_chunk_size=chunk_size)

    def upload(self, rows: list[dict[str, Any]]) -> Cohort:
        """Upload a roster of ``rows`` as North's administrator; the cohort waits for a worker."""
        roster = roster_read(
            data=roster_csv(rows, former_npi=self.south.payer.npi),
            filename="november.csv",
            new_payer=self.north.payer,
            now=timezone.now(),
        )
        (cohort,) = cohorts_create(
            new_payer=self.north.payer,
            created_by=self.north.admin,
            roster=roster,
            name="November enrollees",
            roster_name="november.csv",
        )
        return cohort

    def members(self, cohort: Cohort) -> list[CohortMember]:
        return list(
            CohortMember.objects.for_payer(self.north.payer)
            .filter(cohort=cohort)
            .select_related("exchange_request")
            .order_by("line")
        )

    def jobs(self, cohort: Cohort, kind: str) -> list[BulkJob]:
        return list(
            BulkJob.objects.for_payer(self.north.payer)
            .filter(cohort=cohort, kind=kind)
            .order_by("sequence")
        )

    def wait_until(self, cohort: Cohort, status: str, *, timeout: float = 180) -> Cohort:
        try:
            wait_for(lambda: current(self, cohort).status == status, timeout=timeout)
        except TimeoutError:
            raise AssertionError(self.report(cohort)) from None
        return current(self, cohort)

    def report(self, cohort: Cohort) -> str:
        """Say where every job and member stands (for a failed assertion)."""
        jobs = [
            (j.kind, j.sequence, j.state, j.kick_offs, j.reason_message)
            for kind in BulkJobKind.values
            for j in self.jobs(cohort, kind)
        ]
        members = [
            (m.line, m.exchange_request.status, m.exchange_request.reason_message)
            for m in self.members(cohort)
        ]
        return f"cohort {current(self, cohort).status}; jobs {jobs}; members {members}"

    def assert_every_member_ended_once(self, cohort: Cohort) -> list[CohortMember]:
        """Every member is in exactly one outcome: an ended state or failed with a reason."""
        members = self.members(cohort)
        for member in members:
            request = member.exchange_request
            assert request.status in ENDED | {S.FAILED}, self.report(cohort)
            if request.status in (S.FAILED, S.NO_MATCH, S.CONSENT_CONSTRAINED):
                assert request.reason_message, (member.line, request.status)
        return members

    def assert_delivered_as_south_holds_them(
        self, holder: RunningSandbox, cohort: Cohort, rows: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Each delivered member's folder holds exactly South's record within the rule, and
        nothing partial lies anywhere; return the cohort manifest."""
        members = self.members(cohort)
        delivered = [
            (row, m)
            for row, m in zip(rows, members, strict=True)
            if m.exchange_request.status == S.DELIVERED
        ]
        records = south_record(holder, [row for row, _ in delivered])
        for row, member in delivered:
            delivery_check(
                self.deliveries / str(member.exchange_request_id),
                records[row["card_number"]],
                policy="sensitive",
            )
        folders = {p.name for p in self.deliveries.iterdir()}
        assert folders == {str(m.exchange_request_id) for _, m in delivered} | {
            f"cohort-{cohort.pk}"
        }
        partial = [p for p in self.deliveries.rglob("*") if p.name.endswith(".uploading")]
        assert not partial, partial
        manifest: dict[str, Any] = json.loads(
            (self.deliveries / f"cohort-{cohort.pk}" / "cohort-manifest.json").read_text()
        )
        assert manifest["memberCount"] == len(members)
        return manifest


def current(scene: CohortScene, cohort: Cohort) -> Cohort:
    return Cohort.objects.for_payer(scene.north.payer).get(pk=cohort.pk)


def south_record(sandbox: RunningSandbox, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Return South's own $everything of each member (by card number), read as a client of
    the test's own for a #sensitive consent to North."""
    client = BackendClient(sandbox=sandbox, organization_npi=NORTH_NPI).register()
    with client.http() as http:

        def record(row: dict[str, Any]) -> list[dict[str, Any]]:
            patient_id = matched_patient(http, row, current_consent(recipient_npi=NORTH_NPI))
            return everything(http, patient_id, _count="500")

        # A few at once: the sandbox serves each on a thread of its own.
        with ThreadPoolExecutor(max_workers=4) as pool:
            return dict(
                zip((row["card_number"] for row in rows), pool.map(record, rows), strict=True)
            )


def wait_for_job(scene: CohortScene, cohort: Cohort, kind: str, *states: str) -> BulkJob:
    """Wait until a job of ``kind`` is in one of ``states``; return it."""
    found: list[BulkJob] = []

    def there() -> bool:
        found[:] = [j for j in scene.jobs(cohort, kind) if j.state in states]
        return bool(found)

    try:
        wait_for(there, timeout=120)
    except TimeoutError:
        raise AssertionError(scene.report(cohort)) from None
    return found[0]
