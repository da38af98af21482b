"""The request lifecycle as the engine drives it: the steps of one exchange, end to end
(ARCHITECTURE.md "One exchange, end to end"), and failing, deferring and resuming them.

What people and payer systems do to a request is in exchange/services.py. Each step here
is a service the Celery task of the same name in ``exchange/tasks.py`` calls with ids. A step
claims its work with a state transition (a conditional UPDATE, exchange/state_machine.py),
so a task delivered twice, or a request the reaper resumes, cannot run a step twice in a
way that shows: retrieval resumes from its cursor, screening and packaging overwrite their
own outputs, delivery skips files already delivered whole and sends the manifest last.

Errors are of two kinds (STYLE.md #6): ``StepDeferred`` (transient: the task retries
later, honouring Retry-After) and ``StepFailed`` (permanent: the request ends ``failed``
with a reason the member and the administrators can act on).
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from exchange.delivery import (
    DeliveredFile,
    DeliveryFailed,
    deliver_files,
    delivery_remote_directory,
)
from exchange.fhir.errors import FhirCallError
from exchange.match_limits import member_match_no_match_record
from exchange.member_match import member_match_run
from exchange.models import (
    AuthorizationMode,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    ExchangeRequest,
    ExchangeStatus,
)
from exchange.packaging import (
    Package,
    PackageContext,
    PayerParty,
    package_build,
    package_delivery_order,
)
from exchange.payloads.layout import RequestFiles
from exchange.payloads.storage import PayloadCorrupt, PayloadStorage
from exchange.request_stopped import RequestStopped
from exchange.retrieval import records_retrieve
from exchange.schedules import pull_schedules_delivered
from exchange.screening import ScreeningResult, ScreeningRun, screening_complete, screening_run
from exchange.state_machine import (
    IN_PROGRESS,
    Move,
    exchange_requests_stuck_filter,
    exchange_requests_transition,
)
from hub.audit import ENGINE, audit_record_many

logger = logging.getLogger(__name__)
S = ExchangeStatus
_T = TypeVar("_T")


class StepDeferred(Exception):
    """A transient failure: try the step again after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StepFailed(Exception):
    """A permanent failure: the request ends ``failed`` with this code and sentence."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _load(request_id: int, payer_id: int) -> ExchangeRequest:
    return (
        ExchangeRequest.objects.for_payer(payer_id)
        .select_related("payer", "former_payer", "consent", "member")
        .get(pk=request_id)
    )


def _load_many(request_ids: Sequence[int], payer_id: int) -> list[ExchangeRequest]:
    return list(
        ExchangeRequest.objects.for_payer(payer_id)
        .select_related("payer", "former_payer", "consent", "member")
        .filter(pk__in=request_ids)
        .order_by("pk")
    )


def engine_move(
    exchange_request: ExchangeRequest,
    to_status: str,
    message: str,
    *,
    action: str = "exchange_request.transition",
    details: dict[str, Any] | None = None,
    reason_code: str = "",
    reason_message: str = "",
) -> bool:
    """Move the request as the engine (the state machine's conditional UPDATE, its timeline
    and audit events); return whether this call moved it, and keep the object's state."""
    return bool(
        engine_move_many(
            [exchange_request],
            to_status,
            lambda _: message,
            action=action,
            details=(lambda _: details) if details else None,
            reason_code=reason_code,
            reason_message=reason_message,
        )
    )


