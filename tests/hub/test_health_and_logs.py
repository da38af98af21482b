"""/healthz reports the database and the broker; logs are JSON lines with a request id."""

import json
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.test import Client, override_settings

from tests.support.net import free_loopback_port


@pytest.mark.django_db
def test_healthz_is_200_when_database_and_broker_answer() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_healthz_is_503_naming_the_broker_when_it_is_down() -> None:
    with override_settings(CELERY_BROKER_URL=f"redis://127.0.0.1:{free_loopback_port()}/0"):
        response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unhealthy", "database": "ok", "broker": "unreachable"}


@pytest.mark.django_db
def test_requests_get_an_id_and_a_json_access_log_without_query_strings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    console = logging.getLogger().handlers[0]  # the handler LOGGING configures
    with caplog.at_level(logging.INFO, logger="hub.access"):
        response = Client().get(
            "/healthz?family=Doe&birthdate=1970-01-01", HTTP_X_REQUEST_ID="abcdef123456"
        )
    assert response["X-Request-ID"] == "abcdef123456"
    [record] = [r for r in caplog.records if r.name == "hub.access"]
    # The console handler's filter stamped the record with the request id as it was handled.
    line = json.loads(console.format(record))
    assert line["level"] == "INFO" and line["logger"] == "hub.access"
    assert line["request_id"] == "abcdef123456"
    assert line["path"] == "/healthz" and line["status"] == 200
    assert "Doe" not in json.dumps(line) and "1970" not in json.dumps(line)


@pytest.mark.django_db
def test_an_unacceptable_request_id_is_replaced() -> None:
    response = Client().get("/healthz", HTTP_X_REQUEST_ID="bad id\nwith newline")
    assert response["X-Request-ID"] != "bad id\nwith newline"
    assert len(response["X-Request-ID"]) == 32


def test_gunicorns_access_log_has_the_path_without_the_query_string(tmp_path: Path) -> None:
    """As `make demo` serves the hub, with gunicorn's own access log turned on as well."""
    port = free_loopback_port()
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "hub.wsgi", "--bind", f"127.0.0.1:{port}",
             "--workers", "1", "--config", "python:hub.gunicorn_config", "--access-logfile", "-"],
            stdout=output, stderr=subprocess.STDOUT, env={**os.environ, "LOG_LEVEL": "INFO"},
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/oidc/callback/?code=secret-code&state=secret-state"
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(url, timeout=5)
            except urllib.error.HTTPError:
                break  # answered (the callback refuses a state it never issued)
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            else:
                break
    finally:
        server.terminate()
        server.wait(timeout=20)
    written = log.read_text()
    assert '"GET /oidc/callback/ HTTP/1.1"' in written  # gunicorn's line
    assert '"path": "/oidc/callback/"' in written  # the hub's own JSON line
    assert "secret" not in written
