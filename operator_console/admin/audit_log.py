"""The audit log across payers: filters by payer, action, actor and date range, and a
streamed CSV export of exactly what the list shows."""

import json
from datetime import date
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.urls import URLPattern, path

from hub.audit import client_address
from hub.csv_stream import csv_stream_response
from hub.models import AuditEvent, Payer
from operator_console.admin.looks import AuditedLooksAdmin, operator
from operator_console.services import audit_log_export_record


class _InputFilter(admin.SimpleListFilter):
    """A filter the operator types into (an actor, a date), rather than picks from a list."""

    template = "admin/operator_console/input_filter.html"
    input_type = "text"
    placeholder = ""

    def __init__(
        self, request: HttpRequest, params: dict[str, Any], model: Any, model_admin: Any
    ) -> None:
        self.request = request
        super().__init__(request, params, model, model_admin)

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return []

    def has_output(self) -> bool:
        return True

    def choices(self, changelist: ChangeList) -> Any:
        others = QueryDict(changelist.get_query_string(remove=[str(self.parameter_name), "p"])[1:])
        yield {
            "hidden": [(key, value) for key in others for value in others.getlist(key)],
            "name": self.parameter_name,
            "value": self.value() or "",
            "input_type": self.input_type,
            "placeholder": self.placeholder,
        }


class ActorFilter(_InputFilter):
    title = "actor (username or system label)"
    parameter_name = "actor"

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[AuditEvent]
    ) -> QuerySet[AuditEvent]:
        value = (self.value() or "").strip()
        return queryset.filter(actor_label__iexact=value) if value else queryset


def day_of(value: str, *, which: str) -> date | None:
    """Return the day ``value`` names (YYYY-MM-DD), None when empty; ValueError with a sentence."""
    if not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"The {which} date {value!r} is not a date: write it as YYYY-MM-DD."
        ) from None


class _DayFilter(_InputFilter):
    input_type = "date"
    which = ""
    lookup = ""

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[AuditEvent]
    ) -> QuerySet[AuditEvent]:
        try:
            day = day_of(self.value() or "", which=self.which)
        except ValueError as exc:
            messages.error(self.request, f"{exc} Nothing is shown until it is corrected.")
            return queryset.none()
        return queryset.filter(**{self.lookup: day}) if day else queryset


class FromFilter(_DayFilter):
    title = "from (day, inclusive)"
    parameter_name = "from"
    which = "from"
    lookup = "occurred_at__date__gte"


class ToFilter(_DayFilter):
    title = "to (day, inclusive)"
    parameter_name = "to"
    which = "to"
    lookup = "occurred_at__date__lte"


_CSV_HEADER = (
    "occurred_at", "payer", "actor", "action", "object_type", "object_id", "changes",
    "client_address", "request_id",
)  # fmt: skip


@admin.register(AuditEvent)
class AuditEventAdmin(AuditedLooksAdmin):
    list_display = (
        "occurred_at",
        "payer",
        "actor_label",
        "action",
        "object_type",
        "object_id",
        "client_address",
    )
    list_filter = ("payer", "action", ActorFilter, FromFilter, ToFilter)
    search_fields = ("object_id", "request_id")
    ordering = ("-occurred_at", "-id")
    list_select_related = ("payer",)
    fields = (
        "occurred_at", "payer", "actor", "actor_label", "action", "object_type", "object_id",
        "changes", "client_address", "request_id",
    )  # fmt: skip
    readonly_fields = fields
    change_list_template = "admin/operator_console/auditevent_change_list.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEvent]:
        return AuditEvent.objects.across_payers(
            reason="the operators' audit log covers every payer"
        )

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "export.csv",
                self.admin_site.admin_view(self.export_view),
                name="hub_auditevent_export",
            ),
            *super().get_urls(),
        ]

    def export_view(self, request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
        """Stream the rows the list's filters select, oldest last like the list."""
        if not self.has_view_permission(request):
            return HttpResponse("Only hub operators export the audit log.", status=403)
        for name in ("from", "to"):
            try:
                day_of(request.GET.get(name, ""), which=name)
            except ValueError as exc:
                return HttpResponse(
                    f"{exc} Nothing was exported.",
                    status=400,
                    content_type="text/plain; charset=utf-8",
                )
        changelist = self.get_changelist_instance(request)
        rows = changelist.get_queryset(request).select_related(None).values_list(
            "occurred_at", "payer__slug", "actor_label", "action", "object_type", "object_id",
            "changes", "client_address", "request_id",
        )  # fmt: skip
        payer_id = request.GET.get("payer__id__exact", "")
        payer = Payer.objects.filter(pk=int(payer_id)).first() if payer_id.isdigit() else None
        audit_log_export_record(
            operator=operator(request), payer=payer, filters=request.GET.urlencode(),
            client_address=client_address(request),
        )  # fmt: skip

        def lines() -> Any:
            yield _CSV_HEADER
            for row in rows.iterator(chunk_size=2000):
                yield (*row[:6], json.dumps(row[6], sort_keys=True), *row[7:])

        return csv_stream_response(rows=lines(), name="audit-log")
