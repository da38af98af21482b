"""What every console page shares: operators only, and every look at a payer's data audited."""

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import HttpRequest, HttpResponse

from hub.audit import client_address
from hub.models import Payer, User
from operator_console.services import operator_look_record
from operator_console.site import is_operator


def operator(request: HttpRequest) -> User:
    """Return the operator acting: the admin site lets only active staff this far."""
    if not is_operator(request) or not isinstance(request.user, User):
        raise PermissionDenied
    return request.user


class OperatorOnlyAdmin(admin.ModelAdmin):
    """Pages for hub operators: every operator may read; nobody of a payer ever may.

    A plan administrator or member is not staff, so the admin site already sends them to
    sign in; a payer's person made staff by mistake is refused here too.
    """

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_operator(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_operator(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Payers, people, requests and audit events are kept: history refers to them.
        return False


class AuditedLooksAdmin(OperatorOnlyAdmin):
    """Record an ``operator.look`` for each payer whose data a list page or a detail page
    shows (issue 14: every operator look at a payer's data is itself audited)."""

    def payer_ids_of(self, obj: Any) -> set[int]:
        payer_id = getattr(obj, "payer_id", None)
        return {payer_id} if payer_id is not None else set()

    def _record(
        self, request: HttpRequest, objs: list[Any], what: str, looked_at: Model | None
    ) -> None:
        payer_ids: set[int] = set()
        for obj in objs:
            payer_ids |= self.payer_ids_of(obj)
        if payer_ids:
            operator_look_record(
                operator=operator(request),
                payers=list(Payer.objects.filter(pk__in=payer_ids)),
                looked_at=looked_at,
                what=what,
                client_address=client_address(request),
            )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", None) or {}
        if "cl" in changelist and request.method == "GET":
            self._record(
                request, list(changelist["cl"].result_list),
                f"list of {self.opts.verbose_name_plural}: {request.GET.urlencode()}", None,
            )  # fmt: skip
        return response

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        response = super().change_view(request, object_id, form_url, extra_context)
        if request.method == "GET" and response.status_code == 200:
            obj = self.get_object(request, unquote(object_id))
            if obj is not None:
                self._record(request, [obj], f"{self.opts.verbose_name} {obj.pk}", obj)
        return response