def engine_move_many(
    requests: Sequence[ExchangeRequest],
    to_status: str,
    message: Callable[[ExchangeRequest], str],
    *,
    action: str = "exchange_request.transition",
    details: Callable[[ExchangeRequest], dict[str, Any]] | None = None,
    reason_code: str = "",
    reason_message: str = "",
) -> list[ExchangeRequest]:
    """Move many requests of one payer as the engine, in one transaction per state they are
    in (exchange/state_machine.py ``exchange_requests_transition``); return those this call
    moved, their objects' state kept. ``message`` and ``details`` are per request."""
    moved: list[ExchangeRequest] = []
    by_status: dict[str, list[ExchangeRequest]] = {}
    for exchange_request in requests:
        by_status.setdefault(exchange_request.status, []).append(exchange_request)
    for from_status, group in by_status.items():
        moved_ids = exchange_requests_transition(
            payer=group[0].payer_id,
            moves=[
                Move(r.pk, message(r), details(r) if details is not None else {}) for r in group
            ],
            from_status=from_status,
            to_status=to_status,
            actor=None,
            actor_label=ENGINE,
            action=action,
            reason_code=reason_code,
            reason_message=reason_message,
        )
        for exchange_request in group:
            if exchange_request.pk in moved_ids:
                exchange_request.status = to_status
                moved.append(exchange_request)
    return moved


def _claim(
    exchange_request: ExchangeRequest, *, ready: set[str], working: str, message: str
) -> bool:
    """Move a request that is ``ready`` into the ``working`` state of a step; return whether
    this step should run — also when the request is already ``working`` (a resumed step)."""
    if exchange_request.status in ready:
        return engine_move(exchange_request, working, message)
    return exchange_request.status == working


def exchange_request_fail(*, request_id: int, payer_id: int, code: str, message: str) -> None:
    """End the request ``failed`` from whatever in-progress state it is in."""
    exchange_request = _load(request_id, payer_id)
    if exchange_request.status not in IN_PROGRESS:
        return
    engine_move(
        exchange_request,
        S.FAILED,
        f"Stopped: {message}",
        reason_code=code,
        reason_message=message,
    )


# --- Step 1: match (payer-to-payer), or wait for the member's launch ---


def exchange_request_match(*, request_id: int, payer_id: int) -> str | None:
    """Find the member at the former payer ($member-match, HRex §mm); return the next state
    to run, or None when there is none yet (a member-authorized request waits for the
    member's sign-in at the former payer, exchange/services.py exchange_request_authorize)."""
    exchange_request = _load(request_id, payer_id)
    if exchange_request.authorization_mode == AuthorizationMode.MEMBER_AUTHORIZED:
        if exchange_request.status == S.CONSENTED:
            engine_move(
                exchange_request,
                S.AWAITING_AUTHORIZATION,
                f"Waiting for you to sign in at {exchange_request.former_payer.name} "
                "and allow the transfer.",
            )
        return None
    if not _claim(
        exchange_request,
        ready={S.CONSENTED},
        working=S.MATCHING,
        message=f"Looking for you among {exchange_request.former_payer.name}'s members.",
    ):
        return None
    try:
        outcome = member_match_run(exchange_request=exchange_request)
    except FhirCallError as exc:
        raise _step_error(exc) from exc
    if outcome.status == S.MATCHED:
        engine_move(exchange_request, S.MATCHED, f"{exchange_request.former_payer.name} found you.")
        return S.MATCHED
    moved = engine_move(
        exchange_request,
        outcome.status,
        outcome.reason_message,
        reason_code=outcome.reason_code,
        reason_message=outcome.reason_message,
    )
    if moved and outcome.status == S.NO_MATCH:
        # Counted once, by the call that moved the request (a redelivered task does not).
        member_match_no_match_record(
            new_payer=exchange_request.payer, former_payer=exchange_request.former_payer
        )
    return None


def _step_error(exc: FhirCallError) -> Exception:
    """Sort a failed call to the former payer into give up or try again (STYLE.md #6)."""
    if exc.permanent:
        return StepFailed(exc.code, exc.message)
    return StepDeferred(exc.message, retry_after=exc.retry_after)


# --- Step 2: retrieve ---


def exchange_request_retrieve(
    *, request_id: int, payer_id: int, storage: PayloadStorage
) -> str | None:
    """Fetch the member's records into staging, resuming where a previous run stopped."""
    exchange_request = _load(request_id, payer_id)
    if not _claim(
        exchange_request,
        ready={S.MATCHED, S.AUTHORIZED},
        working=S.RETRIEVING,
        message=f"Fetching your records from {exchange_request.former_payer.name}.",
    ):
        return None
    # Screened page by page as staged, so the screening step finds the work done.
    screening = ScreeningRun(
        request_id=request_id, storage=storage, **_screening_terms(exchange_request)
    )
    try:
        result = records_retrieve(
            exchange_request=exchange_request, storage=storage, screening=screening
        )
    except FhirCallError as exc:
        raise _step_error(exc) from exc
    exchange_request_records_received(
        exchange_request=exchange_request, resource_counts=result.resource_counts
    )
    return S.SCREENING


