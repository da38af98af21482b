"""The request pages: filters, search, sort, pages without N+1, CSV export, detail, retry, cancel."""

import csv
import io
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from exchange.models import ExchangeEvent, ExchangeRequest, ExchangeStatus
from hub.celery import app as celery_app
from hub.models import AuditEvent, PayerStatus, User
from tests.conftest import Tenant
from tests.factories import (
    DeliveryAttemptFactory,
    DeliveryFactory,
    ExchangeRequestFactory,
    PayerFactory,
    UserFactory,
)
from tests.plan_admin.conftest import admin_url


def _request(tenant: Tenant, former: object, **fields: object) -> ExchangeRequest:
    member = fields.pop("member", None) or UserFactory(payer=tenant.payer)
    return ExchangeRequestFactory(consent__member=member, consent__former_payer=former, **fields)


def _ids(response: object) -> list[int]:
    return [r.pk for r in response.context["page"]]


@pytest.fixture
def west(db: None) -> object:
    return PayerFactory(slug="west", name="West Coast Health")


def test_the_list_shows_only_our_requests_newest_first(
    north: Tenant, south: Tenant, west: object, signed_in: Callable[[User], Client]
) -> None:
    now = timezone.now()
    older = _request(north, south.payer, opted_in_at=now - timedelta(days=3))
    newer = _request(north, west, opted_in_at=now - timedelta(days=1))
    _request(south, north.payer)  # South's own request, with North as the former payer
    response = signed_in(north.admin).get(admin_url("request-list"))
    assert _ids(response) == [newer.pk, older.pk]


def test_the_former_payer_filter_offers_the_other_participating_payers_only(
    north: Tenant, south: Tenant, west: object, signed_in: Callable[[User], Client]
) -> None:
    PayerFactory(slug="east", name="Eastern Invited Plan", status=PayerStatus.INVITED)
    form = signed_in(north.admin).get(admin_url("request-list")).context["filter_form"]
    offered = {payer.slug for payer in form.fields["former_payer"].queryset}
    assert offered == {"south", "west"}


def test_filters_search_and_sort(
    north: Tenant, south: Tenant, west: object, signed_in: Callable[[User], Client]
) -> None:
    now = timezone.now()
    ada = UserFactory(payer=north.payer, username="ada", first_name="Ada", last_name="Lovelace")
    failed = _request(north, south.payer, status=ExchangeStatus.FAILED, member=ada,
                      opted_in_at=now - timedelta(days=20))  # fmt: skip
    overdue = _request(north, west, status=ExchangeStatus.RETRIEVING,
                       opted_in_at=now - timedelta(days=9))  # fmt: skip
    ended_late = _request(north, west, status=ExchangeStatus.DELIVERED,
                          opted_in_at=now - timedelta(days=10))  # fmt: skip
    fresh = _request(north, south.payer, opted_in_at=now - timedelta(hours=1))
    client = signed_in(north.admin)
    get = lambda **q: _ids(client.get(admin_url("request-list"), q))  # noqa: E731

    assert get(status="failed") == [failed.pk]
    assert get(former_payer=west.pk) == [overdue.pk, ended_late.pk]
    # Overdue: past due and not ended (a delivered request is never overdue).
    assert set(get(overdue="on")) == {overdue.pk, failed.pk}
    assert get(member="lovel") == [failed.pk]
    assert get(member="ADA") == [failed.pk]
    day = (now - timedelta(days=9)).date().isoformat()
    assert get(opted_in_from=day, opted_in_to=day) == [overdue.pk]
    assert get(sort="opted_in_at") == [failed.pk, ended_late.pk, overdue.pk, fresh.pk]
    assert get(sort="due_by")[0] == failed.pk
    # A bad filter is reported and lists nothing, rather than everything.
    response = client.get(
        admin_url("request-list"), {"opted_in_from": "2025-02-01", "opted_in_to": "2025-01-01"}
    )
    assert "The end of the date range is before its start." in response.content.decode()
    assert _ids(response) == []


