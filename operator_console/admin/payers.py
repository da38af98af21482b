"""Payers: search and filter, identifiers and directory listing, and the lifecycle
invited → onboarding → participating ⇄ suspended, each step audited."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from hub.audit import client_address
from hub.models import FhirEndpoint, Payer, PayerStatus
from operator_console.admin.looks import AuditedLooksAdmin, is_operator, operator
from operator_console.services import OperatorActionRefused, payer_save, payer_status_change


@admin.register(Payer)
class PayerAdmin(AuditedLooksAdmin):
    list_display = ("name", "slug", "status", "npi", "payer_identifier", "created_at")
    list_filter = ("status",)
    search_fields = ("name", "slug", "npi", "payer_identifier")
    ordering = ("name",)
    fields = (
        "name", "slug", "npi", "payer_identifier", "status", "states", "plan_types",
        "contact_name", "contact_email", "directory_listing", "its_data", "created_at",
    )  # fmt: skip
    # The status moves only through the lifecycle actions, each audited with its step.
    readonly_fields = ("status", "directory_listing", "its_data", "created_at")
    actions = ["make_onboarding", "make_participating", "suspend", "lift_suspension"]

    def payer_ids_of(self, obj: Any) -> set[int]:
        return {obj.pk}

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        # The list of payers is the directory's public facts, not a payer's data: not a look.
        return super(AuditedLooksAdmin, self).changelist_view(request, extra_context)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_operator(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return is_operator(request)

    def save_model(self, request: HttpRequest, obj: Payer, form: ModelForm, change: bool) -> None:
        payer_save(
            payer=obj, changed_fields=list(form.changed_data), operator=operator(request),
            client_address=client_address(request),
        )  # fmt: skip

    @admin.display(description="Directory listing")
    def directory_listing(self, obj: Payer) -> str:
        if obj.pk is None:
            return "—"
        endpoint = FhirEndpoint.objects.for_payer(obj).first()
        listed = (
            "Listed in the directory"
            if obj.status == PayerStatus.PARTICIPATING
            else f"Not listed ({obj.get_status_display().lower()})"
        )
        if endpoint is None:
            return f"{listed}; no FHIR endpoint registered yet."
        checked = (
            f"tested {endpoint.capabilities_checked_at:%Y-%m-%d %H:%M}"
            if endpoint.capabilities_checked_at
            else "not tested yet"
        )
        return f"{listed}; FHIR endpoint {endpoint.base_url} ({checked})."

    @admin.display(description="Its people, requests and audit log")
    def its_data(self, obj: Payer) -> str:
        if obj.pk is None:
            return "—"
        return format_html(
            '<a href="{}?payer__id__exact={}">People</a> · '
            '<a href="{}?payer__id__exact={}">Exchange requests</a> · '
            '<a href="{}?payer__id__exact={}">Onboarding requests it sent</a> · '
            '<a href="{}?payer__id__exact={}">Audit log</a>',
            reverse("admin:hub_user_changelist"), obj.pk,
            reverse("admin:exchange_exchangerequest_changelist"), obj.pk,
            reverse("admin:hub_onboardingrequest_changelist"), obj.pk,
            reverse("admin:hub_auditevent_changelist"), obj.pk,
        )  # fmt: skip

    def _move(self, request: HttpRequest, queryset: QuerySet[Payer], status: PayerStatus) -> None:
        for payer in queryset:
            try:
                payer_status_change(
                    payer=payer, status=status, operator=operator(request),
                    client_address=client_address(request),
                )  # fmt: skip
            except OperatorActionRefused as exc:
                messages.error(request, str(exc))
            else:
                messages.success(request, f"{payer.name} is now {status.label.lower()}.")

    @admin.action(description="Move to onboarding")
    def make_onboarding(self, request: HttpRequest, queryset: QuerySet[Payer]) -> None:
        self._move(request, queryset, PayerStatus.ONBOARDING)

    @admin.action(description="Mark participating (listed in the directory)")
    def make_participating(self, request: HttpRequest, queryset: QuerySet[Payer]) -> None:
        self._move(request, queryset, PayerStatus.PARTICIPATING)

    @admin.action(description="Suspend (no new exchange starts)")
    def suspend(self, request: HttpRequest, queryset: QuerySet[Payer]) -> None:
        self._move(request, queryset, PayerStatus.SUSPENDED)

    @admin.action(description="Lift the suspension")
    def lift_suspension(self, request: HttpRequest, queryset: QuerySet[Payer]) -> None:
        for payer in queryset:
            if payer.status != PayerStatus.SUSPENDED:
                messages.error(request, f"{payer.name} is not suspended; nothing was changed.")
                return
        self._move(request, queryset, PayerStatus.PARTICIPATING)
