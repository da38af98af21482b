"""Words an administrator acts on: one label per status and reason on every page and in the CSV,
a timeline in the administrator's voice, human durations, and filters that never widen.
"""

import csv
import io
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from exchange.models import ExchangeEvent, ExchangeRequest, ExchangeStatus
from exchange.screening.reasons import QUARANTINE_CODE, RemovalReason
from hub.models import User
from plan_admin.durations import duration_text
from plan_admin.labels import removal_reason_label, status_label, status_tone
from tests.conftest import Tenant
from tests.factories import ExchangeRequestFactory, FhirEndpointFactory, UserFactory
from tests.plan_admin.conftest import admin_url


def _request(tenant: Tenant, former: object, **fields: object) -> ExchangeRequest:
    return ExchangeRequestFactory(
        consent__member=UserFactory(payer=tenant.payer, first_name="Ada", last_name="Lovelace"),
        consent__former_payer=former, **fields,
    )  # fmt: skip


def _csv(response: object) -> list[dict[str, str]]:
    text = b"".join(response.streaming_content).decode()
    header, *rows = list(csv.reader(io.StringIO(text)))
    return [dict(zip(header, row, strict=True)) for row in rows]


def _event(request: ExchangeRequest, status: str, message: str, **data: object) -> None:
    ExchangeEvent.objects.create(payer_id=request.payer_id, exchange_request=request,
                                 status=status, message=message, data=data)  # fmt: skip


@pytest.mark.parametrize(
    ("duration", "words"),
    [
        (timedelta(seconds=11.428048), "11 seconds"),
        (timedelta(seconds=0.4), "under a second"),
        (timedelta(minutes=1, seconds=5), "1 minute 5 seconds"),
        (timedelta(days=2, hours=3, minutes=59), "2 days 3 hours"),
        (timedelta(days=2, minutes=5), "2 days"),
        (None, "—"),
    ],
)
def test_durations_read_as_words(duration: timedelta | None, words: str) -> None:
    assert duration_text(duration) == words