def test_pages_take_the_same_few_queries_whatever_their_size(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    client = signed_in(north.admin)
    _request(north, south.payer)
    with CaptureQueriesContext(connection) as one_row:
        assert client.get(admin_url("request-list")).status_code == 200
    for _ in range(59):
        _request(north, south.payer)
    with CaptureQueriesContext(connection) as full_page:
        first = client.get(admin_url("request-list"))
    assert len(full_page) == len(one_row)
    assert len(_ids(first)) == 50
    second = client.get(admin_url("request-list"), {"page": 2})
    assert len(_ids(second)) == 10
    assert 'rel="prev"' in second.content.decode()


def test_csv_export_streams_the_filtered_list(
    north: Tenant, south: Tenant, west: object, signed_in: Callable[[User], Client]
) -> None:
    ada = UserFactory(payer=north.payer, username="ada", first_name="Ada", last_name="Lovelace")
    mine = _request(
        north, south.payer, member=ada, status=ExchangeStatus.FAILED, reason_code="no_endpoint"
    )
    _request(north, west)
    _request(south, north.payer)
    response = signed_in(north.admin).get(
        admin_url("request-export"), {"former_payer": south.payer.pk}
    )
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="requests-north-' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:3] == ["request id", "status", "status code"]
    assert len(rows) == 2
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["request id"] == str(mine.pk)
    assert (row["status"], row["status code"], row["member last name"]) == (
        "Failed",
        "failed",
        "Lovelace",
    )
    assert (row["reason"], row["reason code"]) == (
        "The former payer has no FHIR endpoint",
        "no_endpoint",
    )
    assert row["former payer"] == "Southern Cross Health"
    assert "CARD-0001" not in str(rows)  # the card number never leaves the database


def test_the_detail_page_shows_timeline_counts_attempts_and_files(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    request = _request(
        north, south.payer, status=ExchangeStatus.DELIVERED,
        resource_counts={"ExplanationOfBenefit": 12},
        screened_out_counts={"outside-five-year-window": 3},
    )  # fmt: skip
    ExchangeEvent.objects.create(payer=north.payer, exchange_request=request,
                                 status=ExchangeStatus.MATCHING, message="Asked the former payer.")  # fmt: skip
    delivery = DeliveryFactory(exchange_request=request, status="delivered", manifest={
        "files": [{"name": "bundle.json", "size": 2048, "sha256": "ab" * 32}]})  # fmt: skip
    DeliveryAttemptFactory(delivery=delivery, succeeded=False, error_code="host_key_mismatch",
                           error_message="The server's host key changed.")  # fmt: skip
    page = (
        signed_in(north.admin)
        .get(admin_url("request-detail", request_id=request.pk))
        .content.decode()
    )
    for text in ("Asked Southern Cross Health to find the member", "ExplanationOfBenefit",
                 "Date of service more than five years back", "outside-five-year-window",
                 "host_key_mismatch", "bundle.json", "ab" * 32, "2048"):  # fmt: skip
        assert text in page
    assert "Asked the former payer." not in page  # the member's voice, not the administrator's
    assert "Retry</button>" not in page and "Cancel the request</button>" not in page


def test_retry_starts_a_failed_request_over_and_is_audited(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:  # fmt: skip
    request = _request(north, south.payer, status=ExchangeStatus.FAILED, reason_code="timeout")
    client = signed_in(north.admin)
    assert (
        "Retry</button>"
        in client.get(admin_url("request-detail", request_id=request.pk)).content.decode()
    )
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            admin_url("request-action", request_id=request.pk, action="retry"), follow=True
        )
    assert "starts over" in response.content.decode()
    request.refresh_from_db()
    assert (request.status, request.reason_code) == (ExchangeStatus.CONSENTED, "")
    assert len(callbacks) == 1  # the engine is handed the request only once the move is committed
    event = request.events.get()
    assert event.status == ExchangeStatus.CONSENTED and "nora-admin" in event.message
    audit = AuditEvent.objects.for_payer(north.payer).get(action="exchange_request.retry")
    assert (audit.actor, audit.object_id) == (north.admin, str(request.pk))

    again = client.post(
        admin_url("request-action", request_id=request.pk, action="retry"), follow=True
    )
    assert "Only a failed request can be retried." in again.content.decode()
    assert (
        AuditEvent.objects.for_payer(north.payer).filter(action="exchange_request.retry").count()
        == 1
    )


def test_cancel_stops_a_running_request_but_not_an_ended_one(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    running = _request(north, south.payer, status=ExchangeStatus.RETRIEVING)
    delivered = _request(north, south.payer, status=ExchangeStatus.DELIVERED)
    client = signed_in(north.admin)
    client.post(admin_url("request-action", request_id=running.pk, action="cancel"))
    running.refresh_from_db()
    assert (running.status, running.reason_code) == (ExchangeStatus.CANCELLED, "cancelled_by_payer")
    assert AuditEvent.objects.for_payer(north.payer).get(action="exchange_request.cancel").changes["status"] == {
        "before": "retrieving", "after": "cancelled"}  # fmt: skip

    refused = client.post(
        admin_url("request-action", request_id=delivered.pk, action="cancel"), follow=True
    )
    assert "already ended (delivered)" in refused.content.decode()
    delivered.refresh_from_db()
    assert delivered.status == ExchangeStatus.DELIVERED
    assert (
        AuditEvent.objects.for_payer(north.payer).filter(action="exchange_request.cancel").count()
        == 1
    )


def test_an_unknown_action_is_a_404_and_changes_nothing(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    request = _request(north, south.payer, status=ExchangeStatus.FAILED)
    url = admin_url("request-action", request_id=request.pk, action="delete")
    assert signed_in(north.admin).post(url).status_code == 404
    request.refresh_from_db()
    assert request.status == ExchangeStatus.FAILED


def test_a_retried_request_is_handed_to_the_engine_through_the_real_broker(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:  # fmt: skip
    request = _request(north, south.payer, status=ExchangeStatus.FAILED)
    with celery_app.connection_for_write() as broker:
        channel = broker.default_channel
        channel.queue_purge("default")
        with django_capture_on_commit_callbacks(execute=True):
            signed_in(north.admin).post(
                admin_url("request-action", request_id=request.pk, action="retry")
            )
        message = channel.client.rpop("default")
        channel.queue_purge("default")
    assert message is not None, "nothing was enqueued"
    headers = json.loads(message)["headers"]
    assert headers["task"] == "exchange.advance"
    assert headers["argsrepr"] == repr((request.pk, north.payer.pk))


def test_csv_export_defuses_cells_a_spreadsheet_would_run_as_formulas(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    # Names come from each payer's identity provider: text the hub does not control.
    mallory = UserFactory(payer=north.payer, first_name='=HYPERLINK("http://x.example")',
                          last_name="@SUM(A1)")  # fmt: skip
    _request(north, south.payer, member=mallory)
    response = signed_in(north.admin).get(admin_url("request-export"))
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["member first name"] == '\'=HYPERLINK("http://x.example")'
    assert row["member last name"] == "'@SUM(A1)"
    assert row["former payer"] == "Southern Cross Health"


def test_with_htmx_an_action_answers_with_a_full_reload_of_the_detail_page(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    # htmx shows the progress while the action runs, then the page loads afresh.
    running = _request(north, south.payer, status=ExchangeStatus.RETRIEVING)
    client = signed_in(north.admin)
    detail = admin_url("request-detail", request_id=running.pk)
    response = client.post(
        admin_url("request-action", request_id=running.pk, action="cancel"),
        headers={"HX-Request": "true"},
    )
    assert response["HX-Redirect"] == detail
    running.refresh_from_db()
    assert running.status == ExchangeStatus.CANCELLED
    assert "The request is cancelled." in client.get(detail).content.decode()
