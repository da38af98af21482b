"""The rule's clock: plan administrators hear of requests due soon and overdue, once each, by
mail and webhook (exchange/deadlines.py; CMS-0057-F's one week)."""

from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from exchange.deadlines import deadlines_alert
from exchange.models import ExchangeRequest, ExchangeStatus, WebhookEndpoint, WebhookMessage
from exchange.webhooks.events import REQUEST_DUE_SOON, REQUEST_OVERDUE
from hub.models import AuditEvent
from tests.conftest import Tenant
from tests.factories import ConsentFactory, ExchangeRequestFactory, WebhookEndpointFactory

S = ExchangeStatus


def _request(owner: Tenant, former: Tenant, *, due_in: timedelta, status: str) -> ExchangeRequest:
    opted_in_at = timezone.now() + due_in - timedelta(days=7)
    exchange_request: ExchangeRequest = ExchangeRequestFactory(
        consent=ConsentFactory(member=owner.member, former_payer=former.payer),
        status=status,
        opted_in_at=opted_in_at,
    )
    return exchange_request


@pytest.fixture
def admins_with_mail(north: Tenant, south: Tenant, settings: Settings) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.EXCHANGE_DUE_SOON_HOURS = 48
    for tenant in (north, south):
        tenant.admin.email = f"{tenant.admin.username}@{tenant.payer.slug}.example"
        tenant.admin.save()
        tenant.member.last_name = "Quinterra"
        tenant.member.save()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("admins_with_mail")
def test_requests_due_soon_and_overdue_are_told_once_to_their_own_payer(
    north: Tenant, south: Tenant
) -> None:
    endpoint: WebhookEndpoint = WebhookEndpointFactory(
        payer=north.payer, event_types=[REQUEST_DUE_SOON, REQUEST_OVERDUE]
    )
    due_soon = _request(north, south, due_in=timedelta(hours=10), status=S.RETRIEVING)
    _request(north, south, due_in=timedelta(days=5), status=S.MATCHING)  # not yet
    overdue = _request(north, south, due_in=-timedelta(hours=3), status=S.FAILED)
    _request(north, south, due_in=-timedelta(hours=3), status=S.DELIVERED)  # owed nothing
    south_due = _request(south, north, due_in=timedelta(hours=1), status=S.DELIVERING)

    told = deadlines_alert(now=timezone.now())

    assert told == {REQUEST_DUE_SOON: 2, REQUEST_OVERDUE: 1}
    by_subject = {message.subject: message for message in mail.outbox}
    assert set(by_subject) == {
        f"{north.payer.name}: 1 payer-to-payer request due soon",
        f"{north.payer.name}: 1 payer-to-payer request overdue",
        f"{south.payer.name}: 1 payer-to-payer request due soon",
    }
    north_soon = by_subject[f"{north.payer.name}: 1 payer-to-payer request due soon"]
    assert north_soon.to == [north.admin.email]
    assert f"Request {due_soon.pk}: retrieving, due by" in north_soon.body
    assert (
        f"Request {overdue.pk}: failed"
        in by_subject[f"{north.payer.name}: 1 payer-to-payer request overdue"].body
    )
    south_mail = by_subject[f"{south.payer.name}: 1 payer-to-payer request due soon"]
    assert south_mail.to == [south.admin.email]
    assert f"Request {south_due.pk}:" in south_mail.body
    # No PHI in what leaves: ids, states and dates only.
    assert "Quinterra" not in north_soon.body
    assert all(
        "Quinterra" not in str(m.payload) for m in WebhookMessage.objects.for_payer(north.payer)
    )

    messages = WebhookMessage.objects.for_payer(north.payer).filter(endpoint=endpoint)
    assert sorted((m.event_type, m.payload["data"]["request_id"]) for m in messages) == sorted(
        [(REQUEST_DUE_SOON, due_soon.pk), (REQUEST_OVERDUE, overdue.pk)]
    )
    assert (
        AuditEvent.objects.for_payer(north.payer)
        .filter(action="exchange_request.overdue", object_id=str(overdue.pk))
        .exists()
    )

    # The beat runs again (or twice at once): nothing is told twice.
    assert deadlines_alert(now=timezone.now()) == {REQUEST_DUE_SOON: 0, REQUEST_OVERDUE: 0}
    assert len(mail.outbox) == 3
    assert messages.count() == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("admins_with_mail")
def test_a_request_told_due_soon_is_told_again_when_it_becomes_overdue(
    north: Tenant, south: Tenant
) -> None:
    exchange_request = _request(north, south, due_in=timedelta(hours=1), status=S.SCREENING)
    deadlines_alert(now=timezone.now())

    assert deadlines_alert(now=timezone.now() + timedelta(hours=2)) == {
        REQUEST_DUE_SOON: 0,
        REQUEST_OVERDUE: 1,
    }
    exchange_request.refresh_from_db()
    assert exchange_request.due_soon_alerted_at is not None
    assert exchange_request.overdue_alerted_at is not None
    assert [m.subject.split(" request ")[-1] for m in mail.outbox] == ["due soon", "overdue"]


def test_every_portal_page_shows_the_payer_s_own_requests_due_soon_and_overdue(
    north: Tenant, south: Tenant, settings: Settings
) -> None:
    settings.EXCHANGE_DUE_SOON_HOURS = 48
    _request(north, south, due_in=-timedelta(hours=1), status=S.RETRIEVING)
    _request(north, south, due_in=-timedelta(days=2), status=S.FAILED)
    _request(north, south, due_in=timedelta(hours=20), status=S.CONSENTED)
    _request(north, south, due_in=timedelta(hours=20), status=S.DELIVERED)  # done: not owed
    _request(north, south, due_in=timedelta(days=5), status=S.CONSENTED)  # not due soon yet
    _request(south, north, due_in=-timedelta(hours=1), status=S.MATCHING)  # South's own
    north_admin, south_admin = Client(), Client()
    north_admin.force_login(north.admin)
    south_admin.force_login(south.admin)

    north_page = north_admin.get("/p/north/admin/directory/").content.decode()
    south_page = south_admin.get("/p/south/admin/").content.decode()

    assert "2 requests are overdue" in north_page and "?overdue=on" in north_page
    assert "1 request is due within 48 hours" in north_page
    assert "1 request is overdue" in south_page and "due within" not in south_page
