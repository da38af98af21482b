"""The compliance page's figures (CMS-0057-F) and the former-payer view."""

from collections.abc import Callable
from datetime import timedelta

from django.test import Client
from django.utils import timezone

from exchange.models import ExchangeEvent, ExchangeRequest, ExchangeStatus
from hub.models import User
from plan_admin.selectors import compliance_summary, former_payer_summary
from tests.conftest import Tenant
from tests.factories import DeliveryFactory, ExchangeRequestFactory, PayerFactory, UserFactory
from tests.plan_admin.conftest import admin_url


def _request(
    tenant: Tenant, former: object, *, days_ago: float, **fields: object
) -> ExchangeRequest:
    opted_in = timezone.now() - timedelta(days=days_ago)
    return ExchangeRequestFactory(
        consent__member=UserFactory(payer=tenant.payer), consent__former_payer=former,
        opted_in_at=opted_in, **fields,
    )  # fmt: skip


def _asked(request: ExchangeRequest, *, after_days: float) -> None:
    event = ExchangeEvent.objects.create(payer_id=request.payer_id, exchange_request=request,
                                         status=ExchangeStatus.MATCHING, message="Asked.")  # fmt: skip
    ExchangeEvent.objects.for_payer(request.payer_id).filter(pk=event.pk).update(
        created_at=request.opted_in_at + timedelta(days=after_days)
    )


def _delivered(request: ExchangeRequest, *, after_hours: float) -> None:
    delivered_at = request.opted_in_at + timedelta(hours=after_hours)
    ExchangeRequest.objects.for_payer(request.payer_id).filter(pk=request.pk).update(
        status=ExchangeStatus.DELIVERED, status_changed_at=delivered_at
    )
    DeliveryFactory(exchange_request=request, status="delivered", delivered_at=delivered_at)


def test_compliance_figures_follow_the_one_week_rule(north: Tenant, south: Tenant) -> None:
    on_time = [_request(north, south.payer, days_ago=30) for _ in range(4)]
    for request, hours in zip(on_time, (1, 2, 3, 10), strict=True):
        _asked(request, after_days=0.01)
        _delivered(request, after_hours=hours)
    late = _request(north, south.payer, days_ago=20)
    _asked(late, after_days=8)
    never_asked = _request(north, south.payer, days_ago=10, status=ExchangeStatus.FAILED,
                           reason_code="endpoint_unreachable")  # fmt: skip
    pending = _request(north, south.payer, days_ago=1)  # its week is not over yet
    _request(north, south.payer, days_ago=200)  # outside the period
    _request(south, north.payer, days_ago=3)  # South's, never counted for North

    summary = compliance_summary(payer=north.payer, since=timezone.now() - timedelta(days=90))
    assert (summary.opened, summary.requested_on_time, summary.requested_late) == (7, 4, 1)
    assert summary.not_requested_past_due == 1
    assert summary.judged == 6 and round(summary.on_time_percent or 0, 1) == 66.7
    # Overdue now: past due and not ended: the late one and the failed one (failed can be retried).
    assert summary.overdue_now == 2
    assert summary.delivered == 4
    # Nearest rank over 1, 2, 3, 10 hours: the median is the 2nd, the 90th percentile the 4th.
    assert summary.median_to_delivery == timedelta(hours=2)
    assert summary.p90_to_delivery == timedelta(hours=10)
    # A code without a label yet still reads as words, never as the bare code.
    assert summary.failures_by_reason == [("Endpoint unreachable", 1)]
    assert dict(summary.outcomes)["Delivered"] == 4
    assert sum(n for _, n in summary.deliveries_per_week) == 4
    assert len(summary.deliveries_per_week) == 12
    assert pending.status == ExchangeStatus.CONSENTED
    assert never_asked.status == ExchangeStatus.FAILED


def test_the_compliance_page_draws_charts_with_their_numbers(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    _request(
        north, south.payer, days_ago=12, status=ExchangeStatus.FAILED, reason_code="no_endpoint"
    )
    page = signed_in(north.admin).get(admin_url("compliance"), {"days": "30"}).content.decode()
    assert "<svg" in page and 'role="img"' in page
    assert "The former payer has no FHIR endpoint" in page
    assert "?overdue=on" in page
    empty = signed_in(north.admin).get(admin_url("compliance"), {"days": "7000"})
    assert empty.context["period"] == "90"  # an unknown period falls back to the default


def test_requests_to_us_as_former_payer_show_status_and_dates_only(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    west = PayerFactory(slug="west", name="West Coast Health")
    sue = UserFactory(payer=south.payer, username="sue-private", first_name="Suzanne")
    ExchangeRequestFactory(consent__member=sue, consent__former_payer=north.payer,
                           status=ExchangeStatus.DELIVERED)  # fmt: skip
    _request(south, north.payer, days_ago=2, status=ExchangeStatus.NO_MATCH)
    ExchangeRequestFactory(
        consent__member=UserFactory(payer=west), consent__former_payer=north.payer
    )
    _request(north, south.payer, days_ago=1)  # ours, to South: not a request *to* us

    summary = former_payer_summary(payer=north.payer)
    assert summary.total == 3
    assert dict(summary.by_requesting_payer) == {"Southern Cross Health": 2, "West Coast Health": 1}
    assert dict(summary.outcomes) == {"Delivered": 1, "Member not found at the former payer": 1,
                                      "Consented": 1}  # fmt: skip
    page = signed_in(north.admin).get(admin_url("as-former-payer")).content.decode()
    assert "Southern Cross Health" in page and "Member not found at the former payer" in page
    assert "sue-private" not in page and "Suzanne" not in page and "CARD-0001" not in page
