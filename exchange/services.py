"""The request lifecycle as people and payer systems drive it (STYLE.md #1: services write).

Every way a request is opened, authorized, denied, withdrawn, retried or cancelled is a
service here; the portals, the API and the tasks call these and nothing below them. The
engine's own moves (match, retrieve, screen, deliver, fail, defer, resume) are the steps of
exchange/pipeline.py. Both move requests only through exchange/state_machine.py, which
writes the timeline event and the audit event of every transition in its transaction.
"""

from dataclasses import dataclass
from datetime import date, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from exchange.consents.services import consent_create, consent_revoke
from exchange.education import (
    member_education_text_shown,
    member_education_version_current,
    opt_in_withdrawal_record,
)
from exchange.match_limits import member_match_attempts_check, member_match_attempts_spend
from exchange.models import (
    AuthorizationMode,
    ConsentPolicy,
    ConsentStatus,
    ExchangeEvent,
    ExchangeRequest,
    ExchangeStatus,
    OptInMethod,
    OptInRecord,
)
from exchange.payloads.backends import payload_storage
from exchange.radar.selectors import endpoint_probe_latest, probe_is_fresh
from exchange.retrieval import records_retrieval_reset
from exchange.schedules import pull_schedules_end_for_consent, pull_schedules_open
from exchange.smart.member_launch import member_launch_complete, member_launch_refused
from exchange.state_machine import ENDED, exchange_request_transition
from exchange.tasks import exchange_request_advance
from hub.audit import audit_record
from hub.models import FhirEndpoint, Payer, PayerStatus, User
from hub.tenancy import get_for_payer_or_404


class ExchangeRequestRefused(ValueError):
    """The request cannot be opened; the message tells the member why."""


class ExchangeRequestActionRefused(ValueError):
    """The request is not in a state that allows this action; the message says why."""


def exchange_request_create(
    *,
    member: User,
    former_payer: Payer,
    card_member_id: str,
    coverage_start: date,
    coverage_end: date | None,
    policy: ConsentPolicy,
    client_address: str | None = None,
    opt_in_record: OptInRecord | None = None,
) -> ExchangeRequest:
    """Record the member's consent and open a request to ``former_payer``, due in 7 days.

    ``opt_in_record`` is the record of the opt-in it is opened with. The request is
    enqueued for its first step once the transaction commits.
    """
    if not member.is_member or member.payer is None:
        raise ExchangeRequestRefused("only a member of a payer can request their records")
    new_payer = member.payer
    if former_payer.pk == new_payer.pk:
        raise ExchangeRequestRefused("the former payer must be another plan than your current one")
    if new_payer.status == PayerStatus.SUSPENDED:
        raise ExchangeRequestRefused(new_payer.exchange_suspended_sentence)
    if former_payer.status == PayerStatus.SUSPENDED:
        raise ExchangeRequestRefused(former_payer.exchange_suspended_sentence)
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
        consent = consent_create(
            member=member,
            new_payer=new_payer,
            former_payer=former_payer,
            policy=policy,
            period_start=today,
            period_end=period_end,
            opted_in_at=now,
        )
        exchange_request = ExchangeRequest.objects.create(
            payer=new_payer,
            member=member,
            former_payer=former_payer,
            consent=consent,
            opt_in_record=opt_in_record,
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
                actor=member,
            )
            exchange_request.refresh_from_db()
        else:
            pull_schedules_open(requests=[exchange_request])
            transaction.on_commit(lambda: _enqueue_next_step(exchange_request))
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
    education_text_version: str,
    client_address: str | None = None,
) -> list[ExchangeRequest]:
    """Open one request per former payer in one go: all of them, or none (CMS-0057-F asks
    for every previous payer of the last five years and every concurrent one).

    The member's opt-in is recorded with ``education_text_version``, the member-education
    text shown with the consent (42 CFR 422.121(b)): one the payer published, or the hub's
    default, even if a newer one was published since — it is what the member read.
    """
    if not coverages:
        raise ExchangeRequestRefused("choose at least one former plan")
    if len({coverage.former_payer.pk for coverage in coverages}) != len(coverages):
        raise ExchangeRequestRefused("each former plan can be chosen only once")
    if member.payer is None or not member_education_text_shown(
        payer=member.payer, version=education_text_version
    ):
        raise ExchangeRequestRefused(
            "the explanation of your rights you were shown is not one your plan published"
        )
    former_payers = [coverage.former_payer for coverage in coverages]
    # Before anything is written, so a refused attempt sends no $member-match (raises
    # MemberMatchLimited, which names the time the member may ask again).
    member_match_attempts_check(
        new_payer=member.payer, member=member, former_payers=former_payers, for_member=True
    )
    with transaction.atomic():
        opt_in_record = OptInRecord.objects.create(
            payer=member.payer,
            member=member,
            obtained_at=timezone.now(),
            method=OptInMethod.PORTAL,
            education_text_version=education_text_version,
            policy=policy,
            attested_by=member.get_username(),
        )
        requests = [
            exchange_request_create(
                member=member,
                former_payer=coverage.former_payer,
                card_member_id=coverage.card_member_id,
                coverage_start=coverage.coverage_start,
                coverage_end=coverage.coverage_end,
                policy=policy,
                client_address=client_address,
                opt_in_record=opt_in_record,
            )
            for coverage in coverages
        ]
        audit_record(
            action="opt_in.create",
            obj=opt_in_record,
            payer=member.payer,
            actor=member,
            changes={
                "method": OptInMethod.PORTAL,
                "education_text_version": education_text_version,
                "policy": policy,
                "requests": [request.pk for request in requests],
            },
            client_address=client_address,
        )
        member_match_attempts_spend(member=member, former_payers=former_payers)
        return requests


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
    # The radar's latest recent probe may show the holder no longer lists $member-match
    # (HRex §member-match), which payer-to-payer needs; without a recent probe the settings
    # decide (a probe here would keep the member waiting; retrieval probes before it fetches).
    latest = endpoint_probe_latest(endpoint=endpoint)
    matches = not (
        latest is not None
        and latest.summary
        and probe_is_fresh(latest)
        and "member-match" not in (latest.summary.get("operations") or [])
    )
    if endpoint.offers_backend_services and matches:
        return AuthorizationMode.BACKEND_SERVICES
    if endpoint.offers_member_authorization:
        return AuthorizationMode.MEMBER_AUTHORIZED
    if endpoint.offers_backend_services:
        raise ExchangeRequestRefused(
            f"{former_payer.name}'s server no longer offers $member-match, which payer-to-payer "
            "requests need, and its members cannot sign in there through the hub"
        )
    raise ExchangeRequestRefused(
        f"{former_payer.name} offers no way for the hub to ask for records"
    )


