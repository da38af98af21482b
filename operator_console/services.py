"""What hub operators change (STYLE.md #1: services write; #7: audited in the same transaction,
the operator as actor)."""

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Model, Q
from django.utils import timezone

from hub.audit import audit_record, audit_record_per_payer
from hub.models import OnboardingRequest, OnboardingStatus, Payer, PayerStatus, Role, User


class OperatorActionRefused(ValueError):
    """The action cannot be taken; the message tells the operator what to fix."""


# The payer lifecycle (ARCHITECTURE.md "People and tenants"): invited → onboarding →
# participating ⇄ suspended. Suspension stops new work (exchange/services.py).
_NEXT_STATUSES: dict[str, set[str]] = {
    PayerStatus.INVITED: {PayerStatus.ONBOARDING},
    PayerStatus.ONBOARDING: {PayerStatus.PARTICIPATING},
    PayerStatus.PARTICIPATING: {PayerStatus.SUSPENDED},
    PayerStatus.SUSPENDED: {PayerStatus.PARTICIPATING},
}


def payer_status_change(
    *, payer: Payer, status: PayerStatus, operator: User, client_address: str | None = None
) -> Payer:
    """Move ``payer`` one step along its lifecycle; refuse a step the lifecycle has not."""
    with transaction.atomic():
        locked = Payer.objects.select_for_update().get(pk=payer.pk)
        before = locked.status
        if status not in _NEXT_STATUSES.get(before, set()):
            allowed = ", ".join(sorted(_NEXT_STATUSES.get(before, set()))) or "nothing"
            raise OperatorActionRefused(
                f"{locked.name} is {PayerStatus(before).label.lower()}: it can move to "
                f"{allowed}, not to {PayerStatus(status).label.lower()}."
            )
        locked.status = status
        locked.save(update_fields=["status"])
        audit_record(
            action=f"payer.{status}", obj=locked, payer=locked, actor=operator,
            changes={"status": [before, status]}, client_address=client_address,
        )  # fmt: skip
    return locked


def payer_save(
    *, payer: Payer, changed_fields: list[str], operator: User, client_address: str | None = None
) -> Payer:
    """Save the operator's edit of a payer's names, identifiers or contact, audited."""
    created = payer.pk is None
    with transaction.atomic():
        payer.full_clean()
        payer.save()
        audit_record(
            action="payer.create" if created else "payer.update", obj=payer, payer=payer,
            actor=operator, client_address=client_address,
            changes={name: getattr(payer, name) for name in changed_fields},
        )  # fmt: skip
    return payer


def _identifier_clash(
    *, npi: str, payer_identifier: str, slug: str, other_than: Payer | None
) -> str:
    """Return the sentence naming the payer that already holds one of these identifiers, or ""."""
    holders = Payer.objects.filter(
        (Q(npi=npi) & ~Q(npi="")) if npi else Q(pk__in=[])
    ) | Payer.objects.filter(
        (Q(payer_identifier__iexact=payer_identifier) & ~Q(payer_identifier=""))
        if payer_identifier
        else Q(pk__in=[])
    )
    if slug:
        holders = holders | Payer.objects.filter(slug=slug)
    if other_than is not None:
        holders = holders.exclude(pk=other_than.pk)
    holder = holders.first()
    if holder is None:
        return ""
    if npi and holder.npi == npi:
        what = f"NPI {npi}"
    elif payer_identifier and holder.payer_identifier.lower() == payer_identifier.lower():
        what = f"payer id {payer_identifier}"
    else:
        what = f"URL name {slug}"
    return (
        f"The {what} belongs to {holder.name} already (URL name {holder.slug}): approve the "
        "request with that payer chosen as the existing payer, or correct the identifier."
    )


