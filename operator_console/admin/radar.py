"""The compatibility radar: every probe of every payer's FHIR endpoint, newest first, the ones
that changed something highlighted with what changed (exchange/radar/). Read-only: the radar
writes the history; an operator filters it by payer, outcome and whether it changed."""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from hub.models import EndpointProbe
from operator_console.admin.looks import AuditedLooksAdmin


class ChangedFilter(admin.SimpleListFilter):
    title = "changes"
    parameter_name = "changed"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Changed something"), ("no", "Changed nothing")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.exclude(changes=[])
        if self.value() == "no":
            return queryset.filter(changes=[])
        return queryset


@admin.register(EndpointProbe)
class EndpointProbeAdmin(AuditedLooksAdmin):
    list_display = ("checked_at", "payer", "endpoint", "trigger", "outcome", "what_changed")
    list_filter = (ChangedFilter, "ok", "trigger", "payer")
    date_hierarchy = "checked_at"
    ordering = ("-checked_at", "-pk")
    fields = (
        "payer", "endpoint", "checked_at", "trigger", "outcome", "what_changed", "alerted_at",
        "step_list", "summary",
    )  # fmt: skip
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[EndpointProbe]:
        return EndpointProbe.objects.across_payers(
            reason="hub operators watch how every payer's endpoint answers the radar"
        ).select_related("payer", "endpoint")

    @admin.display(description="Outcome", boolean=False, ordering="ok")
    def outcome(self, obj: EndpointProbe) -> str:
        return "Passed" if obj.ok else f"Failed: {obj.headline}"

    @admin.display(description="What changed")
    def what_changed(self, obj: EndpointProbe) -> str:
        if not obj.changes:
            return "—"
        # Highlighted: a change is what an operator looks for in the history.
        return format_html(
            '<strong style="color:#b50909">{}</strong>',
            " ".join(str(change.get("sentence", "")) for change in obj.changes),
        )

    @admin.display(description="Steps")
    def step_list(self, obj: EndpointProbe) -> str:
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li>{}: {} — {}</li>",
                (
                    (s.get("name", ""), "passed" if s.get("ok") else "failed", s.get("detail", ""))
                    for s in obj.steps
                ),
            ),
        )
