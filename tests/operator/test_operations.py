"""The operations view: queue depths from the real broker, requests failing or stuck by former
payer, the rule's clock across payers, the SFTP repository's uncollected files and space; only
hub operators reach it, a broker that is down is a sentence, and its queries do not grow with
the payers it shows."""

import re
from datetime import timedelta
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from celery import current_app
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from exchange import operations
from exchange.models import ExchangeRequest
from exchange.repository.services import (
    repository_file_record_delivered,
    repository_file_record_read,
)
from exchange.repository.storage import repository_storage, repository_storage_name
from hub.models import AuditEvent, Payer, User
from tests.conftest import Tenant
from tests.exchange.repository.conftest import register_system_key
from tests.factories import ExchangeRequestFactory, PayerFactory, UserFactory
from tests.support.net import free_loopback_port
from tests.support.sessions import signed_in

PAGE = "/operator/operations/"


@pytest.fixture(autouse=True)
def _repository_dir(settings: Settings, tmp_path: Path) -> None:
    # Not made yet: the page reads the volume it will be made on.
    settings.SFTP_REPOSITORY_DIR = tmp_path / "repository"


def _request(requester: Payer, former: Payer, **values: Any) -> ExchangeRequest:
    return ExchangeRequestFactory(
        consent__member=UserFactory(payer=requester),
        consent__former_payer=former,
        **values,
    )


def _row(page: str, row_id: str) -> str:
    """Return the text of the table row ``row_id``, tags dropped and spaces squeezed."""
    match = re.search(rf'<tr id="{row_id}">(.*?)</tr>', page, re.S)
    assert match, f"no row {row_id} on the page"
    text = " ".join(unescape(re.sub(r"<[^>]+>", " ", match.group(1))).split())
    return text.replace(" ,", ",")


def _link(page: str, row_id: str, css_class: str) -> str:
    match = re.search(rf'<tr id="{row_id}">.*?class="{css_class}" href="([^"]+)"', page, re.S)
    assert match, f"no {css_class} in row {row_id}"
    return unescape(match.group(1))


def _listed_ids(console: Client, url: str) -> set[int]:
    page = console.get(url)
    assert page.status_code == 200, url
    return {row.pk for row in page.context["cl"].result_list}


def test_queue_depths_are_read_from_the_real_broker(console: Client) -> None:
    with current_app.connection_for_write() as broker:
        queue = broker.SimpleQueue("screen")
        queue.clear()
        try:
            for n in range(3):
                queue.put({"n": n})
            page = console.get(PAGE).content.decode()
        finally:
            queue.clear()
            queue.close()
    assert _row(page, "queue-screen") == "screen 3"
    # Nothing waits in the others (Redis keeps no list for an empty queue).
    for name in ("default", "pull", "deliver", "bulk"):
        assert _row(page, f"queue-{name}") == f"{name} 0"


