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
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from exchange.delivery import DeliveryFailed, deliver_files, delivery_remote_directory
from exchange.fhir.errors import FhirCallError
from exchange.member_match import member_match_run
from exchange.models import (
    AuthorizationMode,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    ExchangeRequest,
    ExchangeStatus,
)
from exchange.packaging import PackageContext, PayerParty, package_build, package_delivery_order
from exchange.payloads.layout import RequestFiles
from exchange.payloads.storage import PayloadStorage
from exchange.request_stopped import RequestStopped
from exchange.retrieval import records_retrieve
from exchange.screening import ScreeningRun, screening_complete
from exchange.state_machine import IN_PROGRESS, exchange_request_transition
from hub.audit import ENGINE, audit_record

logger = logging.getLogger(__name__)
S = ExchangeStatus


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
    moved = exchange_request_transition(
        payer=exchange_request.payer_id,
        exchange_request_id=exchange_request.pk,
        from_status=exchange_request.status,
        to_status=to_status,
        message=message,
        actor=None,
        actor_label=ENGINE,
        action=action,
        details=details,
        reason_code=reason_code,
        reason_message=reason_message,
    )
    if moved:
        exchange_request.status = to_status
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
    engine_move(
        exchange_request,
        outcome.status,
        outcome.reason_message,
        reason_code=outcome.reason_code,
        reason_message=outcome.reason_message,
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
    """Move a retrieving request on to screening; return whether this call moved it.

    The end of retrieval is a disclosure by the former payer: it is audited for both
    payers with the count of resources per type (never their content), whether the records
    came one member at a time or in a cohort's Group export.
    """
    disclosure = {
        "disclosed_by": exchange_request.former_payer.slug,
        "disclosed_to": exchange_request.payer.slug,
        "resources": resource_counts,
    }
    with transaction.atomic():
        moved = engine_move(
            exchange_request,
            S.SCREENING,
            f"Received {sum(resource_counts.values())} records from "
            f"{exchange_request.former_payer.name}.",
            action="exchange_request.records_received",
            details=disclosure,
        )
        if moved:
            audit_record(
                action="exchange_request.records_disclosed",
                obj=exchange_request,
                payer=exchange_request.former_payer,
                actor_label=ENGINE,
                changes=disclosure,
            )
    return moved


# --- Step 3: screen and package ---


def exchange_request_screen(
    *, request_id: int, payer_id: int, storage: PayloadStorage
) -> str | None:
    """Apply the rule's limits to the staged records, then package what may leave the hub."""
    exchange_request = _load(request_id, payer_id)
    if exchange_request.status == S.SCREENING:
        result = screening_complete(
            request_id=request_id, storage=storage, **_screening_terms(exchange_request)
        )
        screened_out = {row["code"]: row["count"] for row in result.screened_out()}
        with transaction.atomic():
            ExchangeRequest.objects.for_payer(payer_id).filter(pk=request_id).update(
                screened_out_counts=screened_out
            )
            if not engine_move(
                exchange_request,
                S.PACKAGING,
                f"Checked your records against the rule: {result.kept_total} may be shared, "
                f"{sum(screened_out.values())} stay behind.",
            ):
                return None
    if exchange_request.status != S.PACKAGING:
        return None
    package = package_build(
        request_id=request_id, storage=storage, manifest_context=_package_context(exchange_request)
    )
    with transaction.atomic():
        Delivery.objects.update_or_create(
            payer_id=payer_id,
            exchange_request=exchange_request,
            defaults={
                "mode": exchange_request.payer.delivery_mode,
                "manifest": package.manifest,
            },
        )
        engine_move(exchange_request, S.DELIVERING, "Your records are packaged and on their way.")
    return S.DELIVERING


def _screening_terms(exchange_request: ExchangeRequest) -> dict[str, Any]:
    """Return what the request is screened under: the day of the opt-in and the consent."""
    return {
        "request_date": timezone.localdate(exchange_request.opted_in_at),
        "policy": exchange_request.consent.policy,
    }


def _package_context(exchange_request: ExchangeRequest) -> PackageContext:
    return PackageContext(
        request_id=exchange_request.pk,
        new_payer=PayerParty.of(exchange_request.payer),
        former_payer=PayerParty.of(exchange_request.former_payer),
        consent_id=str(exchange_request.consent_id),
        consent_policy=exchange_request.consent.policy,
        hub_name=settings.HUB_NAME,
    )


# --- Step 4: deliver ---


def exchange_request_deliver(
    *, request_id: int, payer_id: int, task_id: str, storage: PayloadStorage
) -> str | None:
    """Send the package to the new payer; one DeliveryAttempt per task id.

    The delivery is a disclosure to the new payer: its audit event names where the files
    went and each file's path, size and sha256 (never its content).
    """
    exchange_request = _load(request_id, payer_id)
    if exchange_request.status != S.DELIVERING:
        return None
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
    Delivery.objects.for_payer(payer_id).filter(pk=delivery.pk).update(
        status=DeliveryStatus.IN_PROGRESS
    )
    files = package_delivery_order(request_id=request_id, manifest=delivery.manifest)
    try:
        remote_directory = delivery_remote_directory(
            payer=exchange_request.payer,
            former_payer_slug=exchange_request.former_payer.slug,
            request_id=request_id,
        )
        Delivery.objects.for_payer(payer_id).filter(pk=delivery.pk).update(
            remote_directory=remote_directory
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
    with transaction.atomic():
        _attempt_finished(attempt, succeeded=True)
        Delivery.objects.for_payer(payer_id).filter(pk=delivery.pk).update(
            status=DeliveryStatus.DELIVERED, delivered_at=timezone.now()
        )
        if engine_move(
            exchange_request,
            S.DELIVERED,
            f"Delivered to {exchange_request.payer.name}: {len(delivered)} files.",
            action="exchange_request.deliver",
            details={
                "disclosed_by": exchange_request.former_payer.slug,
                "disclosed_to": exchange_request.payer.slug,
                "mode": delivery.mode,
                "remote_directory": remote_directory,
                "files": [
                    {"path": file.remote_path, "size": file.size, "sha256": file.sha256}
                    for file in delivered
                ],
            },
        ):
            transaction.on_commit(lambda: storage.delete_tree(RequestFiles(request_id).staging))
    return None


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
        .filter(
            status__in=IN_PROGRESS - {S.AWAITING_AUTHORIZATION},
            last_progress_at__lt=cutoff,
            # A bulk job drives these; the job reaper resumes it (exchange/bulk/pipeline.py).
            awaits_bulk_job=False,
        )
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