def onboarding_request_approve(
    *,
    onboarding: OnboardingRequest,
    operator: User,
    existing_payer: Payer | None = None,
    name: str = "",
    slug: str = "",
    npi: str = "",
    payer_identifier: str = "",
    client_address: str | None = None,
) -> Payer:
    """Approve an invitation: create the invited payer (status onboarding), or activate
    ``existing_payer`` (an invited one moves to onboarding). Refuse, writing nothing, when
    the NPI, payer id or URL name clash with another payer's (the NPI and the payer id are
    how holders and the directory tell payers apart)."""
    with transaction.atomic():
        locked = _undecided_locked(onboarding)
        # What the requester typed counts unless the operator corrected it.
        npi = npi or locked.npi
        payer_identifier = payer_identifier or locked.payer_identifier
        if existing_payer is not None:
            payer = _payer_activate(
                payer=existing_payer, npi=npi, payer_identifier=payer_identifier,
                operator=operator, client_address=client_address,
            )  # fmt: skip
        else:
            payer = _payer_create(
                name=name, slug=slug, npi=npi, payer_identifier=payer_identifier,
                contact_email=locked.contact_email, states=[locked.state] if locked.state else [],
                operator=operator, client_address=client_address,
            )  # fmt: skip
        locked.status = OnboardingStatus.ONBOARDED
        locked.decided_at = timezone.now()
        locked.decided_by = operator
        locked.onboarded_payer = payer
        locked.save(update_fields=["status", "decided_at", "decided_by", "onboarded_payer"])
        audit_record(
            action="onboarding_request.approve", obj=locked, payer=locked.payer_id,
            actor=operator, client_address=client_address,
            changes={"onboarded_payer": payer.pk, "created": existing_payer is None},
        )  # fmt: skip
    return payer


def _payer_create(
    *,
    name: str,
    slug: str,
    npi: str,
    payer_identifier: str,
    contact_email: str,
    states: list[str],
    operator: User,
    client_address: str | None,
) -> Payer:
    if not name.strip() or not slug.strip():
        raise OperatorActionRefused("Give the new payer a name and a URL name (slug).")
    if clash := _identifier_clash(
        npi=npi, payer_identifier=payer_identifier, slug=slug, other_than=None
    ):
        raise OperatorActionRefused(clash)
    payer = Payer(
        name=name.strip(), slug=slug.strip(), npi=npi, payer_identifier=payer_identifier,
        contact_email=contact_email, states=states, status=PayerStatus.ONBOARDING,
    )  # fmt: skip
    try:
        payer.full_clean()
    except ValidationError as exc:
        raise OperatorActionRefused(_sentences(exc)) from exc
    try:
        with transaction.atomic():
            payer.save()
    except IntegrityError as exc:  # another operator created the same payer a moment ago
        raise OperatorActionRefused(
            "A payer with this NPI, payer id or URL name was created a moment ago; reload the "
            "queue and approve with that payer chosen as the existing payer."
        ) from exc
    audit_record(
        action="payer.create", obj=payer, payer=payer, actor=operator,
        changes={"name": payer.name, "npi": npi, "payer_identifier": payer_identifier},
        client_address=client_address,
    )  # fmt: skip
    return payer


def _payer_activate(
    *, payer: Payer, npi: str, payer_identifier: str, operator: User, client_address: str | None
) -> Payer:
    locked = Payer.objects.select_for_update().get(pk=payer.pk)
    if locked.status == PayerStatus.SUSPENDED:
        raise OperatorActionRefused(
            f"{locked.name} is suspended: lift the suspension on the payer's page first."
        )
    for label, typed, held in (
        ("NPI", npi, locked.npi),
        ("payer id", payer_identifier, locked.payer_identifier),
    ):
        if typed and held and typed.lower() != held.lower():
            raise OperatorActionRefused(
                f"The request's {label} {typed} is not {locked.name}'s ({held}): correct the "
                "request's identifier or choose another payer."
            )
    if clash := _identifier_clash(
        npi=npi, payer_identifier=payer_identifier, slug="", other_than=locked
    ):
        raise OperatorActionRefused(clash)
    changed = {}
    if npi and not locked.npi:
        locked.npi = changed["npi"] = npi
    if payer_identifier and not locked.payer_identifier:
        locked.payer_identifier = changed["payer_identifier"] = payer_identifier
    if locked.status == PayerStatus.INVITED:
        changed["status"] = PayerStatus.ONBOARDING
        locked.status = PayerStatus.ONBOARDING
    if changed:
        locked.save(update_fields=list(changed))
        audit_record(
            action="payer.activate", obj=locked, payer=locked, actor=operator,
            changes=changed, client_address=client_address,
        )  # fmt: skip
    return locked


def _sentences(exc: ValidationError) -> str:
    """Return a validation error's messages, each after the field it names."""
    if hasattr(exc, "error_dict"):
        return " ".join(f"{field}: {' '.join(texts)}" for field, texts in exc.message_dict.items())
    return " ".join(exc.messages)


