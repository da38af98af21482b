"""Which way a cohort's data is asked for follows what the holder offers (issue 12 item 3).

South is a sandbox behind the holder proxy, whose CapabilityStatement is cut down to what
a less complete holder lists: no ``$davinci-data-export`` (the hub falls back to Group
``$export``), no bulk operations at all (each member by the single-request path). A holder
that refuses ``_typeFilter`` is asked again without it, and says so on the job. Each way,
every member is delivered exactly as South holds the record.
"""

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from exchange.models import BulkJob, BulkJobKind, CohortPath, CohortStatus, ExchangeStatus
from tests.conftest import Tenant
from tests.exchange.bulk.cohorts import CohortScene, ordinary_members
from tests.exchange.holder_proxy import holder_proxy
from tests.exchange.holders import hub_url
from tests.sandbox.harness import FORMER, RunningSandbox, running_sandbox
from tests.support.celery_worker import ModuleWorker
from tests.support.exchange_setup import SOUTH_SANDBOX_ARGS
from tests.support.sshd import SftpServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]
S = ExchangeStatus
MEMBERS = 5


@pytest.fixture(scope="module")
def south_holder() -> Iterator[RunningSandbox]:
    with running_sandbox(FORMER, *SOUTH_SANDBOX_ARGS, "--members", "8") as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def module_worker(live_server: Any) -> Iterator[ModuleWorker]:
    """One worker for the module's cases (the hub's URL is the session's)."""
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
    module_worker: ModuleWorker,
) -> Iterator[CohortScene]:
    settings.HUB_PUBLIC_URL = hub_url(live_server)
    module_worker.ready()
    case = CohortScene(north, south, sftp_server)
    yield case
    shutil.rmtree(case.deliveries, ignore_errors=True)


def without_operations(*names: str) -> Callable[[str, bytes], bytes]:
    """Return a rewrite of the CapabilityStatement that no longer lists these operations."""

    def rewrite(path: str, body: bytes) -> bytes:
        if not path.startswith("/fhir/metadata"):
            return body
        statement = orjson.loads(body)
        for rest in statement["rest"]:
            for resource in rest["resource"]:
                resource["operation"] = [
                    o for o in resource.get("operation", []) if o["name"] not in names
                ]
        return orjson.dumps(statement)

    return rewrite


def run_all_delivered(
    scene: CohortScene, holder: RunningSandbox, fhir: str
) -> tuple[Any, list[dict[str, Any]]]:
    scene.configure(fhir, chunk_size=MEMBERS)
    rows = [dict(m) for m in ordinary_members(holder, MEMBERS)]
    cohort = scene.upload(rows)
    cohort = scene.wait_until(cohort, CohortStatus.COMPLETED)
    members = scene.assert_every_member_ended_once(cohort)
    assert [m.exchange_request.status for m in members] == [S.DELIVERED] * MEMBERS, scene.report(
        cohort
    )
    scene.assert_delivered_as_south_holds_them(holder, cohort, rows)
    return cohort, rows


def test_a_holder_without_davinci_data_export_is_asked_with_group_export(
    scene: CohortScene, south_holder: RunningSandbox
) -> None:
    with holder_proxy(south_holder) as proxy:
        proxy.rewrites.append(without_operations("davinci-data-export"))
        cohort, _ = run_all_delivered(scene, south_holder, proxy.fhir)

    assert cohort.path == CohortPath.GROUP_EXPORT
    assert "not $davinci-data-export" in cohort.path_reason
    (export,) = scene.jobs(cohort, BulkJobKind.DATA_EXPORT)
    assert export.operation.endswith("/$export")
    kick_offs = [body for method, path, body in proxy.received if path.endswith("/$export")]
    assert len(kick_offs) == 1 and b"exportType" not in kick_offs[0]


def test_a_holder_without_bulk_operations_gets_each_member_on_their_own(
    scene: CohortScene, south_holder: RunningSandbox
) -> None:
    with holder_proxy(south_holder) as proxy:
        proxy.rewrites.append(
            without_operations("bulk-member-match", "davinci-data-export", "export")
        )
        cohort, _ = run_all_delivered(scene, south_holder, proxy.fhir)

    assert cohort.path == CohortPath.SINGLE_MEMBER
    assert not BulkJob.objects.for_payer(scene.north.payer).filter(cohort=cohort).exists()
    matches = [path for method, path, _ in proxy.received if path.endswith("/$member-match")]
    assert len(matches) == MEMBERS


def test_a_holder_that_refuses_type_filter_is_asked_again_without_it(
    scene: CohortScene, south_holder: RunningSandbox
) -> None:
    refused: list[bytes] = []

    def no_type_filter(method: str, path: str, body: bytes) -> tuple[int, bytes] | None:
        if method == "POST" and "$davinci-data-export" in path and b"_typeFilter" in body:
            refused.append(body)
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [
                    {
                        "severity": "error",
                        "code": "not-supported",
                        "diagnostics": "_typeFilter is not supported by this server",
                    }
                ],
            }
            return 400, orjson.dumps(outcome)
        return None

    with holder_proxy(south_holder) as proxy:
        proxy.refusals.append(no_type_filter)
        cohort, _ = run_all_delivered(scene, south_holder, proxy.fhir)

    assert len(refused) == 1
    (export,) = scene.jobs(cohort, BulkJobKind.DATA_EXPORT)
    assert "_typeFilter" not in export.parameters
    assert "_typeFilter is not supported" in export.parameters["typeFilterRefused"]
    assert export.kick_offs == 1
