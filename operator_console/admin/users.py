"""People per payer: list by payer and role, deactivate, member ↔ plan administrator."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from hub.audit import client_address
from hub.models import Role, User
from operator_console.admin.looks import AuditedLooksAdmin, operator
from operator_console.services import OperatorActionRefused, user_deactivate, user_role_change


@admin.register(User)
class UserAdmin(AuditedLooksAdmin):
    # The username and the payer say who it is; names, e-mail and demographics stay out.
    list_display = ("username", "payer", "role", "is_active", "is_staff", "last_login")
    list_filter = ("payer", "role", "is_active", "is_staff")
    search_fields = ("username",)
    ordering = ("payer__name", "role", "username")
    fields = ("username", "payer", "role", "is_active", "is_staff", "last_login", "date_joined")
    readonly_fields = fields
    list_select_related = ("payer",)
    actions = ["deactivate", "make_plan_admin", "make_member"]

    @admin.action(description="Deactivate (no more sign-in)")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            try:
                user_deactivate(
                    user=user, operator=operator(request), client_address=client_address(request)
                )
            except OperatorActionRefused as exc:
                messages.error(request, str(exc))
            else:
                messages.success(request, f"{user.get_username()} can no longer sign in.")

    def _role(self, request: HttpRequest, queryset: QuerySet[User], role: Role) -> None:
        for user in queryset:
            try:
                user_role_change(
                    user=user, role=role, operator=operator(request),
                    client_address=client_address(request),
                )  # fmt: skip
            except OperatorActionRefused as exc:
                messages.error(request, str(exc))
            else:
                messages.success(request, f"{user.get_username()} is now a {role.label.lower()}.")

    @admin.action(description="Make plan administrator")
    def make_plan_admin(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        self._role(request, queryset, Role.PLAN_ADMIN)

    @admin.action(description="Make member")
    def make_member(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        self._role(request, queryset, Role.MEMBER)
