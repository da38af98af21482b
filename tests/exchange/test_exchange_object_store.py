"""One member exchange end to end on the object-store backend (issue 15, "What it must show").

The same scene as the fault tests (``test_exchange_faults.py``: Patricia of North asks South
for her records payer-to-payer, delivered to a real sshd), with payloads in an S3-speaking
server on loopback (moto) and the work split between two workers with different local
folders: one retrieves (``pull``), the other screens, packages and delivers. The second reads
the pages the first wrote, so no step relies on a local path an earlier step left; and no
local payload folder of either worker, nor of the web process, is ever made.
"""

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Tenant
from tests.exchange.holders import hub_url
from tests.exchange.test_exchange_faults import Scene, south_sandbox, until_ended
from tests.sandbox.harness import RunningSandbox
from tests.support.celery_worker import ModuleWorker
from tests.support.exchange_setup import (
    NORTH_NPI,
    SHOWCASE_MEMBER,
    sandbox_everything,
    sandbox_member,
)
from tests.support.object_store import (
    BUCKET,
    object_store_client,
    object_store_settings_apply,
    object_store_worker,
)
from tests.support.sshd import SftpServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]


@pytest.fixture(scope="module")
def south_holder() -> Iterator[RunningSandbox]:
    with south_sandbox() as sandbox:
        yield sandbox


def test_one_exchange_on_the_object_store_with_workers_on_different_folders(
    north: Tenant,
    south: Tenant,
    sftp_server: SftpServer,
    live_server: Any,
    settings: Any,
    tmp_path: Path,
    s3_endpoint: str,
    south_holder: RunningSandbox,
) -> None:
    settings.HUB_PUBLIC_URL = hub_url(live_server)
    object_store_settings_apply(settings, s3_endpoint)
    folders = {name: tmp_path / name for name in ("web", "pull-worker", "deliver-worker")}
    settings.PAYLOAD_STORAGE_DIR = folders["web"]
    patricia = sandbox_member(south_holder, SHOWCASE_MEMBER)
    oracle = sandbox_everything(south_holder, member=patricia, recipient_npi=NORTH_NPI)
    # Two workers of the case's own run it below; the scene's module worker never starts.
    scene = Scene(north, south, sftp_server, settings.HUB_PUBLIC_URL, oracle, ModuleWorker())
    exchange_request = scene.patricia_asks(south_holder)

    def worker(name: str, queues: str) -> Any:
        return object_store_worker(
            s3_endpoint, name=name, queues=queues, folder=folders[name], HUB_PUBLIC_URL=scene.hub
        )

    try:
        with worker("pull-worker", "default,pull"), worker("deliver-worker", "screen,deliver"):
            until_ended(exchange_request)
        scene.assert_delivered_once(exchange_request)
    finally:
        shutil.rmtree(scene.deliveries, ignore_errors=True)

    stored = {
        item["Key"]
        for item in object_store_client(s3_endpoint)
        .list_objects_v2(Bucket=BUCKET, Prefix=f"payloads/requests/{exchange_request.pk}/")
        .get("Contents", [])
    }
    # The pages the pull worker staged were screened by the other worker (which removed
    # them once screened); what it screened and packaged stays until the retention purge.
    assert {key.split("/")[3] for key in stored} == {"screened", "package"}, stored
    assert not any(folder.exists() for folder in folders.values())
