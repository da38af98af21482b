"""A cohort end to end (issue 12 "What it must show"), against running sandboxes.

South is a sandbox started with ``--no-segmentation`` (a #regular consent is one it cannot
honour: consent-constrained) and with faults (429, 503, dropped connections); some roster
lines carry a wrong card number (no match). Every member ends in exactly one outcome, and
each of the others is delivered exactly as South holds that member's record within the
rule — read from a second South without faults, which holds the same data
(tests/exchange/bulk/cohorts.py).

It runs on the object-store backend (moto's S3 server on loopback) with the work split
between two workers with local folders of their own, as on several machines (README
"Payload storage"): one matches, exports and splits the Group files (``bulk``), the other
screens, packages and delivers what the first staged. Neither folder, nor the web
process's, is ever made; the local backend is the contract suite's and the other tests'.
"""

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exchange.models import (
    BulkJobKind,
    BulkJobState,
    CohortPath,
    CohortStatus,
    ExchangeStatus,
    MatchOutcome,
)
from tests.conftest import Tenant
from tests.exchange.bulk.cohorts import CohortScene, ordinary_members
from tests.exchange.holders import hub_url
from tests.sandbox.harness import FORMER, RunningSandbox, running_sandbox
from tests.support.exchange_setup import SOUTH_SANDBOX_ARGS
from tests.support.object_store import (
    BUCKET,
    object_store_client,
    object_store_settings_apply,
    object_store_worker,
)
from tests.support.sshd import SftpServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]
S = ExchangeStatus
# Big enough for every outcome in several match chunks, each export with its files; the
# scale (1,000 members and more) is the benchmark's to show (bench/cohort_exchange.py).
COHORT_SIZE = 30
CHUNK_SIZE = 10
SOUTH_ARGS = (*SOUTH_SANDBOX_ARGS, "--members", str(COHORT_SIZE + 6), "--no-segmentation")
NO_MATCH_LINES = (3, 11, 25)
CONSENT_CONSTRAINED_LINES = (5, 16)


@pytest.fixture(scope="module")
def south_holder() -> Iterator[RunningSandbox]:
    with running_sandbox(
        FORMER, *SOUTH_ARGS, "--faults", "429=0.03,503=0.03,drop=0.03,retry-after=1s"
    ) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def clean_south() -> Iterator[RunningSandbox]:
    with running_sandbox(FORMER, *SOUTH_ARGS) as sandbox:
        yield sandbox


def test_a_cohort_ends_with_every_member_in_one_outcome_and_the_matched_delivered_whole(
    north: Tenant,
    south: Tenant,
    south_holder: RunningSandbox,
    clean_south: RunningSandbox,
    sftp_server: SftpServer,
    live_server: Any,
    settings: Any,
    tmp_path: Path,
    s3_endpoint: str,
) -> None:
    settings.HUB_PUBLIC_URL = hub_url(live_server)
    object_store_settings_apply(settings, s3_endpoint)
    folders = {name: tmp_path / name for name in ("web", "bulk-worker", "deliver-worker")}
    settings.PAYLOAD_STORAGE_DIR = folders["web"]
    settings.SFTP_REPOSITORY_DIR = folders["web"] / "repository"
    scene = CohortScene(north, south, sftp_server)
    scene.configure(south_holder.fhir, chunk_size=CHUNK_SIZE)
    rows = [dict(m) for m in ordinary_members(south_holder, COHORT_SIZE)]
    for index in NO_MATCH_LINES:
        rows[index]["card_override"] = f"NOT-A-CARD-{index}"
    for index in CONSENT_CONSTRAINED_LINES:
        rows[index]["consent"] = "non_sensitive"
    cohort = scene.upload(rows)

    def worker(name: str, queues: str) -> Any:
        return object_store_worker(
            s3_endpoint,
            name=name,
            queues=queues,
            folder=folders[name],
            HUB_PUBLIC_URL=settings.HUB_PUBLIC_URL,
        )

    with worker("bulk-worker", "default,pull,bulk"), worker("deliver-worker", "screen,deliver"):
        cohort = scene.wait_until(cohort, CohortStatus.COMPLETED, timeout=600)

    assert cohort.path == CohortPath.DAVINCI_DATA_EXPORT, cohort.path_reason
    members = scene.assert_every_member_ended_once(cohort)
    expected = [S.DELIVERED] * COHORT_SIZE
    for index in NO_MATCH_LINES:
        expected[index] = S.NO_MATCH
    for index in CONSENT_CONSTRAINED_LINES:
        expected[index] = S.CONSENT_CONSTRAINED
    assert [m.exchange_request.status for m in members] == expected, scene.report(cohort)
    unmatched = len(NO_MATCH_LINES) + len(CONSENT_CONSTRAINED_LINES)
    assert [m.match_outcome for m in members].count(MatchOutcome.MATCH) == COHORT_SIZE - unmatched
    # Three match chunks of 10 members; one export per matched Group; all done, each
    # kicked off once despite the faults.
    for kind in BulkJobKind.values:
        jobs = scene.jobs(cohort, kind)
        assert len(jobs) == 3
        assert {(j.state, j.kick_offs) for j in jobs} == {(BulkJobState.DONE, 1)}
    try:
        manifest = scene.assert_delivered_as_south_holds_them(clean_south, cohort, rows)
    finally:
        shutil.rmtree(scene.deliveries, ignore_errors=True)
    assert manifest["outcomes"] == {
        S.DELIVERED: COHORT_SIZE - unmatched,
        S.NO_MATCH: len(NO_MATCH_LINES),
        S.CONSENT_CONSTRAINED: len(CONSENT_CONSTRAINED_LINES),
    }
    assert [entry["line"] for entry in manifest["members"]] == [m.line for m in members]

    stored = {
        item["Key"]
        for page in object_store_client(s3_endpoint)
        .get_paginator("list_objects_v2")
        .paginate(Bucket=BUCKET)
        for item in page.get("Contents", [])
    }
    assert [key for key in stored if not key.startswith("payloads/")] == []
    assert f"payloads/cohorts/{cohort.pk}/cohort-manifest.json" in stored
    # The pages the bulk worker staged were screened by the other worker (which removed them
    # once screened); what it screened and packaged stays until the retention purge. A
    # member who was not matched left nothing.
    delivered = [m.exchange_request_id for m in members if m.exchange_request.status == S.DELIVERED]
    assert {tuple(key.split("/")[2:4]) for key in stored if "/requests/" in key} == {
        (str(request_id), step) for request_id in delivered for step in ("screened", "package")
    }
    assert not any(folder.exists() for folder in folders.values())
