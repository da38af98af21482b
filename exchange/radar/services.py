"""Record probes, tell people what changed, prune the history, and answer the engine's
question "what does this holder offer now?" (STYLE.md #1: services write).

Retention: a probe that changed something (or failed) is alerted once and kept for ever; a
probe that changed nothing is deleted ``RADAR_PROBE_RETENTION_DAYS`` after it was taken,
except the endpoint's latest, which the directory and the engine read.
"""

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from exchange.fhir.errors import FhirPermanentError
from exchange.radar.changes import probe_changes
from exchange.radar.probe import ProbeResult, endpoint_probe, radar_token_payer
from exchange.radar.selectors import endpoint_probe_latest, probe_is_fresh
from hub.admin_mail import operators_mail, plan_admins_mail
from hub.audit import ENGINE, audit_record
from hub.models import EndpointProbe, FhirEndpoint, ProbeTrigger, User


def _headline(result: ProbeResult) -> str:
    failed = next((step for step in result.report.steps if not step.ok), None)
    return failed.detail if failed else "Every check passed."


def endpoint_probe_record(
    *, endpoint: FhirEndpoint, result: ProbeResult, trigger: str, actor: User | None = None
) -> EndpointProbe:
    """Keep ``result`` in the endpoint's history with what changed since its last probe;
    alert the operators and the payer's administrators (after commit) when something did."""
    with transaction.atomic():
        # One probe at a time per endpoint compares itself with the one before it.
        FhirEndpoint.objects.for_payer(endpoint.payer_id).select_for_update().filter(
            pk=endpoint.pk
        ).exists()
        previous = endpoint_probe_latest(endpoint=endpoint)
        changes = probe_changes(
            previous=previous,
            summary=result.summary,
            ok=result.report.ok,
            headline=_headline(result),
        )
        probe = EndpointProbe.objects.create(
            payer_id=endpoint.payer_id,
            endpoint=endpoint,
            checked_at=result.checked_at,
            trigger=trigger,
            ok=result.report.ok,
            summary=result.summary,
            steps=result.report.as_dict()["steps"],
            changes=changes,
        )
        if result.statement_read:
            # The Test's record of what the endpoint offers (shown in the portal and the API).
            FhirEndpoint.objects.for_payer(endpoint.payer_id).filter(pk=endpoint.pk).update(
                capabilities=result.summary, capabilities_checked_at=result.checked_at
            )
            endpoint.capabilities = result.summary
            endpoint.capabilities_checked_at = result.checked_at
        if changes:
            audit_record(
                action="fhir_endpoint.probe_changed",
                obj=probe,
                payer=endpoint.payer_id,
                actor=actor,
                actor_label="" if actor else ENGINE,
                changes={"trigger": trigger, "changes": [c["sentence"] for c in changes]},
            )
            payer_id, probe_id = endpoint.payer_id, probe.pk
            transaction.on_commit(
                lambda: radar_alert_send(probe_id=probe_id, payer_id=payer_id), robust=True
            )
    return probe


def radar_alert_send(*, probe_id: int, payer_id: int) -> bool:
    """Mail the hub's operators and the probed payer's administrators what changed, once
    (claimed with a conditional UPDATE); return whether this call sent it."""
    now = timezone.now()
    claimed = (
        EndpointProbe.objects.for_payer(payer_id)
        .filter(pk=probe_id, alerted_at__isnull=True)
        .exclude(changes=[])
        .update(alerted_at=now)
    )
    if not claimed:
        return False
    probe = EndpointProbe.objects.for_payer(payer_id).select_related("payer").get(pk=probe_id)
    payer = probe.payer
    lines = "\n".join(f"- {change['sentence']}" for change in probe.changes)
    failing = "" if probe.ok else f"\nWhat to fix: {probe.headline}\n"
    body = (
        f"The hub's compatibility radar probed {payer.name}'s FHIR endpoint "
        f"({probe.endpoint.base_url}) at {probe.checked_at:%Y-%m-%d %H:%M} UTC and found "
        f"changes since the last probe:\n\n{lines}\n{failing}\n"
        "The hub chooses how it asks this server for records from the latest probe.\n"
    )
    subject = f"{payer.name}'s FHIR endpoint changed: {probe.changes[0]['sentence']}"[:200]
    plan_admins_mail(
        payer=payer,
        subject=subject,
        body=body + "See the probe in the plan-admin portal: Integration settings, Your FHIR "
        "endpoint.\n",
    )
    operators_mail(
        subject=subject,
        body=body + "See the history in the operator console: Compatibility radar.\n",
    )
    return True