def exchange_request_records_received(
    *, exchange_request: ExchangeRequest, resource_counts: dict[str, int]
) -> bool:
    """Move a retrieving request on to screening; return whether this call moved it."""
    return bool(exchange_requests_records_received(received=[(exchange_request, resource_counts)]))


def exchange_requests_records_received(
    *, received: Sequence[tuple[ExchangeRequest, dict[str, int]]]
) -> list[ExchangeRequest]:
    """Move retrieving requests of one payer on to screening; return those this call moved.

    The end of retrieval is a disclosure by the former payer: it is audited for both
    payers with the count of resources per type (never their content), whether the records
    came one member at a time or in a cohort's Group export.
    """
    counts = {
        exchange_request.pk: resource_counts for exchange_request, resource_counts in received
    }

    def disclosure(exchange_request: ExchangeRequest) -> dict[str, Any]:
        return {
            "disclosed_by": exchange_request.former_payer.slug,
            "disclosed_to": exchange_request.payer.slug,
            "resources": counts[exchange_request.pk],
        }

    with transaction.atomic():
        moved = engine_move_many(
            [exchange_request for exchange_request, _ in received],
            S.SCREENING,
            lambda r: f"Received {sum(counts[r.pk].values())} records from {r.former_payer.name}.",
            action="exchange_request.records_received",
            details=disclosure,
        )
        by_former: dict[int, list[ExchangeRequest]] = {}
        for exchange_request in moved:
            by_former.setdefault(exchange_request.former_payer_id, []).append(exchange_request)
        for former_payer_id, disclosed in by_former.items():
            audit_record_many(
                action="exchange_request.records_disclosed",
                changes_by_object=[(r, disclosure(r)) for r in disclosed],
                payer=former_payer_id,
                actor_label=ENGINE,
            )
    return moved


# --- Step 3: screen and package ---


def exchange_request_screen(
    *, request_id: int, payer_id: int, storage: PayloadStorage
) -> str | None:
    """Apply the rule's limits to the staged records, then package what may leave the hub."""
    exchange_request = _load(request_id, payer_id)
    _screen_and_package([exchange_request], storage=storage, alone=True)
    return S.DELIVERING if exchange_request.status == S.DELIVERING else None


def exchange_requests_screen(
    *, request_ids: Sequence[int], payer_id: int, storage: PayloadStorage
) -> list[int]:
    """Screen and package many requests of one payer together (a cohort's members handed
    over at once), their moves batched; return the ids this could not finish, for the caller
    to hand to the single-request step, which tries each again alone."""
    return _screen_and_package(_load_many(request_ids, payer_id), storage=storage, alone=False)