def _undecided_locked(onboarding: OnboardingRequest) -> OnboardingRequest:
    """Return the onboarding request locked for this decision (inside the caller's
    transaction); refuse one already approved or declined, so two operators deciding at once
    decide once."""
    locked = (
        OnboardingRequest.objects.for_payer(onboarding.payer_id)
        .select_for_update()
        .get(pk=onboarding.pk)
    )
    if locked.status in (OnboardingStatus.ONBOARDED, OnboardingStatus.DECLINED):
        decided = f" on {locked.decided_at:%Y-%m-%d}" if locked.decided_at else ""
        raise OperatorActionRefused(
            f"This request was {locked.get_status_display().lower()} already{decided}; "
            "nothing was changed."
        )
    return locked


def onboarding_request_reject(
    *, onboarding: OnboardingRequest, operator: User, reason: str, client_address: str | None = None
) -> OnboardingRequest:
    """Decline an invitation with ``reason``, which the requester reads where they see it."""
    reason = reason.strip()
    if not reason:
        raise OperatorActionRefused("Say why the request is declined: the requester reads it.")
    with transaction.atomic():
        locked = _undecided_locked(onboarding)
        locked.status = OnboardingStatus.DECLINED
        locked.decided_at = timezone.now()
        locked.decided_by = operator
        locked.decision_reason = reason
        locked.save(update_fields=["status", "decided_at", "decided_by", "decision_reason"])
        audit_record(
            action="onboarding_request.reject", obj=locked, payer=locked.payer_id,
            actor=operator, changes={"reason": reason}, client_address=client_address,
        )  # fmt: skip
    return locked


def onboarding_request_mark_contacted(
    *, onboarding: OnboardingRequest, operator: User, client_address: str | None = None
) -> OnboardingRequest:
    """Record that the hub's team has contacted the invited payer (the requester sees it)."""
    with transaction.atomic():
        updated = (
            OnboardingRequest.objects.for_payer(onboarding.payer_id)
            .filter(pk=onboarding.pk, status=OnboardingStatus.OPEN)
            .update(status=OnboardingStatus.CONTACTED)
        )
        if not updated:
            raise OperatorActionRefused("Only an open request can be marked contacted.")
        audit_record(
            action="onboarding_request.contacted", obj=onboarding, payer=onboarding.payer_id,
            actor=operator, client_address=client_address,
        )  # fmt: skip
    onboarding.refresh_from_db()
    return onboarding


def user_deactivate(*, user: User, operator: User, client_address: str | None = None) -> User:
    """Stop ``user`` signing in: Django ends an inactive user's sessions on their next request."""
    if user.pk == operator.pk:
        raise OperatorActionRefused("You cannot deactivate your own account.")
    with transaction.atomic():
        if User.objects.filter(pk=user.pk, is_active=True).update(is_active=False):
            audit_record(
                action="user.deactivate", obj=user, payer=user.payer_id, actor=operator,
                changes={"is_active": [True, False]}, client_address=client_address,
            )  # fmt: skip
    user.refresh_from_db()
    return user


def user_role_change(
    *, user: User, role: Role, operator: User, client_address: str | None = None
) -> User:
    """Make a payer's member its plan administrator, or the other way round."""
    if user.payer_id is None:
        raise OperatorActionRefused(
            f"{user.get_username()} is a hub operator, not a person of a payer: no role to change."
        )
    with transaction.atomic():
        before = User.objects.select_for_update().values_list("role", flat=True).get(pk=user.pk)
        if before != role:
            User.objects.filter(pk=user.pk).update(role=role)
            audit_record(
                action="user.role_change", obj=user, payer=user.payer_id, actor=operator,
                changes={"role": [before, role]}, client_address=client_address,
            )  # fmt: skip
    user.refresh_from_db()
    return user


def operator_look_record(
    *,
    operator: User,
    payers: list[Payer],
    looked_at: Model | None,
    what: str,
    client_address: str | None = None,
) -> None:
    """Record that ``operator`` looked at data of each of ``payers`` (``what``: the page), one
    event per payer, so each payer's own audit trail shows the look; one INSERT however many
    payers the page shows."""
    audit_record_per_payer(
        action="operator.look",
        object_by_payer=[
            (payer, looked_at if looked_at is not None else payer) for payer in payers
        ],
        changes={"page": what}, actor=operator, client_address=client_address,
    )  # fmt: skip


def audit_log_export_record(
    *, operator: User, payer: Payer | None, filters: str, client_address: str | None = None
) -> None:
    """Record that ``operator`` exported the audit log (of ``payer``, or across payers)."""
    audit_record(
        action="operator.export_audit_log", obj=payer if payer is not None else operator,
        payer=payer, actor=operator, changes={"filters": filters}, client_address=client_address,
    )  # fmt: skip
