"""What the radar's probes tell the engine and the pages (STYLE.md #1: selectors read)."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, OuterRef, QuerySet, Subquery
from django.utils import timezone

from hub.models import EndpointProbe, FhirEndpoint, Payer


def endpoint_probe_latest(*, endpoint: FhirEndpoint) -> EndpointProbe | None:
    """Return the endpoint's latest probe, or None before its first."""
    return (
        EndpointProbe.objects.for_payer(endpoint.payer_id)
        .filter(endpoint=endpoint)
        .order_by("-checked_at", "-pk")
        .first()
    )


def endpoint_probes_of(*, payer: Payer) -> QuerySet[EndpointProbe]:
    """Return the probes of ``payer``'s own endpoint, newest first (its integration page)."""
    return EndpointProbe.objects.for_payer(payer).order_by("-checked_at", "-pk")


def probe_is_fresh(probe: EndpointProbe, *, now: datetime | None = None) -> bool:
    """Return whether the engine may decide by ``probe`` (``RADAR_PROBE_MAX_AGE_HOURS``)."""
    oldest = (now or timezone.now()) - timedelta(hours=settings.RADAR_PROBE_MAX_AGE_HOURS)
    return probe.checked_at >= oldest


def holder_probes_latest(*, former_payer_ids: list[int]) -> dict[int, EndpointProbe]:
    """Return the latest probe of each former payer's endpoint, by payer id.

    A requesting payer's *Former payers we ask* page shows whether the holders it depends
    on still offer what its pulls use: facts about the holders' public endpoints, as the
    directory shows, never their members' data.
    """
    reason = "a requesting payer sees how the holders it asks answered the radar"
    newest = (
        EndpointProbe.objects.across_payers(reason=reason)
        .filter(endpoint_id=OuterRef("endpoint_id"))
        .order_by("-checked_at", "-pk")
        .values("pk")[:1]
    )
    probes = (
        EndpointProbe.objects.across_payers(reason=reason)
        .filter(payer_id__in=former_payer_ids)
        .annotate(newest=Subquery(newest))
        .filter(pk=F("newest"))
    )
    return {probe.payer_id: probe for probe in probes}