def _enqueue_next_step(exchange_request: ExchangeRequest) -> None:
    """Hand the request to the worker that runs its next step (exchange/tasks.py)."""
    exchange_request_advance.delay(exchange_request.pk, exchange_request.payer_id)


def exchange_request_authorize(
    *, payer: Payer, member: User, state: str, code: str, redirect_uri: str
) -> ExchangeRequest:
    """Finish the member's sign-in at the former payer (SMART standalone launch): keep its
    tokens and go on to retrieval. Return the request the launch belongs to.

    Raises FhirCallError (exchange/fhir/errors.py) for a callback the hub cannot use: a
    forged or replayed ``state``, a code the former payer refuses, no patient in its answer.
    """
    with transaction.atomic():
        exchange_request = member_launch_complete(
            payer=payer, member=member, state=state, code=code, redirect_uri=redirect_uri
        )
        moved = exchange_request_transition(
            payer=payer,
            exchange_request_id=exchange_request.pk,
            from_status=ExchangeStatus.AWAITING_AUTHORIZATION,
            to_status=ExchangeStatus.AUTHORIZED,
            message=f"You allowed {exchange_request.former_payer.name} to share your records.",
            actor=member,
            action="exchange_request.authorize",
        )
        if moved:
            transaction.on_commit(lambda: _enqueue_next_step(exchange_request))
    return exchange_request


def exchange_request_deny(
    *, payer: Payer, member: User, state: str, redirect_uri: str, said: str
) -> ExchangeRequest:
    """The member did not allow the transfer at the former payer: the request ends there.

    ``said`` is the former payer's ``error_description`` (or ``error``), quoted on the
    timeline. Raises FhirCallError for a ``state`` the hub did not issue to this member.
    """
    with transaction.atomic():
        exchange_request = member_launch_refused(
            payer=payer, member=member, state=state, redirect_uri=redirect_uri
        )
        former = exchange_request.former_payer.name
        exchange_request_transition(
            payer=payer,
            exchange_request_id=exchange_request.pk,
            from_status=ExchangeStatus.AWAITING_AUTHORIZATION,
            to_status=ExchangeStatus.AUTHORIZATION_DENIED,
            message=f"{former} did not allow the transfer ({said}).",
            actor=member,
            action="exchange_request.authorization_denied",
            reason_code="authorization_denied",
            reason_message=f"The transfer was not allowed at {former}. You can ask again "
            "and allow it when you sign in there.",
        )
    return exchange_request


