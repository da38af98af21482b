"""The onboarding queue: payers that members and administrators asked the hub to bring on
board, newest first; review, approve (create or activate the payer), reject with a reason,
and the requester reads the outcome where they see their invitations."""

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.text import slugify
from django.views.decorators.http import require_POST

from hub.audit import client_address
from hub.models import OnboardingRequest, OnboardingStatus
from operator_console.admin.looks import AuditedLooksAdmin, operator
from operator_console.forms import OnboardingApproveForm, OnboardingRejectForm
from operator_console.services import (
    OperatorActionRefused,
    onboarding_request_approve,
    onboarding_request_mark_contacted,
    onboarding_request_reject,
)


@admin.register(OnboardingRequest)
class OnboardingRequestAdmin(AuditedLooksAdmin):
    list_display = (
        "organization_name", "npi", "payer_identifier", "state", "requester", "status",
        "created_at", "decided_at",
    )  # fmt: skip
    list_filter = ("status", "payer")
    search_fields = ("organization_name", "npi", "payer_identifier")
    ordering = ("-created_at",)
    fields = (
        "organization_name", "npi", "payer_identifier", "state", "contact_email", "note",
        "requester", "status", "created_at", "decided_at", "decided_by", "decision_reason",
        "onboarded_payer", "decide",
    )  # fmt: skip
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[OnboardingRequest]:
        return OnboardingRequest.objects.across_payers(
            reason="the operators' onboarding queue holds every payer's invitations"
        ).select_related("payer", "requested_by", "onboarded_payer")

    @admin.display(description="Asked by")
    def requester(self, obj: OnboardingRequest) -> str:
        return (
            f"{obj.requested_by.get_username()} "
            f"({obj.requested_by.get_role_display().lower()} at {obj.payer.name})"
        )

    @admin.display(description="Decide")
    def decide(self, obj: OnboardingRequest) -> str:
        if obj.status in (OnboardingStatus.ONBOARDED, OnboardingStatus.DECLINED):
            return "Decided."
        return format_html(
            '<a class="button" href="{}">Approve…</a> <a class="button" href="{}">Reject…</a>',
            reverse("admin:hub_onboardingrequest_approve", args=[obj.pk]),
            reverse("admin:hub_onboardingrequest_reject", args=[obj.pk]),
        )

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<int:pk>/approve/", wrap(self.approve_view), name="hub_onboardingrequest_approve"
            ),
            path("<int:pk>/reject/", wrap(self.reject_view), name="hub_onboardingrequest_reject"),
            path(
                "<int:pk>/contacted/",
                wrap(require_POST(self.contacted_view)),
                name="hub_onboardingrequest_contacted",
            ),
            *super().get_urls(),
        ]

    def _onboarding(self, request: HttpRequest, pk: int) -> OnboardingRequest:
        if not self.has_view_permission(request):
            raise PermissionDenied
        onboarding = self.get_queryset(request).filter(pk=pk).first()
        if onboarding is None:
            raise Http404("No such onboarding request.")
        return onboarding

    def _page(
        self,
        request: HttpRequest,
        onboarding: OnboardingRequest,
        form: Any,
        title: str,
        status: int,
    ) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "onboarding": onboarding,
            "form": form,
        }
        return render(
            request, "admin/operator_console/onboarding_decide.html", context, status=status
        )

    def _back(self, onboarding: OnboardingRequest) -> HttpResponseRedirect:
        return HttpResponseRedirect(
            reverse("admin:hub_onboardingrequest_change", args=[onboarding.pk])
        )

    def approve_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        onboarding = self._onboarding(request, pk)
        title = f"Approve: {onboarding.organization_name}"
        if request.method != "POST":
            form = OnboardingApproveForm(
                initial={
                    "name": onboarding.organization_name,
                    "slug": slugify(onboarding.organization_name)[:60],
                    "npi": onboarding.npi,
                    "payer_identifier": onboarding.payer_identifier,
                }
            )
            return self._page(request, onboarding, form, title, 200)
        form = OnboardingApproveForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                payer = onboarding_request_approve(
                    onboarding=onboarding, operator=operator(request),
                    existing_payer=data["existing_payer"], name=data["name"], slug=data["slug"],
                    npi=data["npi"], payer_identifier=data["payer_identifier"],
                    client_address=client_address(request),
                )  # fmt: skip
            except OperatorActionRefused as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(
                    request,
                    f"Approved: {payer.name} is {payer.get_status_display().lower()}; the "
                    "requester sees the outcome with their invitations.",
                )
                return self._back(onboarding)
        return self._page(request, onboarding, form, title, 400)

    def reject_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        onboarding = self._onboarding(request, pk)
        title = f"Reject: {onboarding.organization_name}"
        form = OnboardingRejectForm(request.POST if request.method == "POST" else None)
        if request.method != "POST":
            return self._page(request, onboarding, form, title, 200)
        if form.is_valid():
            try:
                onboarding_request_reject(
                    onboarding=onboarding, operator=operator(request),
                    reason=form.cleaned_data["reason"], client_address=client_address(request),
                )  # fmt: skip
            except OperatorActionRefused as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, "Declined; the requester sees the reason.")
                return self._back(onboarding)
        return self._page(request, onboarding, form, title, 400)

    def contacted_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        onboarding = self._onboarding(request, pk)
        try:
            onboarding_request_mark_contacted(
                onboarding=onboarding, operator=operator(request),
                client_address=client_address(request),
            )  # fmt: skip
        except OperatorActionRefused as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, "Marked contacted; the requester sees it.")
        return self._back(onboarding)
