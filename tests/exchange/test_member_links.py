"""The email with a member's authorization link: sent once through a real mail server, after
the opt-in commits, by a real worker; retried on the schedule while the server is down;
not retried when the address is refused or the request no longer waits for the member; and
swept up when no task holds it (exchange/member_links/)."""

from datetime import date, timedelta
from email.message import Message
from typing import Any

import pytest
from celery.exceptions import Retry
from django.utils import timezone
from pytest_django.fixtures import Settings

from exchange.enrollment import Enrollee, OptInAttestation, OtherCoverage, opt_in_create
from exchange.member_links.sending import (
    RETRY_SCHEDULE,
    member_authorization_link_send,
    member_authorization_links_due,
)
from exchange.member_links.tasks import SWEEP_GRACE, member_authorization_links_sweep
from exchange.member_links.tasks import (
    member_authorization_link_send as member_authorization_link_send_task,
)
from exchange.models import (
    AuthorizationMode,
    ConsentPolicy,
    ExchangeRequest,
    ExchangeStatus,
    MemberAuthorizationLink,
    OptInMethod,
)
from exchange.services import exchange_request_withdraw
from hub.audit import ENGINE
from hub.models import AuditEvent, FhirEndpoint
from tests.conftest import Tenant
from tests.factories import ConsentFactory, ExchangeRequestFactory
from tests.support.celery_worker import running_worker, wait_for
from tests.support.net import free_loopback_port
from tests.support.smtp_server import SmtpServer, running_smtp_server

S = ExchangeStatus
EMAIL = "ned.member@mail.example"


def _waiting_link(owner: Tenant, former: Tenant, **link: Any) -> MemberAuthorizationLink:
    """A request of ``owner``'s member waiting for their sign-in at ``former``, and its link."""
    exchange_request: ExchangeRequest = ExchangeRequestFactory(
        consent=ConsentFactory(member=owner.member, former_payer=former.payer),
        authorization_mode=AuthorizationMode.MEMBER_AUTHORIZED,
        status=S.AWAITING_AUTHORIZATION,
    )
    return MemberAuthorizationLink.objects.create(
        payer=owner.payer, exchange_request=exchange_request, email=EMAIL, **link
    )


