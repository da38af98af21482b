"""An S3-speaking object store on loopback for tests: moto's standalone server."""

import logging
import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import boto3
import httpx
from moto.server import ThreadedMotoServer

from tests.support.celery_worker import running_worker
from tests.support.net import free_loopback_port, wait_until_listening

BUCKET = "hub-payloads"
# moto accepts any credentials; these only have to be present.
ACCESS_KEY_ID = "test-access-key"
SECRET_ACCESS_KEY = "test-secret-key"


def object_store_client(endpoint: str, service: str = "s3") -> Any:
    """Return a client of the test store's ``service`` (moto serves every AWS API on one
    endpoint: ``kms`` makes the keys of aws:kms); boto3 clients are untyped here."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )


@contextmanager
def object_store_server() -> Iterator[str]:
    """Run moto's S3 server on a free loopback port with BUCKET made; yield its endpoint."""
    port = free_loopback_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    # The server logs every request (werkzeug, at INFO): thousands in a cohort's run, which
    # would bury what a failing test printed.
    requests_log = logging.getLogger("werkzeug")
    level = requests_log.level
    requests_log.setLevel(logging.WARNING)
    server.start()
    try:
        wait_until_listening(port)
        endpoint = f"http://127.0.0.1:{port}"
        # moto keeps its buckets in the process, not in the server: without a reset, this
        # server would hold what an earlier module's server stored.
        httpx.post(f"{endpoint}/moto-api/reset").raise_for_status()
        object_store_client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()
        requests_log.setLevel(level)


def object_store_environment(endpoint: str) -> dict[str, str]:
    """Return the environment that points a hub process at the test store."""
    return {
        "PAYLOAD_STORAGE_BACKEND": "s3",
        "PAYLOAD_S3_ENDPOINT": endpoint,
        "PAYLOAD_S3_BUCKET": BUCKET,
        "PAYLOAD_S3_REGION": "us-east-1",
        "PAYLOAD_S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "PAYLOAD_S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "PAYLOAD_S3_SSE": "AES256",
    }


def object_store_settings_apply(settings: Any, endpoint: str) -> None:
    """Point this process's Django ``settings`` (pytest-django's fixture) at the test store."""
    for name, value in object_store_environment(endpoint).items():
        setattr(settings, name, value)


def object_store_worker(
    endpoint: str, *, name: str, queues: str, folder: Path, **environment: str
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """Return a worker on ``queues`` with payloads in the test store and local folders of
    its own under ``folder``, which no step may make: a step that did relied on a path."""
    return running_worker(
        queues=queues,
        name=name,
        PAYLOAD_STORAGE_DIR=str(folder),
        SFTP_REPOSITORY_DIR=str(folder / "repository"),
        **object_store_environment(endpoint),
        **environment,
    )