def _screen_and_package(
    requests: Sequence[ExchangeRequest], *, storage: PayloadStorage, alone: bool
) -> list[int]:
    """Screen those ``screening``, then package those ``packaging``; return the ids that
    raised (``alone``: raise instead)."""
    left: list[int] = []

    def each(
        step: Callable[[ExchangeRequest], _T], status: str
    ) -> list[tuple[ExchangeRequest, _T]]:
        done = []
        for exchange_request in requests:
            if exchange_request.status != status:
                continue
            try:
                done.append((exchange_request, step(exchange_request)))
            except Exception:
                if alone:
                    raise
                logger.exception("batch step failed", extra={"request": exchange_request.pk})
                left.append(exchange_request.pk)
        return done

    screened = each(partial(_screen_one, storage=storage), S.SCREENING)
    if screened:
        kept = {exchange_request.pk: result.kept_total for exchange_request, result in screened}
        for exchange_request, result in screened:
            exchange_request.screened_out_counts = {
                row["code"]: row["count"] for row in result.screened_out()
            }
        with transaction.atomic():
            ExchangeRequest.objects.for_payer(requests[0].payer_id).bulk_update(
                [exchange_request for exchange_request, _ in screened], ["screened_out_counts"]
            )
            engine_move_many(
                [exchange_request for exchange_request, _ in screened],
                S.PACKAGING,
                lambda r: (
                    f"Checked your records against the rule: {kept[r.pk]} may be shared, "
                    f"{sum(r.screened_out_counts.values())} stay behind."
                ),
            )
    packaged = each(partial(_package_one, storage=storage), S.PACKAGING)
    if packaged:
        with transaction.atomic():
            Delivery.objects.for_payer(requests[0].payer_id).bulk_create(
                [
                    Delivery(
                        payer_id=exchange_request.payer_id,
                        exchange_request=exchange_request,
                        mode=exchange_request.payer.delivery_mode,
                        manifest=package.manifest,
                    )
                    for exchange_request, package in packaged
                ],
                update_conflicts=True,
                unique_fields=["exchange_request"],
                update_fields=["mode", "manifest"],
            )
            engine_move_many(
                [exchange_request for exchange_request, _ in packaged],
                S.DELIVERING,
                lambda r: "Your records are packaged and on their way.",
            )
    return left


def _screen_one(exchange_request: ExchangeRequest, *, storage: PayloadStorage) -> ScreeningResult:
    # Screened as retrieved, a request's summary is reused; else it is screened now.
    return screening_complete(
        request_id=exchange_request.pk, storage=storage, **_screening_terms(exchange_request)
    )


def _screening_terms(exchange_request: ExchangeRequest) -> dict[str, Any]:
    """Return what the request is screened under: the day of the opt-in and the consent."""
    return {
        "request_date": timezone.localdate(exchange_request.opted_in_at),
        "policy": exchange_request.consent.policy,
    }


def _package_one(exchange_request: ExchangeRequest, *, storage: PayloadStorage) -> Package:
    def build() -> Package:
        return package_build(
            request_id=exchange_request.pk,
            storage=storage,
            manifest_context=PackageContext(
                request_id=exchange_request.pk,
                new_payer=PayerParty.of(exchange_request.payer),
                former_payer=PayerParty.of(exchange_request.former_payer),
                consent_id=str(exchange_request.consent_id),
                consent_policy=exchange_request.consent.policy,
                hub_name=settings.HUB_NAME,
                records_since=exchange_request.records_since,
                records_as_of=exchange_request.records_as_of,
                schedule_run=exchange_request.schedule_run,
            ),
        )

    try:
        return build()
    except PayloadCorrupt:
        # A screened file a crash cut short (they are not fsynced one by one) is refused
        # when read, never packaged: screen the staged record again, then package.
        screening_run(
            request_id=exchange_request.pk, storage=storage, **_screening_terms(exchange_request)
        )
        return build()


# --- Step 4: deliver ---


@dataclass
class _Sent:
    """A request whose files landed, waiting for its move to ``delivered``."""

    exchange_request: ExchangeRequest
    delivery: Delivery
    attempt: DeliveryAttempt
    remote_directory: str
    files: list[DeliveredFile]


def exchange_request_deliver(
    *, request_id: int, payer_id: int, task_id: str, storage: PayloadStorage
) -> str | None:
    """Send the package to the new payer; one DeliveryAttempt per task id."""
    exchange_request = _load(request_id, payer_id)
    if exchange_request.status != S.DELIVERING:
        return None
    sent = _delivery_send(exchange_request, task_id=task_id, storage=storage)
    _deliveries_finish([sent], storage=storage)
    return None