def radar_endpoints_due(*, now: datetime) -> list[tuple[int, int]]:
    """Return (endpoint id, payer id) of every endpoint the radar may probe now."""
    return list(
        FhirEndpoint.objects.across_payers(reason="the radar probes every payer's endpoint")
        .filter(_claimable(now))
        .order_by("pk")
        .values_list("pk", "payer_id")
    )


def _claimable(now: datetime) -> Q:
    # Half an interval: a probe delivered twice, or beat started twice, probes once; the
    # next scheduled run is always free to probe again.
    since = now - timedelta(hours=settings.RADAR_PROBE_INTERVAL_HOURS) / 2
    return Q(radar_claimed_at__isnull=True) | Q(radar_claimed_at__lt=since)


def radar_probe_endpoint(*, endpoint_id: int, payer_id: int) -> EndpointProbe | None:
    """Probe one endpoint for the radar and record it; None when another run claimed it."""
    now = timezone.now()
    claimed = (
        FhirEndpoint.objects.for_payer(payer_id)
        .filter(_claimable(now), pk=endpoint_id)
        .update(radar_claimed_at=now)
    )
    if not claimed:
        return None
    endpoint = FhirEndpoint.objects.for_payer(payer_id).select_related("payer").get(pk=endpoint_id)
    result = endpoint_probe(
        endpoint=endpoint, requesting_payer=radar_token_payer(endpoint=endpoint)
    )
    return endpoint_probe_record(endpoint=endpoint, result=result, trigger=ProbeTrigger.RADAR)


def radar_probes_prune(*, now: datetime) -> int:
    """Delete the probes that changed nothing, past the retention, but never an endpoint's
    latest; return how many were deleted."""
    before = now - timedelta(days=settings.RADAR_PROBE_RETENTION_DAYS)
    probes = EndpointProbe.objects.across_payers(reason="the radar's history is pruned for all")
    # Ascending, so each endpoint's last row, its latest probe, is the one the dict keeps.
    latest = dict(
        probes.order_by("endpoint_id", "checked_at", "pk").values_list("endpoint_id", "pk")
    )
    deleted, _ = (
        probes.filter(checked_at__lt=before, changes=[])
        .exclude(pk__in=list(latest.values()))
        .delete()
    )
    return deleted


def holder_capabilities(*, endpoint: FhirEndpoint) -> dict[str, Any]:
    """Return what ``endpoint`` offers, as the engine decides by it: the latest probe's
    summary when it read the CapabilityStatement within ``RADAR_PROBE_MAX_AGE_HOURS``,
    else a probe made now (kept in the history like the radar's).

    Raises the probe's failure as it came (transient: the task tries again later).
    """
    latest = endpoint_probe_latest(endpoint=endpoint)
    if latest is not None and latest.summary and probe_is_fresh(latest):
        return dict(latest.summary)
    # No token step: the engine brings its own token to the records it fetches next.
    result = endpoint_probe(endpoint=endpoint, try_token=False)
    endpoint_probe_record(endpoint=endpoint, result=result, trigger=ProbeTrigger.ENGINE)
    if result.statement_read:
        return dict(result.summary)
    if result.error is not None:
        raise result.error
    raise FhirPermanentError(
        f"{endpoint.payer.name}'s server cannot be used: {_headline(result)}",
        code="probe_failed",
    )
