"""The hub's registrations at data holders, per (requesting payer, holder): the administrator's
choice, the state, the last error and when, and *Register again* (issue 14 item 4).

Read-only: the choice and the client ids are the payer's administrator's to set (plan_admin
"Former payers we ask"). Secrets — the member client's secret, the cached access token —
are never shown. Whether the requester has a client certificate for holders that require
mutual TLS is shown with its expiry, since a missing or expired one is a common last error.
"""

from typing import Any

from django.contrib import admin, messages
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest

from exchange.fhir.errors import FhirCallError
from exchange.models import HolderRegistration
from exchange.smart.registration_settings import holder_registration_register_again
from hub.audit import client_address
from hub.models import ClientCertificate
from operator_console.admin.looks import AuditedLooksAdmin, operator

_SHOWN = (
    "payer", "former_payer", "choice", "state", "method", "backend_client_id",
    "member_client_id", "registered_at", "last_error", "last_error_at", "client_certificate",
)  # fmt: skip


@admin.register(HolderRegistration)
class HolderRegistrationAdmin(AuditedLooksAdmin):
    list_display = (
        "requester", "holder", "choice", "state", "last_error", "when", "client_certificate",
    )  # fmt: skip
    list_filter = ("choice", "method", "payer", "former_payer")
    search_fields = ("payer__name", "former_payer__name", "last_error")
    ordering = ("-last_error_at", "-registered_at", "id")
    fields = _SHOWN
    readonly_fields = _SHOWN
    actions = ["register_again"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[HolderRegistration]:
        certificates = ClientCertificate.objects.across_payers(
            reason="the registrations list shows each requester's client certificate expiry"
        ).filter(payer=OuterRef("payer"))
        return (
            HolderRegistration.objects.across_payers(
                reason="hub operators watch every payer's registrations at holders"
            )
            .select_related("payer", "former_payer")
            .defer("member_client_secret", "backend_access_token")
            .annotate(certificate_until=Subquery(certificates.values("not_after")[:1]))
        )

    def payer_ids_of(self, obj: Any) -> set[int]:
        # The registration is the requester's; it also tells about its holder's clients.
        return {obj.payer_id, obj.former_payer_id}

    @admin.display(description="Requester", ordering="payer__name")
    def requester(self, obj: HolderRegistration) -> str:
        return obj.payer.name

    @admin.display(description="Holder (former payer)", ordering="former_payer__name")
    def holder(self, obj: HolderRegistration) -> str:
        return obj.former_payer.name

    @admin.display(description="State")
    def state(self, obj: HolderRegistration) -> str:
        if obj.last_error:
            return "Failing"
        if obj.method:
            return f"Registered: {obj.get_method_display()}"
        return "Not registered yet (the next exchange registers)"

    @admin.display(description="When", ordering="last_error_at")
    def when(self, obj: HolderRegistration) -> str:
        moment = obj.last_error_at if obj.last_error else obj.registered_at
        return f"{moment:%Y-%m-%d %H:%M}" if moment else "—"

    @admin.display(description="Requester's client certificate (mutual TLS)")
    def client_certificate(self, obj: HolderRegistration) -> str:
        until = getattr(obj, "certificate_until", None)
        return f"Valid until {until:%Y-%m-%d}" if until else "None uploaded"

    @admin.action(description="Register again (and prove the clients with a fresh token)")
    def register_again(self, request: HttpRequest, queryset: QuerySet[HolderRegistration]) -> None:
        for registration in queryset:
            requester, holder = registration.payer, registration.former_payer
            try:
                outcome = holder_registration_register_again(
                    payer=requester,
                    former_payer=holder,
                    actor=operator(request),
                    client_address=client_address(request),
                )
            except FhirCallError as exc:
                messages.error(request, f"{requester.name} at {holder.name}: {exc.message}")
                continue
            if outcome.last_error:
                messages.error(
                    request,
                    f"Registering {requester.name} again at {holder.name} failed: "
                    f"{outcome.last_error}",
                )
            else:
                messages.success(request, f"{requester.name} registered again at {holder.name}.")
