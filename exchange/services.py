"""Services that open exchange requests (STYLE.md #1: services write)."""

from dataclasses import dataclass
from datetime import date, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from exchange.consent import hrex_consent_resource
from exchange.consent_notifications import consent_changed
from exchange.models import (
    AuthorizationMode,
    Consent,
    ConsentPolicy,
    ConsentStatus,
    ExchangeEvent,
    ExchangeRequest,
    ExchangeStatus,
)
from exchange.state_machine import ENDED, exchange_request_transition
from hub.audit import audit_record
from hub.models import FhirEndpoint, Payer, PayerStatus, User


class ExchangeRequestRefused(ValueError):
    """The request cannot be opened; the message tells the member why."""


def exchange_request_create(
    *,
    member: User,
    former_payer: Payer,
    card_member_id: str,
    coverage_start: date,
    coverage_end: date | None,
    policy: ConsentPolicy,
    client_address: str | None = None,
) -> ExchangeRequest:
    """Record the member's consent and open a request to ``former_payer``, due in 7 days.

    The request is enqueued for its first step once the transaction commits.
    """
    if not member.is_member or member.payer is None:
        raise ExchangeRequestRefused("only a member of a payer can request their records")
    new_payer = member.payer
    if former_payer.pk == new_payer.pk:
        raise ExchangeRequestRefused("the former payer must be another plan than your current one")
    if former_payer.status != PayerStatus.PARTICIPATING:
        raise ExchangeRequestRefused(f"{former_payer.name} is not connected to the hub yet")
    if not card_member_id.strip():
        raise ExchangeRequestRefused("enter the member id printed on your old insurance card")
    if coverage_end is not None and coverage_end < coverage_start:
        raise ExchangeRequestRefused("the coverage end date is before its start date")
    authorization_mode = authorization_mode_for(former_payer)

    now = timezone.now()
    today = timezone.localdate()
    # The consent covers the request and its follow-ups: one year, or until revoked.
    period_end = today + timedelta(days=365)
    with transaction.atomic():
        consent = Consent.objects.create(
            payer=new_payer,
            member=member,
            former_payer=former_payer,
            policy=policy,
            period_start=today,
            period_end=period_end,
            opted_in_at=now,
            # Written by consent_publish once the row has its id.
            fhir_resource={},
        )
        consent_publish(consent)
        exchange_request = ExchangeRequest.objects.create(
            payer=new_payer,
            member=member,
            former_payer=former_payer,
            consent=consent,
            authorization_mode=authorization_mode,
            status=ExchangeStatus.CONSENTED,
            status_changed_at=now,
            opted_in_at=now,
            due_by=now + timedelta(days=settings.EXCHANGE_DUE_DAYS),
            card_member_id=card_member_id.strip(),
            coverage_start=coverage_start,
            coverage_end=coverage_end,
            is_concurrent=coverage_end is None or coverage_end >= today,
        )
        ExchangeEvent.objects.create(
            payer=new_payer,
            exchange_request=exchange_request,
            status=ExchangeStatus.CONSENTED,
            message=f"You agreed that {former_payer.name} may share your records with {new_payer.name}.",
        )
        audit_record(
            action="exchange_request.create",
            obj=exchange_request,
            payer=new_payer,
            actor=member,
            changes={"former_payer": former_payer.slug, "policy": policy},
            client_address=client_address,
        )
        if authorization_mode == AuthorizationMode.MEMBER_AUTHORIZED:
            # Nothing for a worker to do until the member signs in at the former payer.
            exchange_request_transition(
                payer=new_payer,
                exchange_request_id=exchange_request.pk,
                from_status=ExchangeStatus.CONSENTED,
                to_status=ExchangeStatus.AWAITING_AUTHORIZATION,
                message=f"Waiting for you to sign in at {former_payer.name} and allow the transfer.",
            )
            exchange_request.refresh_from_db()
        else:
            transaction.on_commit(lambda: enqueue_next_step(exchange_request))
    return exchange_request


@dataclass(frozen=True)
class FormerCoverage:
    """One former (or concurrent) plan as the member describes it from the old card."""

    former_payer: Payer
    card_member_id: str
    coverage_start: date
    coverage_end: date | None


def exchange_requests_create(
    *,
    member: User,
    coverages: list[FormerCoverage],
    policy: ConsentPolicy,
    client_address: str | None = None,
) -> list[ExchangeRequest]:
    """Open one request per former payer in one go: all of them, or none (CMS-0057-F asks
    for every previous payer of the last five years and every concurrent one)."""
    if not coverages:
        raise ExchangeRequestRefused("choose at least one former plan")
    if len({coverage.former_payer.pk for coverage in coverages}) != len(coverages):
        raise ExchangeRequestRefused("each former plan can be chosen only once")
    with transaction.atomic():
        return [
            exchange_request_create(
                member=member,
                former_payer=coverage.former_payer,
                card_member_id=coverage.card_member_id,
                coverage_start=coverage.coverage_start,
                coverage_end=coverage.coverage_end,
                policy=policy,
                client_address=client_address,
            )
            for coverage in coverages
        ]


