"""Exchange requests across payers, as metadata only: state, dates, counts, the failure
reason, the payers. Never the card's member id, the matched patient id, the consent or any
record content (issue 14); the member is named by username only. Read-only."""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from exchange.models import ExchangeRequest
from operator_console.admin.looks import AuditedLooksAdmin

_METADATA = (
    "id", "payer", "former_payer", "member_username", "status", "authorization_mode",
    "is_concurrent", "opted_in_at", "due_by", "status_changed_at", "last_progress_at",
    "reason_code", "reason_message", "resource_counts", "screened_out_counts",
    "records_since", "records_as_of", "created_at",
)  # fmt: skip


@admin.register(ExchangeRequest)
class ExchangeRequestAdmin(AuditedLooksAdmin):
    list_display = (
        "id", "payer", "former_payer", "member_username", "status", "opted_in_at", "due_by",
        "status_changed_at", "records_count", "reason_code",
    )  # fmt: skip
    list_filter = ("status", "payer", "former_payer", "is_concurrent")
    search_fields = ("=id",)
    date_hierarchy = "opted_in_at"
    ordering = ("-opted_in_at", "-id")
    fields = _METADATA
    readonly_fields = _METADATA

    def get_queryset(self, request: HttpRequest) -> QuerySet[ExchangeRequest]:
        return (
            ExchangeRequest.objects.across_payers(
                reason="hub operators watch every payer's requests, as metadata only"
            )
            .select_related("payer", "former_payer", "member")
            .only(*[f for f in _METADATA if f != "member_username"], "member", "member__username")
        )

    def payer_ids_of(self, obj: Any) -> set[int]:
        # A request is its requester's data and also tells about its former payer's members.
        return {obj.payer_id, obj.former_payer_id}

    @admin.display(description="Member (username)", ordering="member__username")
    def member_username(self, obj: ExchangeRequest) -> str:
        return obj.member.get_username()

    @admin.display(description="Records")
    def records_count(self, obj: ExchangeRequest) -> int:
        return sum(v for v in (obj.resource_counts or {}).values() if isinstance(v, int))
