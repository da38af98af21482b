"""What the directory reads (STYLE.md #1: selectors read).

The directory is the one deliberate read across tenants both portals share: public facts
about participating payers (names, identifiers, coverage, whether an endpoint is
registered and how it last answered the hub's compatibility radar) and nothing else of
another payer.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery

from hub.models import EndpointProbe, FhirEndpoint, OnboardingRequest, Payer, PayerStatus, User


@dataclass(frozen=True)
class DirectoryEntry:
    payer: Payer
    has_endpoint: bool
    endpoint_checked_at: datetime | None
    # The viewing payer's last request this payer delivered: proof the exchange works.
    last_delivered_at: datetime | None = None
    # The compatibility radar's latest probe of the endpoint (exchange/radar/): when, and
    # whether every check passed.
    last_probe_at: datetime | None = None
    last_probe_ok: bool | None = None

    @property
    def endpoint_status(self) -> str:
        if not self.has_endpoint:
            return "No FHIR endpoint yet"
        if self.last_delivered_at is not None:
            return "Working: records delivered"
        if self.last_probe_at is not None:
            return "Answers the hub's checks" if self.last_probe_ok else "Failing the hub's checks"
        if self.endpoint_checked_at is None:
            return "Endpoint registered, waiting for its first probe"
        return "Endpoint tested"

    @property
    def endpoint_status_at(self) -> datetime | None:
        """Return when the status was last shown true: the last delivery, else the last probe
        or test."""
        return self.last_delivered_at or self.last_probe_at or self.endpoint_checked_at

    @property
    def looks_working(self) -> bool:
        """Return whether the exchange with this payer looks usable (the portal's green tag)."""
        if self.last_delivered_at is not None:
            return True
        if self.last_probe_at is not None:
            return bool(self.last_probe_ok)
        return self.endpoint_checked_at is not None


def directory_entries(
    *,
    payer: Payer,
    query: str = "",
    state: str = "",
    plan_type: str = "",
    delivered_at: Mapping[int, datetime] | None = None,
) -> list[DirectoryEntry]:
    """Return the participating payers other than ``payer`` that match the search.

    The directory is public to every tenant: it reads names, identifiers, coverage and
    whether an endpoint is registered — nothing else of another payer. ``delivered_at``
    (by payer id: when ``payer`` last had records delivered from it) comes from the
    caller, which knows ``payer``'s own requests; the directory sits below the engine.
    """
    endpoints = FhirEndpoint.objects.across_payers(
        reason="the directory shows whether each payer registered an endpoint, and when tested"
    ).filter(payer=OuterRef("pk"))
    probes = (
        EndpointProbe.objects.across_payers(
            reason="the directory shows when each payer's endpoint was last probed, and how"
        )
        .filter(payer=OuterRef("pk"))
        .order_by("-checked_at", "-pk")
    )
    payers = (
        Payer.objects.filter(status=PayerStatus.PARTICIPATING)
        .exclude(pk=payer.pk)
        .annotate(
            has_endpoint=Exists(endpoints),
            endpoint_checked_at=Subquery(endpoints.values("capabilities_checked_at")[:1]),
            last_probe_at=Subquery(probes.values("checked_at")[:1]),
            last_probe_ok=Subquery(probes.values("ok")[:1]),
        )
        .order_by("name")
    )
    if query:
        payers = payers.filter(
            Q(name__icontains=query) | Q(npi=query) | Q(payer_identifier__iexact=query)
        )
    entries = [
        DirectoryEntry(
            payer=p,
            has_endpoint=p.has_endpoint,
            endpoint_checked_at=p.endpoint_checked_at,
            last_delivered_at=(delivered_at or {}).get(p.pk),
            last_probe_at=p.last_probe_at,
            last_probe_ok=p.last_probe_ok,
        )
        for p in payers
    ]
    # States and plan types are JSON lists, which SQLite (the demo) cannot search inside;
    # the directory holds hundreds of payers at most, so they are matched here.
    if state:
        entries = [e for e in entries if state.upper() in e.payer.states]
    if plan_type:
        entries = [e for e in entries if plan_type in e.payer.plan_types]
    return entries


def directory_payers_to_ask(
    *, payer: Payer, name: str = "", state: str = "", plan_type: str = ""
) -> list[Payer]:
    """Return the participating payers a member of ``payer`` can ask for records.

    The directory's entries with one more condition: the payer has a FHIR endpoint to
    ask. ``name`` also matches an NPI or payer id there.
    """
    entries = directory_entries(payer=payer, query=name, state=state, plan_type=plan_type)
    return [entry.payer for entry in entries if entry.has_endpoint]


def onboarding_requests_of(*, payer: Payer) -> QuerySet[OnboardingRequest]:
    # The payer an approval created or activated: the requester sees whether it takes part yet.
    return (
        OnboardingRequest.objects.for_payer(payer)
        .select_related("onboarded_payer")
        .order_by("-created_at")
    )


def onboarding_requests_by_member(*, payer: Payer, member: User) -> QuerySet[OnboardingRequest]:
    """Return the invitations ``member`` sent from ``payer``, newest first."""
    return onboarding_requests_of(payer=payer).filter(requested_by=member)