def authorization_mode_for(former_payer: Payer) -> AuthorizationMode:
    """Return how the hub is authorized at ``former_payer``, from what its endpoint offers.

    Payer-to-payer ($member-match with SMART Backend Services) is preferred: the member
    need not sign in a second time (CMS-0057-F's payer-to-payer API).
    """
    endpoint = FhirEndpoint.objects.for_payer(former_payer).first()
    if endpoint is None:
        raise ExchangeRequestRefused(
            f"{former_payer.name} has not connected its records service to the hub yet"
        )
    if endpoint.offers_backend_services:
        return AuthorizationMode.BACKEND_SERVICES
    if endpoint.offers_member_authorization:
        return AuthorizationMode.MEMBER_AUTHORIZED
    raise ExchangeRequestRefused(
        f"{former_payer.name} offers no way for the hub to ask for records"
    )


def consent_publish(consent: Consent) -> None:
    """Write the HRex Consent resource of ``consent``: its id, and as its signed original
    (``sourceReference``) its URL on the hub's Consent endpoint, where the former payer
    reads it and subscribes to its changes (seed 000 step 5)."""
    resource = hrex_consent_resource(
        patient_id="member",
        former_payer=consent.former_payer,
        new_payer=consent.payer,
        policy=consent.policy,
        period_start=consent.period_start,
        period_end=consent.period_end,
        source_document_url=consent_fhir_url(consent),
    )
    consent.fhir_resource = {"resourceType": "Consent", "id": str(consent.pk), **resource}
    consent.save(update_fields=["fhir_resource"])


def consent_fhir_url(consent: Consent) -> str:
    """Return the URL of ``consent`` on the hub's Consent endpoint (README "Consent endpoint")."""
    return f"{settings.HUB_PUBLIC_URL}/p/{consent.payer.slug}/fhir/Consent/{consent.pk}"


def enqueue_next_step(exchange_request: ExchangeRequest) -> None:
    """Hand the request to the worker that runs its next step (exchange/tasks.py)."""
    from exchange.tasks import exchange_request_advance

    exchange_request_advance.delay(exchange_request.pk, exchange_request.payer_id)


def exchange_request_authorized(*, exchange_request: ExchangeRequest, member: User) -> None:
    """The member allowed the transfer at the former payer: go on to retrieval."""
    with transaction.atomic():
        moved = exchange_request_transition(
            payer=exchange_request.payer_id,
            exchange_request_id=exchange_request.pk,
            from_status=ExchangeStatus.AWAITING_AUTHORIZATION,
            to_status=ExchangeStatus.AUTHORIZED,
            message=f"You allowed {exchange_request.former_payer.name} to share your records.",
        )
        if moved:
            audit_record(
                action="exchange_request.authorize",
                obj=exchange_request,
                payer=exchange_request.payer,
                actor=member,
            )
            transaction.on_commit(lambda: enqueue_next_step(exchange_request))


def exchange_request_denied(*, exchange_request: ExchangeRequest, member: User, said: str) -> None:
    """The member did not allow the transfer at the former payer: the request ends there."""
    former = exchange_request.former_payer.name
    with transaction.atomic():
        moved = exchange_request_transition(
            payer=exchange_request.payer_id,
            exchange_request_id=exchange_request.pk,
            from_status=ExchangeStatus.AWAITING_AUTHORIZATION,
            to_status=ExchangeStatus.AUTHORIZATION_DENIED,
            message=f"{former} did not allow the transfer ({said}).",
            reason_code="authorization_denied",
            reason_message=f"The transfer was not allowed at {former}. You can ask again "
            "and allow it when you sign in there.",
        )
        if moved:
            audit_record(
                action="exchange_request.authorization_denied",
                obj=exchange_request,
                payer=exchange_request.payer,
                actor=member,
            )


def exchange_request_withdraw(
    *, member: User, exchange_request: ExchangeRequest, client_address: str | None = None
) -> None:
    """Withdraw the member's consent: the Consent becomes inactive and the request ends.

    Running work sees the state change at its next step and stops (exchange/tasks.py);
    former payers subscribed to the Consent are notified (exchange/consent_notifications.py).
    """
    consent = exchange_request.consent
    now = timezone.now()
    with transaction.atomic():
        revoked = (
            Consent.objects.for_payer(exchange_request.payer_id)
            .filter(pk=consent.pk, status=ConsentStatus.ACTIVE)
            .update(
                status=ConsentStatus.INACTIVE,
                revoked_at=now,
                fhir_resource={**consent.fhir_resource, "status": "inactive"},
            )
        )
        if not revoked:
            return
        # Locked, so a step's transition in flight commits first and is read here; otherwise
        # the conditional move below would find the request moved on, and leave it running
        # under a withdrawn consent.
        for sibling in consent.exchange_requests.select_for_update().exclude(status__in=ENDED):
            exchange_request_transition(
                payer=sibling.payer_id,
                exchange_request_id=sibling.pk,
                from_status=sibling.status,
                to_status=ExchangeStatus.REVOKED,
                message="You withdrew your consent. Nothing more will be fetched.",
                reason_code="consent_withdrawn",
                reason_message="You withdrew your consent.",
            )
        audit_record(
            action="consent.withdraw",
            obj=consent,
            payer=exchange_request.payer,
            actor=member,
            client_address=client_address,
        )
        transaction.on_commit(
            lambda: consent_changed(consent_id=consent.pk, payer_id=consent.payer_id)
        )
