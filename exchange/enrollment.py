"""Open exchanges for members a payer enrolls, with no member sign-in (STYLE.md #1: services write).

Work arrives here two ways (ARCHITECTURE.md "One exchange, end to end"): a roster a plan
administrator uploads (exchange/bulk/services.py, cohorts) and an opt-in a payer system
posts at enrollment (``opt_in_create``, the payer-system API). Both find or create the
member by the member id at the new payer (claimable at the member's first sign-in,
members/sign_in.py) and give each former payer what a member's own request gets
(exchange/services.py ``exchange_request_create``): an HRex Consent, an ExchangeRequest on
the rule's clock, a timeline event and an audit event.
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateformat import format as date_format

from exchange.consents.services import ConsentGiven, consents_create
from exchange.education import (
    member_education_version_current,
    member_education_version_problem,
    opt_in_withdrawal_record,
)
from exchange.fhir.endpoints import holder_endpoint_get
from exchange.fhir.errors import FhirPermanentError
from exchange.match_limits import (
    MemberMatchLimited,
    member_match_attempts_check,
    member_match_attempts_spend,
)
from exchange.member_links.services import member_authorization_links_create
from exchange.models import (
    AuthorizationMode,
    ConsentPolicy,
    ExchangeEvent,
    ExchangeRequest,
    ExchangeStatus,
    OptInMethod,
    OptInRecord,
)
from exchange.schedules import pull_schedules_open
from exchange.services import (
    ExchangeRequestRefused,
    authorization_mode_for,
    exchange_request_withdraw,
)
from exchange.state_machine import ENDED
from exchange.tasks import exchange_request_advance
from hub.audit import audit_record, audit_record_many
from hub.models import Payer, PayerStatus, Role, User
from hub.tenancy import get_for_payer_or_404

# Rows per INSERT (and per UPDATE of users) when many members' rows are written.
_BATCH_SIZE = 1000
# CMS-0057-F: previous payers "of the last five years" are asked (42 CFR 422.121(b)).
_PREVIOUS_PAYER_YEARS = 5


@dataclass(frozen=True)
class MemberOptIn:
    """One member's opt-in for one former (or concurrent) payer, as the new payer's
    enrollment knows it: what a Consent and an ExchangeRequest are made of."""

    # The member's id at the new payer (User.plan_member_id, HRex CoverageToLink).
    member_id: str
    family: str
    given: tuple[str, ...]
    birth_date: date
    gender: str
    # Participating, and not the new payer itself.
    former_payer: Payer
    # The member id printed on the former plan's card (HRex CoverageToMatch).
    former_member_id: str
    former_coverage_start: date
    # None while the member is still covered there (concurrent coverage).
    former_coverage_end: date | None
    # The start of the coverage at the new payer: it starts the rule's clock (CMS-0057-F).
    new_coverage_start: date
    policy: ConsentPolicy
    opted_in_at: datetime
    # Payer-to-payer, unless the former payer offers only the member's own sign-in there.
    # (Keyword-only: a roster's member, exchange/bulk/roster.py, adds fields after it.)
    authorization_mode: AuthorizationMode = field(
        default=AuthorizationMode.BACKEND_SERVICES, kw_only=True
    )


def members_find_or_create(
    *, payer: Payer, opt_ins: Sequence[MemberOptIn], _retry: bool = True
) -> tuple[dict[str, User], set[int]]:
    """Return the member User of each member id of ``opt_ins`` at ``payer`` (found by its
    member id, else created to be claimed at the member's first sign-in, members/sign_in.py),
    and the ids of those created. Demographics are the opt-ins'."""
    people = {opt_in.member_id: opt_in for opt_in in opt_ins}
    users: dict[str, User] = {}
    # A member who has signed in is preferred to one only a roster or an opt-in made.
    for user in sorted(
        User.objects.filter(payer=payer, role=Role.MEMBER, plan_member_id__in=list(people)),
        key=lambda user: (user.oidc_subject == "", user.pk),
    ):
        users.setdefault(user.plan_member_id, user)
    for member_id, user in users.items():
        _demographics_set(user, people[member_id])
    User.objects.bulk_update(
        users.values(),
        ["first_name", "last_name", "birth_date", "gender"],
        batch_size=_BATCH_SIZE,
    )
    new_ids = [member_id for member_id in people if member_id not in users]
    usernames = _usernames_free(payer=payer, member_ids=new_ids)
    created = []
    for member_id in new_ids:
        user = User(
            username=usernames[member_id],
            payer=payer,
            role=Role.MEMBER,
            plan_member_id=member_id,
            oidc_subject="",
        )
        user.set_unusable_password()
        _demographics_set(user, people[member_id])
        created.append(user)
    try:
        with transaction.atomic():
            User.objects.bulk_create(created, batch_size=_BATCH_SIZE)
    except IntegrityError:
        # Another transaction created some of these members at the same moment (two opt-ins
        # of one new member posted at once) and has committed: their usernames, derived from
        # the member id, are taken. Found now, they are used as members found; once only.
        if not _retry:
            raise
        return members_find_or_create(payer=payer, opt_ins=opt_ins, _retry=False)
    users |= {user.plan_member_id: user for user in created}
    return users, {user.pk for user in created}


def _demographics_set(user: User, opt_in: MemberOptIn) -> None:
    user.first_name = " ".join(opt_in.given)
    user.last_name = opt_in.family
    user.birth_date = opt_in.birth_date
    user.gender = opt_in.gender


def _usernames_free(*, payer: Payer, member_ids: list[str]) -> dict[str, str]:
    """Return a username per member id: ``<slug>-roster-<digest>``, numbered on in the rare
    case a person whose member id has changed since holds it already."""
    wanted = {
        member_id: f"{payer.slug}-roster-{hashlib.sha256(member_id.encode()).hexdigest()[:16]}"
        for member_id in member_ids
    }
    taken = set(
        User.objects.filter(username__in=list(wanted.values())).values_list("username", flat=True)
    )
    for member_id, username in wanted.items():
        candidate, number = username, 2
        while candidate in taken or (
            candidate != username and User.objects.filter(username=candidate).exists()
        ):
            candidate, number = f"{username}-{number}", number + 1
        taken.add(candidate)
        wanted[member_id] = candidate
    return wanted


def enrollment_requests_create(
    *,
    new_payer: Payer,
    opt_ins: Sequence[MemberOptIn],
    users: dict[str, User],
    audit_details: Sequence[dict[str, Any]],
    actor: User | None,
    actor_label: str = "",
    client_address: str | None,
    asked_with: int = 0,
    consent_ends_on: date | None = None,
    opt_in_record: OptInRecord | None = None,
) -> list[ExchangeRequest]:
    """Write each opt-in's consent, payer-to-payer request, timeline event and audit event.

    ``users`` is ``members_find_or_create``'s; ``audit_details`` adds to each request's
    audit event; ``asked_with`` is how many other members each is asked for at once (a
    cohort's); ``consent_ends_on`` overrides the consent period's end the rule suggests.
    The caller enqueues the work once its transaction commits.
    """
    now = timezone.now()
    today = timezone.localdate(now)
    concurrent = [_is_concurrent(opt_in, today) for opt_in in opt_ins]
    consents = consents_create(
        new_payer=new_payer,
        given=[
            ConsentGiven(
                member=users[opt_in.member_id],
                former_payer=opt_in.former_payer,
                policy=opt_in.policy,
                period_start=today,
                period_end=consent_ends_on
                or _consent_period_end(opt_in, today=today, concurrent=is_concurrent),
                opted_in_at=opt_in.opted_in_at,
            )
            for opt_in, is_concurrent in zip(opt_ins, concurrent, strict=True)
        ],
    )
    requests = ExchangeRequest.objects.bulk_create(
        [
            ExchangeRequest(
                payer=new_payer,
                member=users[opt_in.member_id],
                former_payer=opt_in.former_payer,
                consent=consent,
                opt_in_record=opt_in_record,
                authorization_mode=opt_in.authorization_mode,
                status=ExchangeStatus.CONSENTED,
                status_changed_at=now,
                opted_in_at=opt_in.opted_in_at,
                due_by=_due_by(opt_in),
                card_member_id=opt_in.former_member_id,
                coverage_start=opt_in.former_coverage_start,
                coverage_end=opt_in.former_coverage_end,
                is_concurrent=is_concurrent,
            )
            for opt_in, consent, is_concurrent in zip(opt_ins, consents, concurrent, strict=True)
        ],
        batch_size=_BATCH_SIZE,
    )
    ExchangeEvent.objects.bulk_create(
        [
            ExchangeEvent(
                payer=new_payer,
                exchange_request=exchange_request,
                status=ExchangeStatus.CONSENTED,
                message=_asked_message(opt_in.former_payer, asked_with, opt_in.opted_in_at),
            )
            for opt_in, exchange_request in zip(opt_ins, requests, strict=True)
        ],
        batch_size=_BATCH_SIZE,
    )
    audit_record_many(
        action="exchange_request.create",
        changes_by_object=[
            (
                exchange_request,
                {"former_payer": opt_in.former_payer.slug, "policy": opt_in.policy, **details},
            )
            for opt_in, exchange_request, details in zip(
                opt_ins, requests, audit_details, strict=True
            )
        ],
        payer=new_payer,
        actor=actor,
        actor_label=actor_label,
        client_address=client_address,
    )
    pull_schedules_open(requests=requests)
    return requests


def _is_concurrent(opt_in: MemberOptIn, today: date) -> bool:
    end = opt_in.former_coverage_end
    return end is None or end >= today


def _consent_period_end(opt_in: MemberOptIn, *, today: date, concurrent: bool) -> date:
    """Return the last day of a member's consent, when the opt-in does not say.

    PDex STU 2.2 §pdex-208 suggests a consent period of 90 days after the new plan starts
    for a new enrollee, or up to the end of coverage for concurrent coverage. When
    concurrent coverage ends is not known, so it gets a year (as a member's own request
    does, exchange/services.py), within which the rule's quarterly re-requests fall
    (CMS-0057-F). A new enrollee's 90 days are counted from the new coverage's start, but
    last at least 30 days from today, so an opt-in sent late still leaves the former payer
    time to answer.
    """
    if concurrent:
        return today + timedelta(days=365)
    return max(opt_in.new_coverage_start + timedelta(days=90), today + timedelta(days=30))


def _due_by(opt_in: MemberOptIn) -> datetime:
    """Return when the rule wants the request made: one week after the later of the start of
    coverage and the opt-in (CMS-0057-F, 42 CFR 422.121(b)). The coverage starts at the
    beginning of its first day in the hub's time zone."""
    coverage_starts = datetime.combine(
        opt_in.new_coverage_start, time.min, tzinfo=timezone.get_current_timezone()
    )
    return max(opt_in.opted_in_at, coverage_starts) + timedelta(days=settings.EXCHANGE_DUE_DAYS)


def _asked_message(former_payer: Payer, others: int, opted_in_at: datetime) -> str:
    """Return the member's timeline line: who is asked, with how many others, agreed when."""
    agreed = date_format(opted_in_at.date(), "F j, Y")
    if others == 0:
        return f"Your plan asked {former_payer.name} for your records, as you agreed on {agreed}."
    members = "member" if others == 1 else "members"
    return (
        f"Your plan asked {former_payer.name} for your records with {others:,} other "
        f"{members}, as you agreed on {agreed}."
    )


# --- Opt-ins a payer system posts at enrollment ----------------------------------------


@dataclass(frozen=True)
class Enrollee:
    """The member as the new payer enrolled them (HRex MemberPatient and CoverageToLink)."""

    member_id: str
    family: str
    given: tuple[str, ...]
    birth_date: date
    gender: str
    new_coverage_start: date
    # Where the hub mails the member the link to allow a transfer at a former payer that
    # offers only member-authorized access (exchange/member_links/); "" if not given.
    email: str = ""


@dataclass(frozen=True)
class OtherCoverage:
    """A previous or concurrent payer as the enrollment recorded it, from the member's old card.

    ``where`` is how the caller's input names it (``previous_payers[0]``): every problem
    found with it is reported under that name and the attribute's.
    """

    where: str
    former_payer: Payer
    card_member_id: str
    coverage_start: date
    coverage_end: date | None
    concurrent: bool


@dataclass(frozen=True)
class OptInAttestation:
    """The new payer's word on when and how it obtained the member's opt-in (CMS-0057-F
    asks the request to include "an attestation of enrollment and opt-in")."""

    obtained_at: datetime
    method: OptInMethod
    # The version of the member-education text shown at the opt-in, if the payer says;
    # otherwise the version current at ``obtained_at`` is recorded (exchange/education.py).
    education_text_version: str


@dataclass(frozen=True)
class OptInProblem:
    field: str  # the caller's name of the field at fault, e.g. "previous_payers[0].payer"
    message: str


class OptInRefused(ValueError):
    """The opt-in cannot be taken; ``problems`` names each field at fault. Nothing is written.

    ``conflict`` when the opt-in is sound but the member's opt-in for these payers is open
    already (sent twice, or twice at once): nothing to fix in it, only to withdraw the first.
    """

    def __init__(self, problems: list[OptInProblem], *, conflict: bool = False) -> None:
        super().__init__(problems[0].message)
        self.problems = problems
        self.conflict = conflict


def opt_in_create(
    *,
    new_payer: Payer,
    enrollee: Enrollee,
    coverages: Sequence[OtherCoverage],
    policy: ConsentPolicy,
    consent_ends_on: date | None,
    attestation: OptInAttestation,
    actor_label: str,
    client_address: str | None = None,
) -> OptInRecord:
    """Record the opt-in a payer system attests and open one request per other payer, all of
    them or nothing: payer-to-payer, enqueued once the transaction commits; or, where the
    former payer offers only member-authorized access, awaiting the member's sign-in there,
    with the link mailed to the member once it commits (exchange/member_links/).

    Raises OptInRefused naming every field at fault.
    """
    now = timezone.now()
    today = timezone.localdate(now)
    problems = _opt_in_problems(
        new_payer=new_payer,
        coverages=coverages,
        consent_ends_on=consent_ends_on,
        attestation=attestation,
        now=now,
        today=today,
    )
    problems += _member_email_problems(
        new_payer=new_payer, coverages=coverages, email=enrollee.email
    )
    if problems:
        raise OptInRefused(problems)
    modes = {c.former_payer.pk: authorization_mode_for(c.former_payer) for c in coverages}
    opt_ins = [
        MemberOptIn(
            member_id=enrollee.member_id,
            family=enrollee.family,
            given=enrollee.given,
            birth_date=enrollee.birth_date,
            gender=enrollee.gender,
            former_payer=coverage.former_payer,
            former_member_id=coverage.card_member_id,
            former_coverage_start=coverage.coverage_start,
            former_coverage_end=coverage.coverage_end,
            new_coverage_start=enrollee.new_coverage_start,
            policy=policy,
            opted_in_at=attestation.obtained_at,
            authorization_mode=modes[coverage.former_payer.pk],
        )
        for coverage in coverages
    ]
    with transaction.atomic():
        users, created_ids = members_find_or_create(payer=new_payer, opt_ins=opt_ins[:1])
        # Locked, so two opt-ins of one member posted at once are checked one after the other.
        member = User.objects.select_for_update().get(pk=users[enrollee.member_id].pk)
        open_requests = _open_requests(new_payer=new_payer, member=member, coverages=coverages)
        if open_requests:
            raise OptInRefused(open_requests, conflict=True)
        former_payers = [coverage.former_payer for coverage in coverages]
        try:
            member_match_attempts_check(
                new_payer=new_payer, member=member, former_payers=former_payers, for_member=False
            )
        except MemberMatchLimited as exc:
            # The API's 429; a member made here is rolled back with everything else.
            exc.field = next(c.where for c in coverages if c.former_payer == exc.former_payer)
            raise
        education_text_version = attestation.education_text_version or (
            member_education_version_current(payer=new_payer, at=attestation.obtained_at)
        )
        record = OptInRecord.objects.create(
            payer=new_payer,
            member=member,
            obtained_at=attestation.obtained_at,
            method=attestation.method,
            education_text_version=education_text_version,
            policy=policy,
            new_coverage_start=enrollee.new_coverage_start,
            attested_by=actor_label,
        )
        requests = enrollment_requests_create(
            new_payer=new_payer,
            opt_ins=opt_ins,
            users=users,
            audit_details=[{"opt_in": record.pk} for _ in opt_ins],
            actor=None,
            actor_label=actor_label,
            client_address=client_address,
            consent_ends_on=consent_ends_on,
            opt_in_record=record,
        )
        member_match_attempts_spend(member=member, former_payers=former_payers)
        audit_record(
            action="opt_in.create",
            obj=record,
            payer=new_payer,
            actor_label=actor_label,
            changes={
                "method": attestation.method,
                "obtained_at": attestation.obtained_at.isoformat(),
                "education_text_version": education_text_version,
                "policy": policy,
                "requests": [request.pk for request in requests],
                "member_new_to_the_hub": member.pk in created_ids,
            },
            client_address=client_address,
        )
        asks_member = [
            r for r in requests if r.authorization_mode == AuthorizationMode.MEMBER_AUTHORIZED
        ]
        if asks_member:
            member_authorization_links_create(
                payer=new_payer,
                exchange_requests=asks_member,
                email=enrollee.email,
                actor_label=actor_label,
                client_address=client_address,
            )
        for request in requests:
            if request not in asks_member:
                transaction.on_commit(
                    partial(exchange_request_advance.delay, request.pk, new_payer.pk)
                )
    return record


def _opt_in_problems(
    *,
    new_payer: Payer,
    coverages: Sequence[OtherCoverage],
    consent_ends_on: date | None,
    attestation: OptInAttestation,
    now: datetime,
    today: date,
) -> list[OptInProblem]:
    """Return what is wrong with an opt-in before anything is written."""
    problems: list[OptInProblem] = []
    if new_payer.status == PayerStatus.SUSPENDED:
        problems.append(OptInProblem("", new_payer.exchange_suspended_sentence))
    if not coverages:
        problems.append(
            OptInProblem("previous_payers", "Name at least one previous or concurrent payer.")
        )
    if attestation.obtained_at > now:
        problems.append(
            OptInProblem("attestation.obtained_at", "The opt-in cannot be obtained in the future.")
        )
    if unknown := member_education_version_problem(
        payer=new_payer, version=attestation.education_text_version
    ):
        problems.append(OptInProblem("attestation.education_text_version", unknown))
    if consent_ends_on is not None and consent_ends_on < today:
        problems.append(
            OptInProblem(
                "consent.ends_on",
                f"The consent ended on {consent_ends_on.isoformat()}; a consent that has ended "
                "cannot be acted on (HRex Consent: today must be within its period).",
            )
        )
    seen: set[int] = set()
    for coverage in coverages:
        if coverage.former_payer.pk in seen:
            problems.append(
                OptInProblem(
                    f"{coverage.where}.payer",
                    f"{coverage.former_payer.name} is named twice; name each payer once.",
                )
            )
        seen.add(coverage.former_payer.pk)
        problems += _coverage_problems(new_payer=new_payer, coverage=coverage, today=today)
    return problems


def _coverage_problems(
    *, new_payer: Payer, coverage: OtherCoverage, today: date
) -> list[OptInProblem]:
    where, former_payer = coverage.where, coverage.former_payer
    problems: list[OptInProblem] = []
    refusal = _former_payer_refusal(new_payer=new_payer, former_payer=former_payer)
    if refusal:
        problems.append(OptInProblem(f"{where}.payer", refusal))
    start, end = coverage.coverage_start, coverage.coverage_end
    if start > today:
        problems.append(
            OptInProblem(
                f"{where}.coverage_start",
                f"The coverage starts in the future ({start.isoformat()}); only coverage that "
                "has begun has records to ask for.",
            )
        )
    if end is not None and end < start:
        problems.append(
            OptInProblem(f"{where}.coverage_end", "The coverage ends before it starts.")
        )
    elif coverage.concurrent and end is not None and end < today:
        problems.append(
            OptInProblem(
                f"{where}.coverage_end",
                f"The coverage ended on {end.isoformat()}; list it under previous_payers.",
            )
        )
    elif not coverage.concurrent and (end is None or end >= today):
        problems.append(
            OptInProblem(
                f"{where}.coverage_end",
                "A previous payer's coverage has ended: give its last day, before today; "
                "coverage that goes on belongs under concurrent_payers.",
            )
        )
    elif end is not None and end < _years_before(today, _PREVIOUS_PAYER_YEARS):
        problems.append(
            OptInProblem(
                f"{where}.coverage_end",
                f"The coverage ended more than {_PREVIOUS_PAYER_YEARS} years ago; the rule asks "
                "for previous payers of the last five years (CMS-0057-F).",
            )
        )
    return problems


def _years_before(day: date, years: int) -> date:
    """Return the same day ``years`` earlier (February 29 falls back to the 28th)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def _former_payer_refusal(*, new_payer: Payer, former_payer: Payer) -> str:
    """Return why the hub cannot ask ``former_payer`` for the member's records, or "" if it can."""
    if former_payer.pk == new_payer.pk:
        return f"{former_payer.name} is your own plan."
    if former_payer.status == PayerStatus.SUSPENDED:
        return former_payer.exchange_suspended_sentence
    if former_payer.status != PayerStatus.PARTICIPATING:
        return f"{former_payer.name} does not take part in the hub yet."
    try:
        endpoint = holder_endpoint_get(former_payer=former_payer)
    except FhirPermanentError as exc:
        return str(exc)
    if not endpoint.offers_backend_services and not endpoint.offers_member_authorization:
        return (
            f"{former_payer.name} offers neither payer-to-payer access (SMART Backend "
            "Services) nor the member's own sign-in there (SMART App Launch)."
        )
    return ""


def _member_email_problems(
    *, new_payer: Payer, coverages: Sequence[OtherCoverage], email: str
) -> list[OptInProblem]:
    """Return the problem of an opt-in naming a former payer the member must sign in at
    to allow the transfer, without the address to send them the link to do it."""
    signs_in = [
        c.former_payer.name
        for c in coverages
        if not _former_payer_refusal(new_payer=new_payer, former_payer=c.former_payer)
        and _asks_the_member(c.former_payer)
    ]
    if not signs_in or email:
        return []
    return [
        OptInProblem(
            "member.email",
            f"{' and '.join(signs_in)} {'shares' if len(signs_in) == 1 else 'share'} records "
            "only once the member signs in there and "
            "allows it (member-authorized access, SMART App Launch); give the member's email "
            "address, so the hub can send them the link to do it.",
        )
    ]


def _asks_the_member(former_payer: Payer) -> bool:
    """Return whether the hub can reach ``former_payer``'s records only by the member's own
    sign-in there (exchange/services.py ``authorization_mode_for`` decides)."""
    try:
        return authorization_mode_for(former_payer) == AuthorizationMode.MEMBER_AUTHORIZED
    except ExchangeRequestRefused:
        return False  # _former_payer_refusal names why


def _open_requests(
    *, new_payer: Payer, member: User, coverages: Sequence[OtherCoverage]
) -> list[OptInProblem]:
    """Return a problem for each payer the member already has an open request with."""
    open_ids = dict(
        ExchangeRequest.objects.for_payer(new_payer)
        .filter(member=member, former_payer__in=[c.former_payer for c in coverages])
        .exclude(status__in=ENDED)
        .values_list("former_payer_id", "pk")
    )
    return [
        OptInProblem(
            f"{coverage.where}.payer",
            f"This member's opt-in for {coverage.former_payer.name} is already open "
            f"(request {open_ids[coverage.former_payer.pk]}); withdraw it first to start over.",
        )
        for coverage in coverages
        if coverage.former_payer.pk in open_ids
    ]


def opt_in_withdraw(
    *, payer: Payer, opt_in_id: int, actor_label: str, client_address: str | None = None
) -> OptInRecord:
    """Withdraw the member's opt-in as the payer system relays it: each of its consents
    becomes inactive and its requests end, as when the member withdraws in the portal
    (exchange/services.py ``exchange_request_withdraw``). Withdrawing again changes nothing."""
    record = get_for_payer_or_404(OptInRecord.objects.all(), payer, pk=opt_in_id)
    with transaction.atomic():
        # Recorded with the member-education text current now (42 CFR 422.121(b)).
        claimed = opt_in_withdrawal_record(payer=payer, opt_in_record_id=record.pk)
        if not claimed:
            record.refresh_from_db()
            return record
        for exchange_request in (
            ExchangeRequest.objects.for_payer(payer)
            .filter(opt_in_record=record)
            .select_related("consent")
        ):
            exchange_request_withdraw(
                exchange_request=exchange_request,
                actor=None,
                actor_label=actor_label,
                client_address=client_address,
            )
        audit_record(
            action="opt_in.withdraw",
            obj=record,
            payer=payer,
            actor_label=actor_label,
            client_address=client_address,
        )
    record.refresh_from_db()
    return record