def test_a_withdrawn_request_reads_the_same_on_the_list_filter_detail_and_csv(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    withdrawn = _request(north, south.payer, status=ExchangeStatus.REVOKED,
                         reason_code="consent_withdrawn")  # fmt: skip
    client = signed_in(north.admin)
    label, reason = "Consent withdrawn", "Member withdrew consent"

    listed = client.get(admin_url("request-list"), {"status": "revoked"})
    page = listed.content.decode()
    assert f'<option value="revoked" selected>{label}</option>' in page
    assert f">{label}</span>" in page and reason in page
    assert "(consent_withdrawn)" not in page  # the code is secondary text, not the label
    assert "<code" in page and "consent_withdrawn" in page

    detail = client.get(admin_url("request-detail", request_id=withdrawn.pk)).content.decode()
    assert f">{label}</span>" in detail and reason in detail

    [row] = _csv(client.get(admin_url("request-export"), {"status": "revoked"}))
    assert (row["status"], row["status code"]) == (label, "revoked")
    assert (row["reason"], row["reason code"]) == (reason, "consent_withdrawn")


def test_the_timeline_speaks_to_the_administrator_about_the_state_reached(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    request = _request(north, south.payer, status=ExchangeStatus.REVOKED,
                       reason_code="consent_withdrawn",
                       resource_counts={"ExplanationOfBenefit": 200, "Coverage": 15},
                       screened_out_counts={"outside-five-year-window": 4})  # fmt: skip
    _event(request, ExchangeStatus.CONSENTED, "You agreed that Southern Cross Health may share.")
    _event(request, ExchangeStatus.SCREENING, "We received your records.", **{"from": "retrieving"})
    _event(request, ExchangeStatus.PACKAGING, "We checked your records.", **{"from": "screening"})
    _event(request, ExchangeStatus.REVOKED, "You withdrew your consent.",
           **{"from": "packaging", "reason": "consent_withdrawn"})  # fmt: skip
    page = (
        signed_in(north.admin)
        .get(admin_url("request-detail", request_id=request.pk))
        .content.decode()
    )
    for words in (
        "Member opted in and consented to the exchange with Southern Cross Health",
        "Records fetched from Southern Cross Health: 215 resources",
        "Records screened: 211 resources kept, 4 screened out",
        "Member withdrew consent",
        "Date of service more than five years back",
    ):
        assert words in page, words
    for member_voice in ("You withdrew", "You agreed", "We received"):
        assert member_voice not in page
    assert "<time datetime=" in page


def test_the_detail_page_tells_how_long_a_request_took_in_words(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    opted_in = timezone.now() - timedelta(days=2, hours=3, minutes=10)
    request = _request(north, south.payer, status=ExchangeStatus.DELIVERED,
                       opted_in_at=opted_in, status_changed_at=timezone.now())  # fmt: skip
    page = (
        signed_in(north.admin)
        .get(admin_url("request-detail", request_id=request.pk))
        .content.decode()
    )
    assert "Delivered 2 days 3 hours after the member opted in." in page


@pytest.mark.parametrize(
    ("bad_filter", "field", "kept"),
    [
        ({"opted_in_from": "2025-02-01", "opted_in_to": "2025-01-01"}, "opted_in_to", "2025-01-01"),
        ({"opted_in_from": "not-a-date"}, "opted_in_from", "not-a-date"),
        ({"status": "no-such-status"}, "status", ""),
    ],
)
def test_an_invalid_filter_lists_nothing_and_exports_nothing(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client],
    bad_filter: dict[str, str], field: str, kept: str,
) -> None:  # fmt: skip
    _request(north, south.payer)
    client = signed_in(north.admin)
    response = client.get(admin_url("request-list"), bad_filter)
    page = response.content.decode()
    assert response.status_code == 400
    assert list(response.context["page"]) == []
    assert "The filter is not valid, so no request is listed" in page
    assert "export.csv" not in page  # no link that would export something else
    # The summary links each problem to its field, which keeps what was typed.
    assert f'href="#id_{field}"' in page
    assert f'value="{kept}"' in page

    export = client.get(admin_url("request-export"), bad_filter)
    assert export.status_code == 400 and b"nothing was exported" in export.content


def test_the_csv_link_carries_exactly_the_list_s_filter(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    failed = _request(north, south.payer, status=ExchangeStatus.FAILED, reason_code="no_endpoint")
    _request(north, south.payer, status=ExchangeStatus.DELIVERED)
    client = signed_in(north.admin)
    response = client.get(admin_url("request-list"), {"status": "failed", "page": "1"})
    export = response.context["export_query"]
    assert export.dict() == {"status": "failed"}
    rows = _csv(client.get(admin_url("request-export"), export))
    assert [row["request id"] for row in rows] == [str(failed.pk)]


def test_htmx_filters_answer_with_the_results_only(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    _request(north, south.payer, status=ExchangeStatus.FAILED)
    response = signed_in(north.admin).get(
        admin_url("request-list"), {"status": "failed"}, headers={"HX-Request": "true"}
    )
    page = response.content.decode()
    assert page.lstrip().startswith('<div id="request-results"')
    assert "<html" not in page and "1 request" in page
    # Each filter field comes along out of band, so its error (or its lack of one) shows.
    assert 'id="id_status-group" hx-swap-oob="true"' in page


def test_htmx_test_button_answers_with_its_report_only(
    north: Tenant, signed_in: Callable[[User], Client]
) -> None:
    response = signed_in(north.admin).post(
        admin_url("settings-test", part="fhir-endpoint"), headers={"HX-Request": "true"}
    )
    page = response.content.decode()
    assert "<html" not in page
    assert "Test failed" in page and "Save the FHIR endpoint first" in page


def test_htmx_host_key_fetch_reports_and_refills_only_the_host_key_field(
    north: Tenant, signed_in: Callable[[User], Client]
) -> None:
    response = signed_in(north.admin).post(
        admin_url("sftp-host-key"), {"host": "10.0.0.5", "port": "22"},
        headers={"HX-Request": "true"},
    )  # fmt: skip
    page = response.content.decode()
    assert response.status_code == 400 and "<html" not in page
    assert "Test failed" in page and "private or reserved network address" in page
    assert 'id="sftp-destination-host_key-group" hx-swap-oob="true"' in page


def test_a_payer_that_delivered_to_us_shows_as_working_in_the_directory(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    FhirEndpointFactory(payer=south.payer, capabilities_checked_at=None)
    client = signed_in(north.admin)
    assert (
        "Endpoint registered, waiting for its first probe"
        in client.get(admin_url("directory")).content.decode()
    )
    _request(north, south.payer, status=ExchangeStatus.DELIVERED)
    page = client.get(admin_url("directory")).content.decode()
    assert "Working: records delivered" in page
    assert "waiting for its first probe" not in page


def test_every_screening_rule_and_status_has_its_own_words() -> None:
    """A new rule or state must be named on purpose, not fall back to its spelled-out code."""
    for reason in [*RemovalReason, QUARANTINE_CODE]:
        assert removal_reason_label(reason) != reason.replace("-", " ").capitalize(), reason
    for status in ExchangeStatus:
        assert status_label(status) == status.label
        assert status_tone(status) in {"success", "problem", "ended", "active"}