def test_a_broker_that_is_down_is_a_sentence_and_the_rest_of_the_page_still_shows(
    console: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_loopback_port()  # nothing listens there
    monkeypatch.setattr(current_app.conf, "broker_read_url", f"redis://127.0.0.1:{port}/0")
    response = console.get(PAGE)
    assert response.status_code == 200
    page = response.content.decode()
    assert f"The Celery broker (redis at 127.0.0.1:{port}) cannot be reached" in page
    assert "check that it runs and that CELERY_BROKER_URL points at it" in page
    assert 'id="queue-' not in page
    assert 'id="no-troubles"' in page and 'id="space"' in page


def test_failing_and_stuck_requests_are_grouped_by_former_payer_with_the_last_error(
    console: Client, olga: User, north: Tenant, south: Tenant
) -> None:
    west = PayerFactory(slug="west", name="Western Plains Health")
    now = timezone.now()
    ago = lambda **delta: now - timedelta(**delta)  # noqa: E731
    # Two failures at South, the later one shown; one from too long ago, one not failed.
    earlier = _request(north.payer, south.payer, status="failed", status_changed_at=ago(days=2),
                       reason_code="auth", reason_message="The token was refused.")  # fmt: skip
    latest = _request(north.payer, south.payer, status="failed", status_changed_at=ago(hours=3),
                      reason_code="fhir_5xx", reason_message="South's server answered 503.")  # fmt: skip
    _request(north.payer, south.payer, status="failed", status_changed_at=ago(days=9))
    _request(north.payer, south.payer, status="delivered")
    # Stuck: in flight and not moved for longer than EXCHANGE_STUCK_AFTER_SECONDS (900 s).
    stuck_south = _request(north.payer, south.payer, status="retrieving",
                           last_progress_at=ago(hours=2))  # fmt: skip
    oldest_west = _request(south.payer, west, status="delivering", last_progress_at=ago(hours=5))
    newer_west = _request(north.payer, west, status="matching", last_progress_at=ago(hours=1))
    # Not stuck: moving, waiting for the member, or driven by a bulk job.
    _request(north.payer, west, status="retrieving", last_progress_at=ago(seconds=30))
    _request(north.payer, west, status="awaiting_authorization", last_progress_at=ago(days=1))
    _request(north.payer, west, status="retrieving", last_progress_at=ago(hours=4),
             awaits_bulk_job=True)  # fmt: skip

    page = console.get(PAGE).content.decode()

    south_row = _row(page, "trouble-south")
    assert south_row.startswith("Southern Cross Health 2 ")
    assert f"Request {latest.pk} of North Star Health" in south_row
    assert "fhir_5xx South's server answered 503." in south_row
    assert "The token was refused." not in south_row
    assert f"1 Request {stuck_south.pk}, not moved since" in south_row
    west_row = _row(page, "trouble-west")
    assert west_row.startswith("Western Plains Health 0 — 2 ")
    assert f"Request {oldest_west.pk}, not moved since" in west_row
    # The most troubled former payer first.
    assert page.index('id="trouble-south"') < page.index('id="trouble-west"')
    # Each count opens the console's list of exactly those requests.
    assert _listed_ids(console, _link(page, "trouble-south", "failed-link")) == {
        earlier.pk,
        latest.pk,
    }
    assert _listed_ids(console, _link(page, "trouble-south", "stuck-link")) == {stuck_south.pk}
    assert _listed_ids(console, _link(page, "trouble-west", "stuck-link")) == {
        oldest_west.pk,
        newer_west.pk,
    }
    # Metadata only: the card's member id is never shown.
    assert "CARD-0001" not in page
    # The look is recorded in each payer's own audit trail.
    for payer in (north.payer, south.payer, west):
        looks = AuditEvent.objects.for_payer(payer).filter(action="operator.look", actor=olga)
        assert looks.filter(changes={"page": "operations view"}).count() == 1


def test_due_soon_and_overdue_are_counted_per_payer_and_in_all(
    console: Client, north: Tenant, south: Tenant
) -> None:
    now = timezone.now()
    overdue = _request(north.payer, south.payer, status="retrieving",
                       opted_in_at=now - timedelta(days=8), due_by=now - timedelta(days=1))  # fmt: skip
    failed_overdue = _request(north.payer, south.payer, status="failed",
                              opted_in_at=now - timedelta(days=9), due_by=now - timedelta(days=2))  # fmt: skip
    due_soon = _request(north.payer, south.payer, status="matching",
                        opted_in_at=now - timedelta(days=6), due_by=now + timedelta(hours=20))  # fmt: skip
    # Delivered, or not due for days: not owed.
    _request(north.payer, south.payer, status="delivered",
             opted_in_at=now - timedelta(days=8), due_by=now - timedelta(days=1))  # fmt: skip
    _request(north.payer, south.payer, status="matching")
    south_overdue = _request(south.payer, north.payer, status="consented",
                             opted_in_at=now - timedelta(days=8), due_by=now - timedelta(hours=1))  # fmt: skip

    page = console.get(PAGE).content.decode()

    assert _row(page, "deadline-north") == "North Star Health 1 2"
    assert _row(page, "deadline-south") == "Southern Cross Health 0 1"
    assert _row(page, "deadline-total") == "All payers 1 3"
    assert _listed_ids(console, _link(page, "deadline-north", "overdue-link")) == {
        overdue.pk,
        failed_overdue.pk,
    }
    assert _listed_ids(console, _link(page, "deadline-north", "due-soon-link")) == {due_soon.pk}
    assert _listed_ids(console, _link(page, "deadline-south", "overdue-link")) == {south_overdue.pk}


def _delivered(tenant: Tenant, path: str, size: int) -> None:
    repository_storage().write_bytes(
        repository_storage_name(payer_slug=tenant.payer.slug, path=path), b"x" * size
    )
    repository_file_record_delivered(payer=tenant.payer, path=path, size=size, sha256="x")


def test_the_repository_shows_uncollected_files_per_payer_and_warns_when_space_is_low(
    console: Client, north: Tenant, south: Tenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _delivered(north, "south/1/bundle.json", 1500)
    _delivered(north, "south/1/manifest.json", 500)
    _delivered(south, "north/2/bundle.json", 700)
    # South's system collected its file: nothing of South's is left uncollected.
    south_system = register_system_key(south, tmp_path, "south-collector")
    repository_file_record_read(key=south_system.row, path="north/2/bundle.json", bytes_read=700,
                                complete=True, client_address="127.0.0.1")  # fmt: skip

    page = console.get(PAGE).content.decode()

    north_row = _row(page, "uncollected-north")
    assert north_row.startswith("North Star Health 2 2.0 KB ")
    assert 'id="uncollected-south"' not in page
    assert _row(page, "uncollected-total").startswith("All payers 2 2.0 KB")
    assert f"Volume holding {tmp_path / 'repository'}:" in page
    assert 'id="space-low"' not in page

    monkeypatch.setattr(operations, "SPACE_WARNING_FREE_PERCENT", 101)
    warned = console.get(PAGE).content.decode()
    assert "under the 101% warning line: deliveries into the repository fail" in warned


def test_the_console_index_links_to_the_page(console: Client) -> None:
    index = console.get("/operator/").content.decode()
    assert f'id="operations-link" href="{PAGE}"' in index


def test_nobody_of_a_payer_reaches_the_page(north: Tenant) -> None:
    for person in (north.admin, north.member):
        response = signed_in(person).get(PAGE)
        assert response.status_code == 302
        assert response["Location"].startswith("/operator/login/")
    assert Client().get(PAGE).status_code == 302
    assert not AuditEvent.objects.for_payer(north.payer).filter(action="operator.look").exists()


def _troubled_payer(n: int, other: Payer) -> None:
    """A payer with a failure and a stuck request at it, one overdue, one uncollected file."""
    payer = PayerFactory()
    now = timezone.now()
    _request(other, payer, status="failed", reason_code="x", reason_message="Failed.")
    _request(other, payer, status="screening", last_progress_at=now - timedelta(hours=1))
    _request(payer, other, status="matching", opted_in_at=now - timedelta(days=8),
             due_by=now - timedelta(days=1))  # fmt: skip
    repository_file_record_delivered(payer=payer, path=f"f/{n}.json", size=10, sha256="x")


# Session, operator and her authenticator; the failing and stuck requests, the last failures; the clock; the
# repository; the payers named; the looks recorded (one INSERT); the console's menu reads the
# operator's permissions (two).
OPERATIONS_PAGE_QUERIES = 3 + 2 + 1 + 1 + 1 + 1 + 2


@pytest.mark.parametrize("payers", [2, 12])
def test_the_page_runs_the_same_few_queries_for_2_payers_and_for_12(
    payers: int, console: Client, north: Tenant, django_assert_max_num_queries: Any
) -> None:
    for n in range(payers):
        _troubled_payer(n, north.payer)
    console.get("/operator/")  # her session's idle clock starts (written once a minute)
    with django_assert_max_num_queries(OPERATIONS_PAGE_QUERIES):
        page = console.get(PAGE).content.decode()
    assert page.count('id="trouble-') == payers
    assert page.count('id="uncollected-') == payers + 1  # and the total