def exchange_requests_deliver(
    *, request_ids: Sequence[int], payer_id: int, task_id: str, storage: PayloadStorage
) -> list[int]:
    """Send the packages of many requests of one payer, one after another over the worker's
    pooled session, their moves to ``delivered`` batched; return the ids left for the
    single-request step. A permanent fault fails that member as it would alone; a transient
    one (the server is away) hands that member and the rest to the single-request step,
    which retries each with backoff."""
    requests = [r for r in _load_many(request_ids, payer_id) if r.status == S.DELIVERING]
    sent: list[_Sent] = []
    left: list[int] = []
    for position, exchange_request in enumerate(requests):
        try:
            sent.append(_delivery_send(exchange_request, task_id=task_id, storage=storage))
        except RequestStopped:
            continue
        except StepFailed as exc:
            exchange_request_fail(
                request_id=exchange_request.pk,
                payer_id=payer_id,
                code=exc.code,
                message=exc.message,
            )
        except Exception:
            logger.exception("batch delivery stopped", extra={"request": exchange_request.pk})
            left = [r.pk for r in requests[position:]]
            break
    _deliveries_finish(sent, storage=storage)
    return left


def _delivery_send(
    exchange_request: ExchangeRequest, *, task_id: str, storage: PayloadStorage
) -> _Sent:
    """Send one request's package, its attempt recorded; raise StepFailed, StepDeferred or
    RequestStopped when it did not land."""
    payer_id = exchange_request.payer_id
    request_id = exchange_request.pk
    delivery = Delivery.objects.for_payer(payer_id).get(exchange_request=exchange_request)
    attempt, _ = DeliveryAttempt.objects.get_or_create(
        payer_id=payer_id,
        delivery=delivery,
        task_id=task_id,
        defaults={"started_at": timezone.now()},
    )
    # An earlier attempt still open was cut off (its worker died): say so on its row.
    DeliveryAttempt.objects.for_payer(payer_id).filter(
        delivery=delivery, finished_at__isnull=True
    ).exclude(pk=attempt.pk).update(
        finished_at=timezone.now(),
        succeeded=False,
        error_code="interrupted",
        error_message="The worker stopped during this attempt; the next attempt took over.",
    )
    files = package_delivery_order(request_id=request_id, manifest=delivery.manifest)
    try:
        remote_directory = delivery_remote_directory(
            payer=exchange_request.payer,
            former_payer_slug=exchange_request.former_payer.slug,
            request_id=request_id,
        )
        Delivery.objects.for_payer(payer_id).filter(pk=delivery.pk).update(
            status=DeliveryStatus.IN_PROGRESS, remote_directory=remote_directory
        )
        delivered = deliver_files(
            payer=exchange_request.payer,
            remote_directory=remote_directory,
            storage=storage,
            files=files,
            on_progress=partial(_still_delivering, request_id=request_id, payer_id=payer_id),
        )
    except RequestStopped:
        _attempt_finished(
            attempt,
            succeeded=False,
            code="stopped",
            message="The request was withdrawn or cancelled during the delivery.",
        )
        raise
    except DeliveryFailed as exc:
        _attempt_finished(attempt, succeeded=False, code=exc.code, message=exc.message)
        if exc.permanent:
            Delivery.objects.for_payer(payer_id).filter(pk=delivery.pk).update(
                status=DeliveryStatus.FAILED
            )
            raise StepFailed(exc.code, exc.message) from exc
        raise StepDeferred(exc.message) from exc
    return _Sent(exchange_request, delivery, attempt, remote_directory, delivered)


