"""What happens to a member's Consent: given, published, withdrawn (STYLE.md #1: services write).

The HRex Consent resource is built by exchange/consents/resource.py; a former payer reads
it and subscribes to its changes on the hub's Consent endpoint (exchange/consents/endpoint/).
"""

from datetime import date, datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from exchange.consents.outbox import consent_notifications_queue
from exchange.consents.resource import hrex_consent_resource
from exchange.models import Consent, ConsentPolicy, ConsentStatus
from hub.models import Payer, User


def consent_create(
    *,
    member: User,
    new_payer: Payer,
    former_payer: Payer,
    policy: ConsentPolicy,
    period_start: date,
    period_end: date,
    opted_in_at: datetime,
) -> Consent:
    """Record the member's opt-in for ``former_payer`` to disclose to ``new_payer``, and
    publish it as an HRex Consent."""
    with transaction.atomic():
        consent = Consent.objects.create(
            payer=new_payer,
            member=member,
            former_payer=former_payer,
            policy=policy,
            period_start=period_start,
            period_end=period_end,
            opted_in_at=opted_in_at,
            # Written by consent_publish once the row has its id.
            fhir_resource={},
        )
        consent_publish(consent)
    return consent


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


def consent_revoke(*, consent: Consent) -> bool:
    """Make ``consent`` inactive and owe its subscribers a notification; return whether it
    changed (False when it was withdrawn already). Revocation is local to the hub (HRex has
    no revocation message): former payers learn of it through their Subscription."""
    now = timezone.now()
    with transaction.atomic():
        revoked = (
            Consent.objects.for_payer(consent.payer_id)
            .filter(pk=consent.pk, status=ConsentStatus.ACTIVE)
            .update(
                status=ConsentStatus.INACTIVE,
                revoked_at=now,
                fhir_resource={**consent.fhir_resource, "status": "inactive"},
            )
        )
        if revoked:
            consent_notifications_queue(
                consent=Consent.objects.for_payer(consent.payer_id).get(pk=consent.pk)
            )
    return bool(revoked)
