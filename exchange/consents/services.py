"""What happens to a member's Consent: given, published, withdrawn (STYLE.md #1: services write).

The HRex Consent resource is built by exchange/consents/resource.py; a former payer reads
it and subscribes to its changes on the hub's Consent endpoint (exchange/consents/endpoint/).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from exchange.consents.outbox import consent_notifications_queue
from exchange.consents.resource import hrex_consent_resource
from exchange.models import Consent, ConsentPolicy, ConsentStatus
from hub.models import Payer, User

# Rows per INSERT and per UPDATE when many consents are written at once.
_BATCH_SIZE = 1000


@dataclass(frozen=True)
class ConsentGiven:
    """One member's opt-in for ``former_payer`` to disclose to the new payer."""

    member: User
    former_payer: Payer
    policy: ConsentPolicy
    period_start: date
    period_end: date
    opted_in_at: datetime


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
    given = ConsentGiven(
        member=member,
        former_payer=former_payer,
        policy=policy,
        period_start=period_start,
        period_end=period_end,
        opted_in_at=opted_in_at,
    )
    (consent,) = consents_create(new_payer=new_payer, given=[given])
    return consent


def consents_create(*, new_payer: Payer, given: Sequence[ConsentGiven]) -> list[Consent]:
    """Record many members' opt-ins to ``new_payer`` and publish each as an HRex Consent,
    a thousand rows per INSERT and per UPDATE (a roster holds thousands of members)."""
    with transaction.atomic():
        consents = Consent.objects.bulk_create(
            [
                Consent(
                    payer=new_payer,
                    member=opt_in.member,
                    former_payer=opt_in.former_payer,
                    policy=opt_in.policy,
                    period_start=opt_in.period_start,
                    period_end=opt_in.period_end,
                    opted_in_at=opt_in.opted_in_at,
                    # Written below once the row has its id, which the resource names.
                    fhir_resource={},
                )
                for opt_in in given
            ],
            batch_size=_BATCH_SIZE,
        )
        for consent in consents:
            consent.fhir_resource = _published_resource(consent)
        Consent.objects.for_payer(new_payer).bulk_update(
            consents, ["fhir_resource"], batch_size=_BATCH_SIZE
        )
    return consents


def consent_publish(consent: Consent) -> None:
    """Write the HRex Consent resource of ``consent`` (see ``_published_resource``)."""
    consent.fhir_resource = _published_resource(consent)
    consent.save(update_fields=["fhir_resource"])


def _published_resource(consent: Consent) -> dict[str, Any]:
    """Return the HRex Consent resource of ``consent``: its id, and as its signed original
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
    return {"resourceType": "Consent", "id": str(consent.pk), **resource}


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