def _deliveries_finish(sent: Sequence[_Sent], *, storage: PayloadStorage) -> None:
    """Record that the packages landed and move their requests to ``delivered``.

    The delivery is a disclosure to the new payer: its audit event names where the files
    went and each file's path, size and sha256 (never its content).
    """
    if not sent:
        return
    payer_id = sent[0].exchange_request.payer_id
    by_request = {done.exchange_request.pk: done for done in sent}
    now = timezone.now()
    for done in sent:
        done.attempt.finished_at = now
        done.attempt.succeeded = True
        done.attempt.error_code = done.attempt.error_message = ""

    def disclosure(exchange_request: ExchangeRequest) -> dict[str, Any]:
        done = by_request[exchange_request.pk]
        return {
            "disclosed_by": exchange_request.former_payer.slug,
            "disclosed_to": exchange_request.payer.slug,
            "mode": done.delivery.mode,
            "remote_directory": done.remote_directory,
            "files": [
                {"path": file.remote_path, "size": file.size, "sha256": file.sha256}
                for file in done.files
            ],
        }

    with transaction.atomic():
        DeliveryAttempt.objects.for_payer(payer_id).bulk_update(
            [done.attempt for done in sent],
            ["finished_at", "succeeded", "error_code", "error_message"],
        )
        Delivery.objects.for_payer(payer_id).filter(
            pk__in=[done.delivery.pk for done in sent]
        ).update(status=DeliveryStatus.DELIVERED, delivered_at=now)
        moved = engine_move_many(
            [done.exchange_request for done in sent],
            S.DELIVERED,
            lambda r: f"Delivered to {r.payer.name}: {len(by_request[r.pk].files)} files.",
            action="exchange_request.deliver",
            details=disclosure,
        )
        pull_schedules_delivered(requests=moved)
        for exchange_request in moved:
            staging = RequestFiles(exchange_request.pk).staging
            transaction.on_commit(partial(storage.delete_tree, staging))


def _still_delivering(*, request_id: int, payer_id: int) -> None:
    """A long upload moves: keep the reaper off it, and stop if the request was withdrawn."""
    moving = (
        ExchangeRequest.objects.for_payer(payer_id)
        .filter(pk=request_id, status=S.DELIVERING)
        .update(last_progress_at=timezone.now())
    )
    if not moving:
        raise RequestStopped("the request is no longer delivering")


def _attempt_finished(
    attempt: DeliveryAttempt, *, succeeded: bool, code: str = "", message: str = ""
) -> None:
    attempt.finished_at = timezone.now()
    attempt.succeeded = succeeded
    attempt.error_code = code
    attempt.error_message = message
    attempt.save(update_fields=["finished_at", "succeeded", "error_code", "error_message"])


def exchange_request_defer(*, request_id: int, payer_id: int, delay_seconds: float) -> None:
    """Note that the request's current step runs again in ``delay_seconds`` (a task retry).

    Waiting out a former payer's long ``Retry-After`` is not being stuck: the request counts
    as moving until the retry is due, so the reaper does not start a second chain of
    retries beside the scheduled one (STYLE.md #5).
    """
    ExchangeRequest.objects.for_payer(payer_id).filter(
        pk=request_id, status__in=IN_PROGRESS
    ).update(last_progress_at=timezone.now() + timedelta(seconds=delay_seconds))


def exchange_requests_resume_stuck(
    *, older_than_seconds: int, max_resumes: int, limit: int = 500
) -> list[tuple[int, int]]:
    """Claim the in-flight requests whose work has not moved for ``older_than_seconds`` (a
    worker died mid-step); fail those resumed more than ``max_resumes`` times already, and
    return (request id, payer id) of the others for the caller to advance again (Read the
    Docs' build reaper, STYLE.md #5)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    stuck = (
        ExchangeRequest.objects.across_payers(
            reason="the reaper looks at every payer's stuck requests; each is claimed scoped"
        )
        .filter(exchange_requests_stuck_filter(not_moved_since=cutoff))
        .values_list("pk", "payer_id", "status")
        .order_by("status_changed_at")[:limit]
    )
    to_resume = []
    for request_id, payer_id, status in stuck:
        # Claimed like a transition: a second reaper, or a step that moved meanwhile, wins.
        claimed = (
            ExchangeRequest.objects.for_payer(payer_id)
            .filter(pk=request_id, status=status, last_progress_at__lt=cutoff)
            .update(resume_count=F("resume_count") + 1, last_progress_at=timezone.now())
        )
        if not claimed:
            continue
        resumes = (
            ExchangeRequest.objects.for_payer(payer_id)
            .values_list("resume_count", flat=True)
            .get(pk=request_id)
        )
        if resumes > max_resumes:
            exchange_request_fail(
                request_id=request_id,
                payer_id=payer_id,
                code="stuck",
                message="the transfer stopped making progress; a plan administrator can retry it",
            )
            continue
        to_resume.append((request_id, payer_id))
    return to_resume
