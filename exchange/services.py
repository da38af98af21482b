"""Services that open exchange requests (STYLE.md #1: services write)."""

from datetime import date, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from exchange.consent import hrex_consent_resource
from exchange.models import (
    AuthorizationMode,
    Consent,
    ConsentPolicy,
    ExchangeEvent,
    ExchangeRequest,
    ExchangeStatus,
)
from hub.audit import audit_record
from hub.models import Payer, PayerStatus, User


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
    authorization_mode: AuthorizationMode,
    consent_source_url: str,
    client_address: str | None = None,
) -> ExchangeRequest:
    """Record the member's consent and open a request to ``former_payer``, due in 7 days."""
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
            fhir_resource=hrex_consent_resource(
                patient_id="member",
                former_payer=former_payer,
                new_payer=new_payer,
                policy=policy,
                period_start=today,
                period_end=period_end,
                source_document_url=consent_source_url,
            ),
        )
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
    return exchange_request