def _mail_to(settings: Settings, server: SmtpServer | None) -> None:
    """Send through Django's SMTP backend to ``server``, or to a port nobody listens on."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = server.port if server else free_loopback_port()


def _text(message: Message) -> str:
    """Return a received message's plain-text body, with the wire's CRLF as newlines."""
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode().replace("\r\n", "\n")


def _state(link: MemberAuthorizationLink) -> tuple[str, int]:
    link.refresh_from_db()
    return link.status, link.attempts


def test_a_link_goes_through_the_mail_server_once_and_is_audited(
    north: Tenant, south: Tenant, settings: Settings
) -> None:
    settings.HUB_PUBLIC_URL = "https://hub.example"
    link = _waiting_link(north, south)
    with running_smtp_server() as server:
        _mail_to(settings, server)
        outcome = member_authorization_link_send(link_id=link.pk, payer_id=north.payer.pk)
        again = member_authorization_link_send(link_id=link.pk, payer_id=north.payer.pk)

    assert (outcome.sent, again.sent) == (True, False)
    [message] = server.received
    assert message["To"] == EMAIL
    body = _text(message)
    url = f"https://hub.example/p/north/me/requests/{link.exchange_request_id}/"
    assert f"Open this link: {url}\n" in body
    assert "Southern Cross Health" in message["Subject"]
    assert _state(link) == ("sent", 1)
    assert link.next_attempt_at is None and link.last_error == ""
    audit = AuditEvent.objects.for_payer(north.payer).get(
        action="exchange_request.member_link_sent"
    )
    assert (audit.actor_label, audit.object_id) == (ENGINE, str(link.exchange_request_id))
    assert EMAIL not in str(audit.changes)


def test_a_mail_server_that_is_down_is_tried_again_on_the_schedule_until_it_answers(
    north: Tenant, south: Tenant, settings: Settings
) -> None:
    link = _waiting_link(north, south)
    now = timezone.now()
    _mail_to(settings, None)

    failed = member_authorization_link_send(link_id=link.pk, payer_id=north.payer.pk, now=now)

    assert (failed.sent, failed.retry_in) == (False, RETRY_SCHEDULE[0].total_seconds())
    assert _state(link) == ("pending", 1)
    assert link.next_attempt_at == now + RETRY_SCHEDULE[0]
    assert "could not be reached" in link.last_error
    # Not due yet: a duplicate task, or the sweep, sends nothing and counts no try.
    early = member_authorization_link_send(link_id=link.pk, payer_id=north.payer.pk, now=now)
    assert (early.sent, _state(link)) == (False, ("pending", 1))

    with running_smtp_server() as server:
        _mail_to(settings, server)
        later = now + RETRY_SCHEDULE[0]
        sent = member_authorization_link_send(link_id=link.pk, payer_id=north.payer.pk, now=later)
    assert sent.sent and len(server.received) == 1
    assert _state(link) == ("sent", 2)
    assert link.sent_at == later


def test_after_the_last_try_fails_the_link_is_given_up_and_the_api_can_say_so(
    north: Tenant, south: Tenant, settings: Settings
) -> None:
    link = _waiting_link(north, south)
    _mail_to(settings, None)
    at = timezone.now()
    for wait in RETRY_SCHEDULE:
        outcome = member_authorization_link_send(link_id=link.pk, payer_id=north.payer.pk, now=at)
        assert outcome.retry_in == wait.total_seconds()
        at += wait
    last = member_authorization_link_send(link_id=link.pk, payer_id=north.payer.pk, now=at)
    assert (last.sent, last.retry_in) == (False, None)
    assert _state(link) == ("not_sent", len(RETRY_SCHEDULE) + 1)
    assert link.given_up_at == at and link.next_attempt_at is None
    assert not member_authorization_links_due(grace=timedelta(0))


def test_an_address_the_mail_server_refuses_is_not_tried_again(
    north: Tenant, south: Tenant, settings: Settings
) -> None:
    link = _waiting_link(north, south)
    with running_smtp_server() as server:
        server.refused.add(EMAIL)
        _mail_to(settings, server)
        outcome = member_authorization_link_send(link_id=link.pk, payer_id=north.payer.pk)
    assert (outcome.sent, outcome.retry_in, server.received) == (False, None, [])
    assert _state(link) == ("not_sent", 1)
    assert link.last_error == "The mail server refused the member's address."


def test_no_mail_goes_out_for_a_request_that_no_longer_waits_for_the_member(
    north: Tenant, south: Tenant, settings: Settings
) -> None:
    link = _waiting_link(north, south)
    exchange_request_withdraw(exchange_request=link.exchange_request, actor=north.member)
    with running_smtp_server() as server:
        _mail_to(settings, server)
        outcome = member_authorization_link_send(link_id=link.pk, payer_id=north.payer.pk)
    assert (outcome.sent, server.received) == (False, [])
    assert _state(link) == ("not_sent", 0)
    assert link.last_error == "Not sent: the request no longer awaits the member (revoked)."


def test_the_sweep_finds_the_links_no_task_holds_of_every_payer(
    north: Tenant, south: Tenant
) -> None:
    past = timezone.now() - SWEEP_GRACE - timedelta(minutes=1)
    orphaned = _waiting_link(north, south, next_attempt_at=past)
    south_orphaned = _waiting_link(south, north, next_attempt_at=past)
    _waiting_link(north, south)  # just written: its task is on the way
    _waiting_link(north, south, next_attempt_at=past, sent_at=past)
    _waiting_link(north, south, next_attempt_at=None, given_up_at=past)
    due = member_authorization_links_due(grace=SWEEP_GRACE)
    assert sorted(due) == sorted(
        [(orphaned.pk, north.payer.pk), (south_orphaned.pk, south.payer.pk)]
    )


def _opt_in_of_ned(north: Tenant, south: Tenant) -> None:
    """North's enrollment system posts Ned's opt-in naming South, which asks the member to
    sign in there (the service the API's POST /api/v1/opt-ins calls)."""
    FhirEndpoint.objects.create(
        payer=south.payer,
        base_url="http://127.0.0.1:9/fhir",
        offers_backend_services=False,
        offers_member_authorization=True,
    )
    today = timezone.localdate()
    opt_in_create(
        new_payer=north.payer,
        enrollee=Enrollee(
            member_id="NSH-NED-1",
            family="Member",
            given=("Ned",),
            birth_date=date(1980, 5, 1),
            gender="male",
            new_coverage_start=today - timedelta(days=2),
            email=EMAIL,
        ),
        coverages=[
            OtherCoverage(
                where="previous_payers[0]",
                former_payer=south.payer,
                card_member_id="SCH-9",
                coverage_start=date(2020, 1, 1),
                coverage_end=today - timedelta(days=3),
                concurrent=False,
            )
        ],
        policy=ConsentPolicy.SENSITIVE,
        consent_ends_on=None,
        attestation=OptInAttestation(
            obtained_at=timezone.now() - timedelta(hours=1),
            method=OptInMethod.ENROLLMENT_FORM,
            education_text_version="",
        ),
        actor_label="payer-system:north",
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_a_worker_mails_the_link_once_the_opt_in_commits_and_the_sweep_sends_an_orphan(
    north: Tenant, south: Tenant, settings: Settings
) -> None:
    settings.HUB_PUBLIC_URL = "https://hub.example"
    _opt_in_of_ned(north, south)  # committed: its link is handed to the broker
    opted_in = ExchangeRequest.objects.for_payer(north.payer).get()
    assert opted_in.status == S.AWAITING_AUTHORIZATION
    # A link whose task never reached the broker (it was down when the opt-in committed).
    orphan = _waiting_link(north, south, next_attempt_at=timezone.now() - 2 * SWEEP_GRACE)

    with (
        running_smtp_server() as server,
        running_worker(**server.environment, HUB_PUBLIC_URL="https://hub.example"),
    ):
        wait_for(lambda: len(server.received) == 1, timeout=60)
        assert member_authorization_links_sweep() == 1  # beat's job, every five minutes
        wait_for(lambda: len(server.received) == 2, timeout=60)

    bodies = [_text(message) for message in server.received]
    for exchange_request_id, body in zip(
        (opted_in.pk, orphan.exchange_request_id), bodies, strict=True
    ):
        assert f"https://hub.example/p/north/me/requests/{exchange_request_id}/" in body
    assert {link.status for link in MemberAuthorizationLink.objects.for_payer(north.payer)} == {
        "sent"
    }


def test_the_task_asks_celery_to_retry_when_the_next_try_is_near_and_leaves_later_ones_to_the_sweep(
    north: Tenant, south: Tenant, settings: Settings
) -> None:
    link = _waiting_link(north, south)
    _mail_to(settings, None)
    # The first retry is a minute away: the task itself tries again.
    with pytest.raises(Retry):
        member_authorization_link_send_task(link.pk, north.payer.pk)
    assert _state(link) == ("pending", 1)
    # From the fourth failure on, the wait (2 h and more) is longer than a task waits: the
    # task ends, and the sweep sends the link when it is due (the broker's visibility
    # timeout would otherwise hand the waiting task out twice).
    MemberAuthorizationLink.objects.for_payer(north.payer).filter(pk=link.pk).update(
        attempts=3, next_attempt_at=timezone.now()
    )
    member_authorization_link_send_task(link.pk, north.payer.pk)
    assert _state(link) == ("pending", 4)
    assert link.next_attempt_at is not None
    assert link.next_attempt_at - timezone.now() > timedelta(hours=1)