def exchange_request_withdraw(
    *,
    exchange_request: ExchangeRequest,
    actor: User | None,
    actor_label: str = "",
    client_address: str | None = None,
) -> None:
    """Withdraw the member's consent: the Consent becomes inactive and its requests end.

    ``actor`` is the member withdrawing in the portal; a payer system relaying the member's
    withdrawal (exchange/enrollment.py) acts as ``actor_label`` instead. Running work sees
    the state change at its next step and stops (exchange/pipeline.py); former payers
    subscribed to the Consent are notified (exchange/consents/outbox.py).
    """
    consent = exchange_request.consent
    payer_id = exchange_request.payer_id
    record_id = exchange_request.opt_in_record_id
    with transaction.atomic():
        if record_id is not None:
            # Locked first (as the API's withdrawal of the whole opt-in does), so of two of
            # its consents withdrawn at once the later sees the earlier's withdrawal.
            OptInRecord.objects.for_payer(payer_id).select_for_update().filter(pk=record_id).first()
        if not consent_revoke(consent=consent):
            return
        # The opt-out names the member-education text current now (42 CFR 422.121(b)); the
        # opt-in it withdraws is withdrawn once none of its consents is left active.
        education_text_version = member_education_version_current(payer=payer_id)
        if (
            record_id is not None
            and not ExchangeRequest.objects.for_payer(payer_id)
            .filter(opt_in_record_id=record_id, consent__status=ConsentStatus.ACTIVE)
            .exists()
        ):
            opt_in_withdrawal_record(payer=payer_id, opt_in_record_id=record_id)
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
                actor=actor,
                actor_label=actor_label,
                action="exchange_request.revoke",
                client_address=client_address,
                reason_code="consent_withdrawn",
                reason_message="You withdrew your consent.",
            )
        # Recurring pulls under this consent stop too (CMS-0057-F: the member may withdraw).
        pull_schedules_end_for_consent(consent_id=consent.pk, payer_id=consent.payer_id)
        audit_record(
            action="consent.withdraw",
            obj=consent,
            payer=payer_id,
            actor=actor,
            actor_label=actor_label,
            changes={"education_text_version": education_text_version},
            client_address=client_address,
        )


def exchange_request_retry(
    *, payer: Payer, request_id: int, actor: User, client_address: str | None = None
) -> ExchangeRequest:
    """Start a failed request over from its consent and hand it back to the engine."""
    exchange_request = get_for_payer_or_404(ExchangeRequest.objects.all(), payer, pk=request_id)
    if exchange_request.status != ExchangeStatus.FAILED:
        raise ExchangeRequestActionRefused("Only a failed request can be retried.")
    with transaction.atomic():
        moved = exchange_request_transition(
            payer=payer,
            exchange_request_id=exchange_request.pk,
            from_status=ExchangeStatus.FAILED,
            to_status=ExchangeStatus.CONSENTED,
            message=f"Retried by the plan administrator {actor.get_username()}.",
            actor=actor,
            action="exchange_request.retry",
            client_address=client_address,
        )
        if not moved:
            raise ExchangeRequestActionRefused(
                "The request changed while you were looking at it; reload the page."
            )
        # The retry starts over: nothing staged by the failed attempt may mix in.
        records_retrieval_reset(exchange_request=exchange_request, storage=payload_storage())
        # A cohort member retried alone goes the single-member way ($member-match).
        ExchangeRequest.objects.for_payer(payer).filter(pk=exchange_request.pk).update(
            screened_out_counts={}, resume_count=0, awaits_bulk_job=False
        )
        transaction.on_commit(lambda: _enqueue_next_step(exchange_request))
    exchange_request.refresh_from_db()
    return exchange_request


def exchange_request_cancel(
    *, payer: Payer, request_id: int, actor: User, client_address: str | None = None
) -> ExchangeRequest:
    """Stop a request that has not ended; the member sees it cancelled on their timeline."""
    exchange_request = get_for_payer_or_404(ExchangeRequest.objects.all(), payer, pk=request_id)
    current = exchange_request.status
    if current in ENDED:
        raise ExchangeRequestActionRefused(
            f"The request has already ended ({exchange_request.get_status_display().lower()})."
        )
    moved = exchange_request_transition(
        payer=payer,
        exchange_request_id=exchange_request.pk,
        from_status=current,
        to_status=ExchangeStatus.CANCELLED,
        message=f"Cancelled by the plan administrator {actor.get_username()}.",
        actor=actor,
        action="exchange_request.cancel",
        client_address=client_address,
        reason_code="cancelled_by_payer",
        reason_message="Your health plan cancelled this request.",
    )
    if not moved:
        raise ExchangeRequestActionRefused(
            "The request changed while you were looking at it; reload the page."
        )
    exchange_request.refresh_from_db()
    return exchange_request
