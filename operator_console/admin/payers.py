"""Payers: search and filter, identifiers and directory listing, and the lifecycle
invited → onboarding → participating ⇄ suspended, each step audited."""

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_http_methods

from exchange.radar.selectors import endpoint_probe_latest
from hub.audit import client_address
from hub.first_admin_links import (
    LinkRefused,
    first_admin_link_issue,
    first_admin_link_outstanding,
    plan_administrators_count,
)
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
        "contact_name", "contact_email", "directory_listing", "first_administrator", "its_data",
        "created_at",
    )  # fmt: skip
    # The status moves only through the lifecycle actions, each audited with its step.
    readonly_fields = (
        "status", "directory_listing", "first_administrator", "its_data", "created_at",
    )  # fmt: skip
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
        probe = endpoint_probe_latest(endpoint=endpoint)
        checked = (
            f"last probe {probe.checked_at:%Y-%m-%d %H:%M} UTC "
            f"{'passed' if probe.ok else 'failed'}, see Compatibility radar"
            if probe is not None
            else "waiting for its first probe"
        )
        return f"{listed}; FHIR endpoint {endpoint.base_url} ({checked})."

    @admin.display(description="First administrator")
    def first_administrator(self, obj: Payer) -> str:
        if obj.pk is None:
            return "—"
        administrators = plan_administrators_count(obj)
        if administrators:
            return f"{administrators} active plan administrator(s); they manage its sign-in."
        link = first_admin_link_outstanding(obj)
        state = "No link issued yet."
        if link is not None:
            state = (
                f"Link issued {link.issued_at:%Y-%m-%d %H:%M} UTC, expired."
                if link.expires_at <= timezone.now()
                else f"Link issued {link.issued_at:%Y-%m-%d %H:%M} UTC, unused, works until "
                f"{link.expires_at:%Y-%m-%d %H:%M} UTC."
            )
        return format_html(
            '{} <a class="button" href="{}">Issue a first administrator link…</a>',
            state,
            reverse("admin:hub_payer_first_admin_link", args=[obj.pk]),
        )

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<int:pk>/first-admin-link/",
                self.admin_site.admin_view(require_http_methods(["GET", "POST"])(self.link_view)),
                name="hub_payer_first_admin_link",
            ),
            *super().get_urls(),
        ]

    def link_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Confirm (GET), then issue the link and show it this once (POST)."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        payer = Payer.objects.filter(pk=pk).first()
        if payer is None:
            raise Http404("No such payer.")
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"First administrator link: {payer.name}",
            "payer": payer,
            "hours": settings.FIRST_ADMIN_LINK_HOURS,
        }
        status = 200
        if request.method == "POST":
            try:
                link, token = first_admin_link_issue(
                    payer=payer, operator=operator(request), client_address=client_address(request)
                )
            except LinkRefused as exc:
                context["refused"] = str(exc)
                status = exc.status
            else:
                context["link"] = link
                context["url"] = settings.HUB_PUBLIC_URL + reverse(
                    "first-admin", kwargs={"payer_slug": payer.slug, "token": token}
                )
        return render(
            request, "admin/operator_console/first_admin_link.html", context, status=status
        )

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
